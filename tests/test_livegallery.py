"""The daemon's view of the gallery file (``facegate.livegallery``): it follows a file replaced
under it, and while the file is gone or not a gallery for this model it decides with the last
good templates and refuses every change."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import pytest

import facegate.livegallery
from facegate.encoder import Encoder
from facegate.enroll import fingerprint
from facegate.errors import FacegateError
from facegate.gallery import Gallery
from facegate.livegallery import LiveGallery
from tests.conftest import INT8_MODEL


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
