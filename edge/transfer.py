"""A gallery to and from files: ``facegate gallery export | import`` (JSON, people and their
embeddings) and ``facegate gallery backup | restore`` (the whole SQLite file).

An export holds biometric data (every embedding; the kept photos with ``images``), so it
is written 0600. An import refuses an export made by another model, and skips people
already enrolled unless ``replace``.

A backup is everything in the gallery (kept photos, corrections, the fleet's versions too),
copied with SQLite's online backup: consistent while the service writes, 0600, one file with
no WAL beside it. A restore goes the same way into the open gallery: never a copy over the
file, which would corrupt a gallery whose WAL still holds changes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import sqlite3

import numpy as np

from facegate.errors import FacegateError
from facegate.files import lock_holders, replace_durably, sqlite_files, write_private_json
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
from facegate.wire import printable


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
    try:
        write_private_json(pathlib.Path(path), doc)
    except OSError as exc:
        raise FacegateError(f"{path}: cannot write the export there ({exc.strerror})") from None
    return len(people)


def import_(
    gallery: Gallery, path: str | os.PathLike[str], replace: bool = False
) -> tuple[list[str], list[str]]:
    """Add the people of an export; returns (imported, skipped because they exist). The whole
    file is checked before anything is written: a file that is not an export, or that holds
    a bad entry anywhere, imports no one."""
    path = pathlib.Path(path)
    try:
        with path.open("rb") as handle:  # a video named by mistake is not read whole into memory
            if not handle.read(64).lstrip().startswith(b"{"):
                raise ValueError("it is not JSON")
            handle.seek(0)
            doc = json.loads(handle.read().decode("utf-8"))
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
        fleet_check = functools.partial(refuse_if_fleet_owned, gallery, name, "import")
        gallery.add(name, samples, display_name, metadata, replace=True, guard=fleet_check)
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


def backup(gallery: Gallery, path: str | os.PathLike[str]) -> int:
    """Copy the whole gallery to ``path`` (0600; replaced whole, never half written) and check
    the copy; returns the people in it."""
    path = pathlib.Path(path)
    _not_the_gallery(gallery, path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise FacegateError(f"{path}: cannot write the backup there ({exc.strerror})") from None
    try:
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            gallery.connection.backup(copy)  # one step: one snapshot of the gallery
            copy.execute("PRAGMA journal_mode = DELETE")  # one file: no WAL for it to need
            checked = copy.execute("PRAGMA integrity_check").fetchone()[0]
            people = int(copy.execute("SELECT count(*) FROM people").fetchone()[0])
        finally:
            copy.close()
        if checked != "ok":
            raise GalleryError(gallery.path, f"the backup failed its check ({checked}); nothing written")
        replace_durably(tmp, path)
    except sqlite3.DatabaseError as exc:
        tmp.unlink(missing_ok=True)
        raise GalleryError(gallery.path, f"cannot back up to {path}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return people


def restore(gallery: Gallery, path: str | os.PathLike[str]) -> int:
    """Make ``gallery`` exactly the backup at ``path``, which must be a facegate gallery for the
    same model (checked on a private copy, so the backup itself is never written); returns
    the people restored."""
    path = pathlib.Path(path)
    _not_the_gallery(gallery, path)
    if not path.is_file():
        raise FacegateError(f"{path}: no such backup file")
    _not_in_use(gallery)
    work = gallery.path.with_name(f".{gallery.path.name}.restore")
    for leftover in sqlite_files(work):
        leftover.unlink(missing_ok=True)
    try:
        try:
            with path.open("rb") as source:
                os.close(os.open(work, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                with work.open("wb") as target:
                    shutil.copyfileobj(source, target)
        except OSError as exc:
            where = path if exc.filename == str(path) else work
            raise FacegateError(f"{where}: cannot restore from it ({exc.strerror})") from None
        try:
            with Gallery.open(work, gallery.model, create=False) as backup_:
                checked = backup_.connection.execute("PRAGMA integrity_check").fetchone()[0]
                if checked != "ok":
                    raise GalleryError(path, f"damaged backup ({checked}); nothing restored")
                people = len(backup_.people())
                gallery.restore_from(backup_)
        except GalleryError as exc:  # named as the backup, not as the private copy
            raise type(exc)(path, exc.problem) from None
        except sqlite3.DatabaseError as exc:
            raise GalleryError(gallery.path, f"cannot restore into it: {exc}") from None
    finally:
        for leftover in sqlite_files(work):
            leftover.unlink(missing_ok=True)
    return people


def _not_in_use(gallery: Gallery) -> None:
    """Refuse to restore under another process that has the gallery open (the service): it
    would see the restored people, but its fleet sync would still hold the versions it had
    in memory and skip the fleet's entries the backup is older than."""
    holders = lock_holders(sqlite_files(gallery.path)[2])
    if holders:
        named = ", ".join(_process(pid) for pid in holders)
        raise FacegateError(
            f"{gallery.path}: in use by {named}; stop it first (`sudo systemctl stop facegate` "
            "if it is the service), restore, then start it again"
        )


def _process(pid: int) -> str:
    """``pid 812 (facegate run --config ...)``, as far as this user may read it."""
    if pid <= 0:  # an OFD lock, or a process in another pid namespace
        return "another process"
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [w.decode(errors="replace") for w in cmdline if w]
    shown = " ".join(pathlib.Path(words[0]).name if i == 0 else w for i, w in enumerate(words[:6]))
    return f"pid {pid} ({printable(shown)[:120]})" if shown else f"pid {pid}"


def _not_the_gallery(gallery: Gallery, path: pathlib.Path) -> None:
    if path.resolve() in sqlite_files(gallery.path.resolve()):
        raise FacegateError(f"{path}: that is the gallery's own file; name another one")
