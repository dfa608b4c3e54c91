"""Robustness: fuzzed command payloads and configs, a full disk, files that are not ours.

Every fuzzed input is either accepted or rejected with our own error naming
the problem (never a crash). How many inputs each fuzz test tried is printed
in the test run's summary (``pytest_terminal_summary`` in conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import stat
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.commands import KNOWN, Authority, CommandError, sign
from facegate.config import SCHEMA, ConfigError, validate
from facegate.errors import FacegateError
from facegate.gallery import Gallery, GalleryError, ModelFingerprint, Sample

SECRET = b"fuzzing-secret-0123456789"
FINGERPRINT = ModelFingerprint("a" * 64, "fuzz", 8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
COUNTS: dict[str, int] = {}


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@settings(max_examples=1000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([*KNOWN, "unlock", ""]),
    payload=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"id": json_values, "args": json_values, "reply_to": json_values},
            optional={"ts": json_values, "nonce": json_values, "hmac": json_values},
        ).map(lambda v: json.dumps(v).encode()),
    ),
    signed=st.booleans(),
)
def test_fuzzed_commands_never_crash(name: str, payload: bytes, signed: bool) -> None:
    _count("commands")
    auth = Authority(list(KNOWN), SECRET, 60, "door1", "facegate/door1")
    topic = f"facegate/door1/command/{name}"
    if signed:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if isinstance(body, dict):
            with contextlib.suppress(ValueError):  # NaN in the body: the client cannot sign it
                payload = json.dumps(sign(SECRET, "door1", topic, body)).encode()
    try:
        command = auth.parse(topic, payload)
    except CommandError as exc:
        assert str(exc)  # a reason, always
        return
    assert command.name == name and isinstance(command.args, dict)


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(
    raw=st.one_of(
        json_values,
        st.dictionaries(st.sampled_from([*SCHEMA, "bogus"]), json_values, max_size=4),
        st.dictionaries(
            st.sampled_from(list(SCHEMA)),
            st.dictionaries(
                st.sampled_from([*(k for s in SCHEMA.values() for k in s), "bogus"]), json_values
            ),
            max_size=4,
        ),
    )
)
def test_fuzzed_configs_never_crash(raw: Any) -> None:
    _count("configs")
    try:
        config = validate(raw, pathlib.Path("fuzz.yaml"))
    except ConfigError as exc:
        assert "fuzz.yaml" in str(exc) or "config" in str(exc)
        return
    assert set(config.as_dict()) == set(SCHEMA)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzzed_yaml_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from facegate.config import load_config

    _count("yaml texts")
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_full_disk_write_fails_whole(tmp_path: pathlib.Path) -> None:
    """A gallery write that hits a full disk fails as one transaction: nothing half written."""
    path = tmp_path / "g.db"
    v = np.ones(8, np.float32) / np.sqrt(8)
    with Gallery.open(path, FINGERPRINT) as gallery:
        gallery.add("alice", [Sample(v, "a")])
        # SQLite's own page limit stands in for a full disk: the next pages cannot be written.
        pages = gallery._db.execute("PRAGMA page_count").fetchone()[0]
        gallery._db.execute(f"PRAGMA max_page_count = {pages}")
        big = [Sample(v, "x" * 4000, image=b"\0" * 200_000) for _ in range(5)]
        with pytest.raises(GalleryError, match="full"):
            gallery.add("bob", big)
        assert [p.name for p in gallery.people()] == ["alice"]  # bob is not half there
        assert gallery.person("alice").embeddings == 1
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


@pytest.mark.parametrize("content", [b"", b"\0" * 100, b"SQLite format 3\0", b"garbage" * 1000])
def test_gallery_files_that_are_not_galleries(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(content)
    try:
        with Gallery.open(path, FINGERPRINT) as gallery:  # an empty file is a new gallery; the rest refused
            assert content == b"" and len(gallery) == 0
    except GalleryError as exc:
        assert str(path) in str(exc)
        assert path.read_bytes() == content  # never overwritten


def test_a_gallery_path_that_is_a_folder_is_refused_and_left_as_it_is(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "gallery.db"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "x").write_text("kept")
    with pytest.raises(GalleryError, match=r"gallery\.db: not a facegate gallery \(not a file\)"):
        Gallery.open(folder, FINGERPRINT)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755 and (folder / "x").read_text() == "kept"


@pytest.mark.parametrize(
    "content",
    [b"", b"TFL3", b"\0" * 64, b"not a model at all", bytes(range(256)) * 4],
    ids=lambda c: f"{len(c)}B",
)
def test_model_files_that_are_not_models(tmp_path: pathlib.Path, content: bytes) -> None:
    from facegate.encoder import Encoder
    from tests.conftest import INT8_MODEL

    model = tmp_path / INT8_MODEL.name
    model.write_bytes(content)
    (tmp_path / INT8_MODEL.with_suffix(".json").name).write_bytes(
        INT8_MODEL.with_suffix(".json").read_bytes()
    )
    with pytest.raises(FacegateError, match=str(model.name)):
        Encoder(model)


def test_config_yaml_shapes(tmp_path: pathlib.Path) -> None:
    from facegate.config import load_config

    for text in ("", "---\n", "camera:\n", yaml.safe_dump({"mqtt": {"port": "1883"}}), "\t\tbad"):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc)


def test_truncated_gallery_model_and_card(tmp_path: pathlib.Path) -> None:
    """Real files cut short, as a crash or a full SD card leaves them: each is refused by name,
    and left as it was."""
    from facegate.encoder import Encoder
    from tests.conftest import INT8_MODEL

    gallery_path = tmp_path / "g.db"
    with Gallery.open(gallery_path, FINGERPRINT) as gallery:
        gallery.add("alice", [Sample(np.ones(8, np.float32) / np.sqrt(8), "a")])
    whole = gallery_path.read_bytes()
    for cut in (len(whole) // 2, 100):
        gallery_path.write_bytes(whole[:cut])
        with pytest.raises(GalleryError, match=r"g\.db"), Gallery.open(gallery_path, FINGERPRINT) as g:
            g.people()
        assert gallery_path.read_bytes() == whole[:cut]

    model, card = tmp_path / INT8_MODEL.name, tmp_path / INT8_MODEL.with_suffix(".json").name
    model.write_bytes(INT8_MODEL.read_bytes()[: INT8_MODEL.stat().st_size // 2])
    card.write_bytes(INT8_MODEL.with_suffix(".json").read_bytes())
    with pytest.raises(FacegateError, match=model.name):
        Encoder(model)
    model.write_bytes(INT8_MODEL.read_bytes())
    for text in (card.read_text()[:200], "", "[]"):
        card.write_text(text)
        with pytest.raises(FacegateError, match=card.name):
            Encoder(model)


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", b"\xff\xfe\xfa bad utf-8", b"device: {id: [unclosed"]
)
def test_config_files_that_are_not_configs(tmp_path: pathlib.Path, content: bytes) -> None:
    from facegate.config import load_config

    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
    assert path.read_bytes() == content
