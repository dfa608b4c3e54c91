"""The daemon's view of the gallery file (``facegate.livegallery``): it follows a file replaced
under it, and while the file is gone or not a gallery for this model it decides with the last
good templates and refuses every change."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import facegate.livegallery
from facegate.demo import PHOTOS
from facegate.encoder import Encoder
from facegate.enroll import fingerprint
from facegate.errors import FacegateError
from facegate.gallery import Gallery, ModelMismatchError, Sample
from facegate.livegallery import LiveGallery
from tests.conftest import FLOAT_MODEL, INT8_MODEL


def _gallery(path: pathlib.Path, sample: Any, *names: str, model: Any = None) -> None:
    with Gallery.open(path, model or fingerprint(Encoder(INT8_MODEL))) as gallery:
        for name in names:
            gallery.add(name, [sample])


def _replace(src: pathlib.Path, dst: pathlib.Path) -> None:
    """What a restore from backup or a copy from another device does: a rename over the file."""
    for suffix in ("-wal", "-shm"):
        pathlib.Path(f"{dst}{suffix}").unlink(missing_ok=True)
    os.replace(src, dst)


def test_follows_the_file_and_keeps_the_last_good_templates_while_it_is_unusable(
    tmp_path: pathlib.Path, obama_sample: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(facegate.livegallery, "CHECK_EVERY_S", 0.0)  # look at the file on every call
    model = fingerprint(Encoder(INT8_MODEL))
    path = tmp_path / "gallery.db"
    _gallery(path, obama_sample, "obama")
    live = LiveGallery(path, model)
    assert live.templates().names == ("obama",) and live.problem is None
    live.writable()

    def unusable(why: str) -> None:
        assert live.templates().names == ("obama",), why  # still decides with the last good copy
        assert live.problem is not None and why in live.problem
        with pytest.raises(FacegateError, match="cannot be changed now"):
            live.writable()

    # another model's gallery put in its place: its embeddings mean nothing to this encoder
    other_model = dataclasses.replace(model, sha256="0" * 64, name="another encoder")
    _gallery(tmp_path / "other-model.db", obama_sample, "mallory", model=other_model)
    _replace(tmp_path / "other-model.db", path)
    unusable("another encoder")

    path.unlink()
    unusable("is gone")

    path.write_bytes(b"not a gallery" * 512)
    unusable("gallery")

    # a good gallery for this model, with someone else in it: followed, and writable again
    _gallery(tmp_path / "restored.db", obama_sample, "obama", "biden")
    _replace(tmp_path / "restored.db", path)
    assert live.templates().names == ("biden", "obama")
    assert live.problem is None and live.count() == 2
    live.writable()
    live.close()


def test_a_rebuild_with_another_model_beside_it_is_refused_not_compared(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`facegate gallery rebuild --model NEW` run beside the service remade every embedding with
    NEW while the service, which checked the model only when it opened the file, went on
    comparing its own model's faces with them, and would have written its own into the file.
    It now sees the change at the next look, decides with the templates it had, and refuses
    changes, until it is restarted with that model."""
    monkeypatch.setattr(facegate.livegallery, "CHECK_EVERY_S", 0.0)
    path = tmp_path / "gallery.db"
    cli = [sys.executable, "-m", "facegate", "--gallery", str(path)]
    enroll = [*cli, "enroll", "obama", str(PHOTOS / "obama.jpg"), "--keep-images"]
    subprocess.run(enroll, check=True, capture_output=True)
    model = fingerprint(Encoder(INT8_MODEL))
    live = LiveGallery(path, model)
    before = live.templates()
    assert before.names == ("obama",) and live.problem is None
    rebuild = [*cli, "gallery", "rebuild", "--model", str(FLOAT_MODEL)]
    subprocess.run(rebuild, check=True, capture_output=True)
    after = live.templates()
    assert after.names == ("obama",) and np.array_equal(after.matrix, before.matrix)  # the int8 ones
    assert live.problem is not None and "remade with another model" in live.problem
    with pytest.raises(FacegateError, match="cannot be changed now"):
        live.writable()
    with pytest.raises(ModelMismatchError, match="remade with another model"):
        live.gallery.add("x", [Sample(before.matrix[0], "int8 face")])
    live.close()
    with Gallery.open(path, fingerprint(Encoder(FLOAT_MODEL))) as rebuilt:  # left as the rebuild made it
        assert [(p.name, p.embeddings) for p in rebuilt.people()] == [("obama", 1)]
        assert not np.array_equal(rebuilt.templates().matrix, before.matrix)
