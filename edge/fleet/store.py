"""The device's gallery file as the fleet's ``Store``, and who owns a person.

What a device got from its fleet is kept in a table of its own beside the
gallery's (per name: the version it holds, or the version of the removal),
written in the same transaction as the people it changes. The gallery itself
knows nothing of fleets; this module is where fleet policy meets it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import numpy as np

from facegate.errors import FacegateError
from facegate.gallery import Gallery, GalleryError, check_display_name, check_name

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fleet (name TEXT PRIMARY KEY, version INTEGER NOT NULL, "
    "deleted INTEGER NOT NULL DEFAULT 0)"
)

log = logging.getLogger(__name__)


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def owned_by_fleet(gallery: Gallery, name: str) -> bool:
    """True if ``name`` came from the fleet (and is still held): only the fleet's authority can
    remove it; a local removal would leave the device out of step with its manifest."""
    db = gallery.connection
    try:
        row = db.execute("SELECT deleted FROM fleet WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # no fleet table: this gallery never had a fleet
        return False
    return row is not None and not row[0] and name in gallery


_ON_THE_AUTHORITY = {
    "remove": "facegate gallery remove",
    "rename": "facegate gallery rename",
    "enroll": "facegate enroll",
    "import": "facegate gallery import",
}


def refuse_if_fleet_owned(gallery: Gallery, name: str, verb: str = "remove") -> None:
    """Refuse to ``verb`` (remove, rename, enroll, import) locally a person the fleet gave: a
    removal would leave the device out of step, a renamed copy would be out of reach of the
    fleet's removal, and faces added here would be dropped, unsaid, by the fleet's next entry
    for that person."""
    if owned_by_fleet(gallery, name):
        raise FacegateError(
            f"{name!r} came from the fleet; {verb} it on the fleet authority (`{_ON_THE_AUTHORITY[verb]}` "
            "there, then `facegate fleet publish`): every device then follows"
        )


class GalleryStore:
    """The device's own gallery file (a connection of its own; the daemon's matcher sees the
    changes through SQLite's data_version)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery.relaxed_sync()  # each entry can be fetched again from the broker
        with self._errors():
            made = gallery.connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'fleet'").fetchone()
        if made is None:  # asked first: a gallery on a read-only disk can still be read
            with self._errors(), gallery.transaction() as db:
                db.execute(_SCHEMA)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise GalleryError(self.gallery.path, f"fleet store: {exc}") from None

    def _held(self, db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT version FROM fleet WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def versions(self) -> dict[str, tuple[int, bool]]:
        with self._errors():
            rows = self.gallery.connection.execute("SELECT name, version, deleted FROM fleet").fetchall()
        return {r[0]: (int(r[1]), bool(r[2])) for r in rows}

    def put(self, name: str, display_name: str, version: int, vectors: np.ndarray) -> bool:
        """Make ``name`` exactly these embeddings at ``version``, in one transaction; False (and
        nothing written) if the gallery already holds that version or a later one."""
        check_name(name)
        check_display_name(display_name)
        for v in vectors:
            self.gallery.check_vector(v)
        metadata = json.dumps({"fleet_version": version})
        with self._errors(), self.gallery.transaction() as db:
            if self._held(db, name) >= version:
                return False
            row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                person_id = db.execute(
                    "INSERT INTO people (name, display_name, created, metadata) VALUES (?, ?, ?, ?)",
                    (name, display_name, _now(), metadata),
                ).lastrowid
            else:
                person_id = row[0]
                if self._held(db, name) == 0:  # enrolled here, under the name the fleet now uses
                    log.warning("fleet: %s was enrolled on this device; the fleet's entry replaces it", name)
                db.execute("DELETE FROM embeddings WHERE person_id = ?", (person_id,))
                db.execute(
                    "UPDATE people SET display_name = ?, metadata = ? WHERE id = ?",
                    (display_name, metadata, person_id),
                )
            db.executemany(
                "INSERT INTO embeddings (person_id, vector, source, quality, created) VALUES (?, ?, ?, ?, ?)",
                [(person_id, np.asarray(v, "<f4").tobytes(), "fleet", "{}", _now()) for v in vectors],
            )
            db.execute("INSERT OR REPLACE INTO fleet VALUES (?, ?, 0)", (name, version))
        if row is not None:
            self.gallery.purge()  # the person's earlier embeddings
        return True

    def delete(self, name: str, version: int) -> bool:
        """Remove ``name`` and remember the removal's version, in one transaction."""
        with self._errors(), self.gallery.transaction() as db:
            if self._held(db, name) >= version:
                return False
            db.execute("DELETE FROM people WHERE name = ?", (name,))
            db.execute("INSERT OR REPLACE INTO fleet VALUES (?, ?, 1)", (name, version))
        self.gallery.purge()
        return True

    def manifest(self) -> dict[str, Any] | None:
        with self._errors():
            row = self.gallery.connection.execute(
                "SELECT value FROM meta WHERE key = 'fleet_manifest'"
            ).fetchone()
        return json.loads(row[0]) if row else None

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        with self._errors(), self.gallery.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('fleet_manifest', ?)", (json.dumps(manifest),))

    def close(self) -> None:
        self.gallery.close()
