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
    """Add the people of an export; returns (imported, skipped because they exist)."""
    path = pathlib.Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        model = ModelFingerprint(**doc["model"])
        people = doc["people"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FacegateError(f"{path}: not a facegate gallery export ({exc})") from None
    if model.sha256 != gallery.model.sha256:
        raise ModelMismatchError(
            path,
            f"exported from model {model.name} ({model.sha256[:12]}), this gallery uses "
            f"{gallery.model.name} ({gallery.model.sha256[:12]})",
        )
    for p in people:  # before anything is written
        if replace and isinstance(p, dict):
            refuse_if_fleet_owned(gallery, str(p.get("name")), "import")
    imported, skipped = [], []
    for p in people:
        if p["name"] in gallery and not replace:
            skipped.append(p["name"])
            continue
        samples = [
            Sample(
                np.asarray(e["vector"], np.float32),
                e["source"],
                e.get("quality", {}),
                bytes.fromhex(e["image"]) if "image" in e else None,
            )
            for e in p["embeddings"]
        ]
        gallery.add(p["name"], samples, p.get("display_name"), p.get("metadata"), replace=True)
        imported.append(p["name"])
    return imported, skipped
