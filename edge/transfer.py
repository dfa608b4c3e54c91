"""A gallery to and from a private JSON file: ``facegate gallery export | import``.

An export holds biometric data (every embedding; the kept photos with ``images``), so it
is written 0600. An import refuses an export made by another model, and skips people
already enrolled unless ``replace``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sqlite3

import numpy as np

from facegate.errors import FacegateError
from facegate.files import write_private_json
from facegate.fleet.store import refuse_if_fleet_owned
from facegate.gallery import (
    SCHEMA_VERSION,
    Gallery,
    GalleryError,
    ModelFingerprint,
    ModelMismatchError,
    Sample,
    check_display_name,
    check_name,
)


def export(gallery: Gallery, path: str | os.PathLike[str], images: bool = False) -> int:
    """Write every person and embedding to a JSON file (0600); returns people written."""
    try:
        return _export(gallery, path, images)
    except sqlite3.DatabaseError as exc:
        raise GalleryError(gallery.path, f"cannot export: {exc}") from None


def _export(gallery: Gallery, path: str | os.PathLike[str], images: bool) -> int:
    people = []
    for p in gallery.people():
        rows = gallery.connection.execute(
            "SELECT e.vector, e.source, e.quality, e.created, e.image FROM embeddings e "
            "JOIN people q ON q.id = e.person_id WHERE q.name = ? ORDER BY e.id",
            (p.name,),
        ).fetchall()
        people.append(
            {
                "name": p.name,
                "display_name": p.display_name,
                "created": p.created,
                "metadata": p.metadata,
                "embeddings": [
                    {
                        "vector": np.frombuffer(r[0], "<f4").round(7).tolist(),
                        "source": r[1],
                        "quality": json.loads(r[2]),
                        "created": r[3],
                        **({"image": r[4].hex()} if images and r[4] is not None else {}),
                    }
                    for r in rows
                ],
            }
        )
    doc = {"facegate_gallery": SCHEMA_VERSION, "model": dataclasses.asdict(gallery.model), "people": people}
    write_private_json(pathlib.Path(path), doc)
    return len(people)


def import_(
    gallery: Gallery, path: str | os.PathLike[str], replace: bool = False
) -> tuple[list[str], list[str]]:
    """Add the people of an export; returns (imported, skipped because they exist). The whole
    file is checked before anything is written: a file that is not an export, or that holds
    a bad entry anywhere, imports no one."""
    path = pathlib.Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        model = ModelFingerprint(**doc["model"])
        people = doc["people"]
        if not isinstance(people, list):
            raise TypeError("people is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FacegateError(f"{path}: not a facegate gallery export ({exc})") from None
    if model.sha256 != gallery.model.sha256:
        raise ModelMismatchError(
            path,
            f"exported from model {model.name} ({model.sha256[:12]}), this gallery uses "
            f"{gallery.model.name} ({gallery.model.sha256[:12]})",
        )
    entries = [_entry(gallery, path, i, p) for i, p in enumerate(people)]
    if replace:
        for name, *_ in entries:
            refuse_if_fleet_owned(gallery, name, "import")
    imported, skipped = [], []
    for name, samples, display_name, metadata in entries:
        if name in gallery and not replace:
            skipped.append(name)
            continue
        gallery.add(name, samples, display_name, metadata, replace=True)
        imported.append(name)
    return imported, skipped


def _entry(
    gallery: Gallery, path: pathlib.Path, index: int, person: object
) -> tuple[str, list[Sample], str | None, dict[str, object] | None]:
    """One person of an export, checked as ``Gallery.add`` would check it."""
    where = f"{path}: person {index + 1}"
    try:
        if not isinstance(person, dict):
            raise TypeError("not an object")
        name = check_name(person["name"])
        display_name = person.get("display_name")
        if display_name is not None:
            check_display_name(display_name)
        metadata = person.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError("metadata is not an object")
        embeddings = person["embeddings"]
        if not isinstance(embeddings, list) or not embeddings:
            raise TypeError("no embeddings")
        samples = []
        for e in embeddings:
            if not isinstance(e, dict) or not isinstance(e.get("source", ""), str):
                raise TypeError("an embedding is not an object with a source")
            quality = e.get("quality", {})
            if not isinstance(quality, dict):
                raise TypeError("an embedding's quality is not an object")
            vector = np.asarray(e["vector"], np.float32)
            gallery.check_vector(vector)
            image = bytes.fromhex(e["image"]) if e.get("image") is not None else None
            samples.append(Sample(vector, e.get("source", ""), quality, image))
    except FacegateError as exc:
        raise FacegateError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FacegateError(f"{where}: not a facegate gallery entry ({type(exc).__name__}: {exc})") from None
    return name, samples, display_name, metadata
