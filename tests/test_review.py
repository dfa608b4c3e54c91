"""The review store: unknown faces grouped, assigned, ignored, deleted; bounds, purge, privacy."""

from __future__ import annotations

import math
import pathlib
import sqlite3
import stat

import numpy as np
import pytest

from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import fingerprint
from facegate.gallery import Gallery, ModelFingerprint
from facegate.images import load_rgb
from facegate.perception import Perception
from facegate.review import ASSIGN_BEST, Limits, ReviewError, ReviewStore, jpeg, path_beside
from tests.conftest import INT8_MODEL

MODEL = ModelFingerprint("a" * 64, "test", 128)
DAY = 86400.0


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _near(v: np.ndarray, distance: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(v.shape)
    ortho = noise - (noise @ v) * v
    ortho /= np.linalg.norm(ortho)
    cos = 1 - distance**2 / 2
    return (cos * v + math.sqrt(1 - cos**2) * ortho).astype(np.float32)


def _store(path: pathlib.Path, **limits: float) -> ReviewStore:
    return ReviewStore.open(path, MODEL, threshold=0.4, limits=Limits(**limits))  # type: ignore[arg-type]


def test_file_is_private_and_refuses_foreign_sqlite(tmp_path: pathlib.Path) -> None:
    path = path_beside(tmp_path / "state" / "gallery.db")
    assert path.name == "gallery.db.review"
    with _store(path) as store:
        store.add_unknown(_unit(0), 10.0, b"\xff\xd8crop", now=1000.0)
        for p in path.parent.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    _store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE x (y)")
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(ReviewError, match="not a facegate review file"):
        _store(foreign)
    assert foreign.read_bytes() == before


def test_faces_of_one_stranger_group_and_the_best_crop_is_kept(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r") as store:
        a = _unit(1)
        first = store.add_unknown(a, 10.0, b"crop-a1", "e1", now=100.0)
        again = store.add_unknown(_near(a, 0.25, 2), 30.0, b"crop-a2", "e2", now=200.0)
        other = store.add_unknown(_unit(3), 5.0, b"crop-b", "e3", now=300.0)
        assert first.group == again.group != other.group and not first.ignored
        groups = {g.id: g for g in store.groups()}
        assert groups[first.group].faces == 2 and groups[other.group].faces == 1
        assert store.crop(first.group) == b"crop-a2"  # the better face
        assert store.latest_open() is not None and store.latest_open().id == other.group  # type: ignore[union-attr]
        with pytest.raises(ReviewError, match="no unknown-face group 99"):
            store.crop(99)


def test_ignored_stranger_is_not_kept_again(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r") as store:
        a = _unit(4)
        group = store.add_unknown(a, 10.0, b"crop", now=100.0).group
        store.ignore(group)
        later = store.add_unknown(_near(a, 0.2, 5), 10.0, b"crop2", now=200.0)
        assert later.group == group and later.ignored
        g = store.group(group)
        assert g.status == "ignored" and g.faces == 0 and g.seen == 2
        with pytest.raises(ReviewError, match="no face crop"):
            store.crop(group)
        assert not store.add_unknown(_unit(6), 10.0, now=300.0).ignored  # someone else still is


def test_assign_enrolls_the_best_faces_and_forgets_the_group(tmp_path: pathlib.Path) -> None:
    encoder = Encoder(INT8_MODEL)
    perception = Perception.for_encoder(encoder.card)
    faces = [
        perception.faces(load_rgb(PHOTOS / photo), "RGB")[0]
        for photo in ("obama.jpg", "obama2.jpg", "obama3.jpg")
    ]
    vectors = encoder.embed(np.stack([f.chip for f in faces]))
    path = tmp_path / "g.db"
    crop = jpeg(faces[0].chip)
    with (
        ReviewStore.open(path_beside(path), fingerprint(encoder), threshold=0.45) as store,
        Gallery.open(path, fingerprint(encoder)) as gallery,
    ):
        groups = {
            store.add_unknown(v, f.quality["eye_distance"], crop, now=100.0 + i).group
            for i, (v, f) in enumerate(zip(vectors, faces))
        }
        assert len(groups) == 1  # three photos of one man: one stranger
        group = groups.pop()
        person = store.assign(group, "barack", gallery, display_name="Barack")
        assert person.embeddings == min(3, ASSIGN_BEST) and person.display_name == "Barack"
        assert store.groups() == []
        with pytest.raises(ReviewError):
            store.assign(group, "barack", gallery)
    assert crop not in path_beside(path).read_bytes()  # deleted from the file, not only the table


def test_bounds_by_count_and_age_and_decisions_expire(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r", max_faces=3, max_age_days=1.0, events_keep_hours=2.0) as store:
        ids = [store.add_unknown(_unit(10 + i), 1.0, b"c", now=1000.0 + i).group for i in range(5)]
        kept = {g.id for g in store.groups()}
        assert kept == set(ids[2:])  # the oldest two went, with their groups
        store.remember("e1", "alice", _unit(20), now=1000.0)
        assert store.decision("e1")[0] == "alice"
        assert store.purge(now=1000.0 + 3 * 3600) == 1  # the decision is older than 2 h
        with pytest.raises(ReviewError, match="last 2 h"):
            store.decision("e1")
        assert store.purge(now=1000.0 + 2 * DAY) == 6  # 3 faces and their 3 groups, a day old
        assert store.groups() == []


def test_another_model_empties_the_store(tmp_path: pathlib.Path) -> None:
    with _store(tmp_path / "r") as store:
        store.add_unknown(_unit(1), 1.0, b"c", now=1.0)
        store.remember("e1", "alice", _unit(2), now=1.0)
    other = ModelFingerprint("b" * 64, "other", 128)
    with ReviewStore.open(tmp_path / "r", other) as store:
        assert store.groups() == []
        with pytest.raises(ReviewError):
            store.decision("e1")
    with pytest.raises(ReviewError, match="128 finite"):
        _store(tmp_path / "r").add_unknown(np.zeros(128), 1.0)
