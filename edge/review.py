"""What the camera saw, kept for review: the unknown-face queue and recent decisions.

Opt-in (``review.enabled``): face crops are more sensitive than embeddings.
One private SQLite file beside the gallery (``gallery.db.review``), made as
the gallery is: 0600 in a 0700 folder, WAL, ``secure_delete``, and the WAL
truncated after each deletion so that what was deleted is gone from the disk.

- **Unknown faces.** For each track decided unknown, its best face (the
  embedding and, with ``review.crops``, a JPEG of the aligned chip). Faces
  of the same stranger are grouped: a face joins the group whose mean is
  nearest, if within the calibrated threshold, else starts one. A group can be
  *assigned* to a name (its best embeddings are enrolled and the group is
  deleted), *ignored* (its faces and crops are deleted; its mean stays, and a
  later unknown face that matches it is not reported), or *deleted*.
- **Recent decisions.** The embedding behind each accepted event (identify
  known, verify accepted), so that "event E was not alice" can be recorded
  as a correction (``facegate.decide``) after the fact.
- **Bounds.** At most ``max_faces`` unknown faces (the oldest go first), none
  older than ``max_age_days``, decisions for ``events_keep_hours``; enforced
  on every insert and by ``purge``, which the daemon runs hourly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import logging
import os
import pathlib
import sqlite3
from typing import Any

import numpy as np
from PIL import Image

from facegate.decide import OperatingPoint, check_correction, unit_distance, unit_embedding
from facegate.errors import FacegateError
from facegate.files import create_private, make_private
from facegate.fleet.store import refuse_if_fleet_owned
from facegate.gallery import Gallery, ModelFingerprint, Person, Sample, write_transaction

log = logging.getLogger(__name__)

APPLICATION_ID = 0x46475231  # "FGR1"
SCHEMA_VERSION = 1
ASSIGN_BEST = 5  # embeddings enrolled from a group: its best faces by quality
MAX_IGNORED = 1000  # ignored strangers remembered; the longest unseen beyond it are forgotten

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('open', 'ignored')),
    total BLOB NOT NULL,
    faces_seen INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE faces (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    seen REAL NOT NULL,
    vector BLOB NOT NULL,
    quality REAL NOT NULL,
    crop BLOB,
    event_id TEXT
);
CREATE INDEX faces_group ON faces(group_id);
CREATE TABLE decisions (
    event_id TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    vector BLOB NOT NULL,
    seen REAL NOT NULL
);
"""


class ReviewError(FacegateError):
    pass


@dataclasses.dataclass(frozen=True)
class Limits:
    max_faces: int = 500
    max_age_days: float = 7.0
    events_keep_hours: float = 24.0


@dataclasses.dataclass(frozen=True)
class Group:
    id: int
    status: str  # "open" or "ignored"
    faces: int  # faces kept now
    seen: int  # faces ever matched to it
    first_seen: str
    last_seen: str
    has_crop: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Added:
    """Where an unknown face went: its group, and whether that group is ignored (then the
    face was not kept, and the caller should not report it)."""

    group: int
    ignored: bool


def path_beside(gallery: str | os.PathLike[str]) -> pathlib.Path:
    g = pathlib.Path(gallery)
    return g.with_name(g.name + ".review")


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def _unit(vector: np.ndarray, size: int) -> np.ndarray:
    try:
        return unit_embedding(vector, size).astype(np.float64)
    except FacegateError as exc:
        raise ReviewError(str(exc)) from None


def jpeg(chip: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chip)).save(out, "JPEG", quality=quality)
    return out.getvalue()


class ReviewStore:
    """An open review file. Use ``ReviewStore.open``; close it, or use it as a context manager.
    ``threshold`` groups faces (the decision's calibrated distance)."""

    def __init__(
        self, path: pathlib.Path, db: sqlite3.Connection, size: int, threshold: float, limits: Limits
    ) -> None:
        self.path, self._db, self.size = path, db, size
        self.threshold, self.limits = threshold, limits

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        model: ModelFingerprint,
        threshold: float = 0.4,
        limits: Limits | None = None,
    ) -> ReviewStore:
        """Open or create the file. One made by another model is emptied (its embeddings
        cannot be compared with the new model's) and said so; a foreign file is refused."""
        path = pathlib.Path(path)
        create_private(path)
        make_private(path)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ReviewError(f"{path}: cannot open it ({exc})") from None
        try:
            store = cls(path, db, model.embedding_size, threshold, limits or Limits())
            store._prepare(model)
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError):  # locked, a read-only disk, ...: not damage
                raise ReviewError(f"{path}: cannot open it now ({exc})") from None
            raise ReviewError(f"{path}: not a usable review file ({exc}); move it aside") from None
        except BaseException:
            db.close()  # a refused file leaves no descriptor open
            raise
        make_private(path)
        return store

    def _prepare(self, model: ModelFingerprint) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and tables:
            raise ReviewError(f"{self.path}: an SQLite file that is not a facegate review file; untouched")
        for pragma in ("foreign_keys=ON", "secure_delete=ON", "journal_mode=WAL", "busy_timeout=5000"):
            db.execute(f"PRAGMA {pragma}")
        if app_id != APPLICATION_ID:
            with self._write():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT INTO meta VALUES ('model_sha256', ?)", (model.sha256,))
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise ReviewError(f"{self.path}: review schema {meta.get('schema_version')} is not supported")
        if meta.get("model_sha256") != model.sha256:
            log.warning("%s: made with another model; its faces cannot be compared: emptied", self.path)
            with self._write():
                for table in ("faces", "groups", "decisions"):
                    db.execute(f"DELETE FROM {table}")
                db.execute("UPDATE meta SET value = ? WHERE key = 'model_sha256'", (model.sha256,))
            self._truncate()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> contextlib.AbstractContextManager[None]:
        return write_transaction(self._db)

    def _truncate(self) -> None:
        """After deleting: the WAL copied into the file and emptied (deleted pages are zeroed)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- unknown faces ------------------------------------------------------------------

    def add_unknown(
        self,
        vector: np.ndarray,
        quality: float,
        crop: bytes | None = None,
        event_id: str | None = None,
        now: float | None = None,
    ) -> Added:
        """Keep an unknown face in its group (a new one if no group is within the threshold)."""
        now = datetime.datetime.now().timestamp() if now is None else now
        v = _unit(vector, self.size)
        with self._write():
            group = self._nearest(v)
            if group is None:
                group_id = self._db.execute(
                    "INSERT INTO groups (status, total, faces_seen, first_seen, last_seen) VALUES "
                    "('open', ?, 1, ?, ?)",
                    (v.astype("<f8").tobytes(), now, now),
                ).lastrowid
                status = "open"
            else:
                group_id, status, total = group
                self._db.execute(
                    "UPDATE groups SET total = ?, faces_seen = faces_seen + 1, last_seen = ? WHERE id = ?",
                    ((total + v).astype("<f8").tobytes(), now, group_id),
                )
            if status == "open":
                self._db.execute(
                    "INSERT INTO faces (group_id, seen, vector, quality, crop, event_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (group_id, now, v.astype("<f4").tobytes(), float(quality), crop, event_id),
                )
        self.purge(now)
        assert group_id is not None
        return Added(int(group_id), status == "ignored")

    def _nearest(self, v: np.ndarray) -> tuple[int, str, np.ndarray] | None:
        rows = self._db.execute("SELECT id, status, total FROM groups").fetchall()
        if not rows:
            return None
        totals = np.stack([np.frombuffer(r[2], "<f8") for r in rows])
        means = totals / np.maximum(np.linalg.norm(totals, axis=1, keepdims=True), 1e-12)
        distances = unit_distance(means @ v)
        best = int(np.argmin(distances))
        if distances[best] >= self.threshold:
            return None
        return int(rows[best][0]), str(rows[best][1]), totals[best]

    def groups(self) -> list[Group]:
        rows = self._db.execute(
            "SELECT g.id, g.status, count(f.id), g.faces_seen, g.first_seen, g.last_seen, count(f.crop) "
            "FROM groups g LEFT JOIN faces f ON f.group_id = g.id GROUP BY g.id ORDER BY g.last_seen DESC"
        ).fetchall()
        return [Group(r[0], r[1], r[2], r[3], _iso(r[4]), _iso(r[5]), r[6] > 0) for r in rows]

    def group(self, group_id: int) -> Group:
        for g in self.groups():
            if g.id == group_id:
                return g
        raise ReviewError(f"no unknown-face group {group_id} (see `facegate review list`)")

    def crop(self, group_id: int) -> bytes:
        """The JPEG of the group's best face."""
        self.group(group_id)
        row = self._db.execute(
            "SELECT crop FROM faces WHERE group_id = ? AND crop IS NOT NULL ORDER BY quality DESC LIMIT 1",
            (group_id,),
        ).fetchone()
        if row is None:
            raise ReviewError(f"group {group_id} has no face crop (review.crops is off, or it is ignored)")
        return bytes(row[0])

    def latest_open(self) -> Group | None:
        open_groups = [g for g in self.groups() if g.status == "open"]
        return open_groups[0] if open_groups else None

    def assign(
        self,
        group_id: int,
        name: str,
        gallery: Gallery,
        display_name: str | None = None,
        op: OperatingPoint | None = None,
    ) -> tuple[Person, list[str]]:
        """Enroll the group's best faces as ``name`` (added to them if enrolled), then delete
        it; with the warnings of faces that look like someone else at ``op`` (as any enroll)."""
        from facegate.enroll import add_samples

        group = self.group(group_id)
        if group.status != "open" or group.faces == 0:
            raise ReviewError(f"group {group_id} is {group.status} and holds no faces to enroll")
        refuse_if_fleet_owned(gallery, name, "enroll")
        rows = self._db.execute(
            "SELECT vector, quality FROM faces WHERE group_id = ? ORDER BY quality DESC LIMIT ?",
            (group_id, ASSIGN_BEST),
        ).fetchall()
        samples = [
            Sample(np.frombuffer(r[0], "<f4").copy(), f"review group {group_id}", {"quality": round(r[1], 4)})
            for r in rows
        ]
        person, alike = add_samples(gallery, name, samples, op, display_name)
        self.delete(group_id)
        return person, alike

    def ignore(self, group_id: int) -> None:
        """Stop reporting this stranger: faces and crops deleted, the group's mean kept."""
        self.group(group_id)
        with self._write():
            self._db.execute("DELETE FROM faces WHERE group_id = ?", (group_id,))
            self._db.execute("UPDATE groups SET status = 'ignored' WHERE id = ?", (group_id,))
        self._truncate()

    def delete(self, group_id: int) -> None:
        self.group(group_id)
        with self._write():
            self._db.execute("DELETE FROM groups WHERE id = ?", (group_id,))
        self._truncate()

    # --- decisions, for corrections --------------------------------------------------------

    def remember(self, event_id: str, identity: str, vector: np.ndarray, now: float | None = None) -> None:
        now = datetime.datetime.now().timestamp() if now is None else now
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?)",
                (event_id, identity, _unit(vector, self.size).astype("<f4").tobytes(), now),
            )

    def decision(self, event_id: str) -> tuple[str, np.ndarray]:
        """(the name the event gave, its embedding)."""
        row = self._db.execute(
            "SELECT identity, vector FROM decisions WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            keep = self.limits.events_keep_hours
            raise ReviewError(
                f"no decision {event_id!r} kept: only accepted events of the last {keep:g} h can be corrected"
            )
        return str(row[0]), np.frombuffer(row[1], "<f4").copy()

    # --- bounds ------------------------------------------------------------------------

    def purge(self, now: float | None = None) -> int:
        """Apply the bounds; returns how many faces and decisions were deleted."""
        now = datetime.datetime.now().timestamp() if now is None else now
        lim = self.limits
        with self._write():
            deleted = self._db.execute(
                "DELETE FROM faces WHERE seen < ? OR id NOT IN "
                "(SELECT id FROM faces ORDER BY seen DESC, id DESC LIMIT ?)",
                (now - lim.max_age_days * 86400, lim.max_faces),
            ).rowcount
            deleted += self._db.execute(
                "DELETE FROM groups WHERE status = 'open' AND id NOT IN (SELECT group_id FROM faces)"
            ).rowcount
            deleted += self._db.execute(
                "DELETE FROM groups WHERE status = 'ignored' AND id NOT IN "
                "(SELECT id FROM groups WHERE status = 'ignored' ORDER BY last_seen DESC LIMIT ?)",
                (MAX_IGNORED,),
            ).rowcount
            deleted += self._db.execute(
                "DELETE FROM decisions WHERE seen < ?", (now - lim.events_keep_hours * 3600,)
            ).rowcount
        if deleted:
            self._truncate()
        return int(deleted)


def face_quality(quality: dict[str, float]) -> float:
    """Which of a track's faces is its best: larger and more frontal first."""
    return float(quality["eye_distance"]) * max(0.0, 1.0 - abs(float(quality["yaw"])))


class Recorder:
    """The daemon's side of the store: each track's best face while it is in view; at the
    track's decision, an unknown face into the queue (and whether it is an ignored stranger,
    not to be reported), an accepted face's embedding for corrections. A failing store (a full
    disk, a damaged file) is logged and counted, never raised into the frame loop."""

    def __init__(self, store: ReviewStore, crops: bool = True, keep_last: bool = False) -> None:
        # keep_last: hold a JPEG of the last unknown face reported (Home Assistant's image entity)
        self.store, self.crops, self.keep_last = store, crops, keep_last
        self.best: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}  # track -> (quality, vector, chip)
        self.errors = 0
        self.ignored = 0
        self.last_face: bytes | None = None  # JPEG of the last unknown face reported

    def see(self, track: int, vector: np.ndarray, chip: np.ndarray, quality: dict[str, float]) -> None:
        q = face_quality(quality)
        if track not in self.best or q > self.best[track][0]:
            self.best[track] = (q, vector, chip)

    def keep_only(self, tracks: set[int]) -> None:
        for track in [t for t in self.best if t not in tracks]:
            del self.best[track]

    def unknown(self, track: int, event_id: str) -> bool:
        """Queue the track's best face; False if it is an ignored stranger (do not report it)."""
        if track not in self.best:
            return True
        q, vector, chip = self.best[track]
        face = jpeg(chip) if self.crops or self.keep_last else None
        try:
            added = self.store.add_unknown(vector, q, face if self.crops else None, event_id)
        except (FacegateError, sqlite3.Error, OSError) as exc:
            self._failed(exc)
            added = Added(0, False)
        self.ignored += added.ignored
        self.last_face = None if added.ignored or not self.keep_last else face
        return not added.ignored

    def accepted(self, event_id: str, name: str, vector: np.ndarray | None) -> None:
        if vector is None:
            return
        try:
            self.store.remember(event_id, name, vector)
        except (FacegateError, sqlite3.Error, OSError) as exc:
            self._failed(exc)

    def vector(self, track: int) -> np.ndarray | None:
        return self.best[track][1] if track in self.best else None

    def purge(self) -> None:
        try:
            self.store.purge()
        except (FacegateError, sqlite3.Error, OSError) as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        log.error("review store %s: %s (%s)", self.store.path, type(exc).__name__, exc)


def correct(
    store: ReviewStore, gallery: Gallery, event_id: str, op: OperatingPoint, name: str | None = None
) -> dict[str, Any]:
    """ "Event ``event_id`` was not who it said": its face recorded as a negative of that person
    (``facegate.decide``), unless the guard refuses it. ``name``, if given, must be the name the
    event gave (a check against correcting the wrong event)."""
    identity, vector = store.decision(event_id)
    if name is not None and name != identity:
        raise ReviewError(f"event {event_id} named {identity!r}, not {name!r}; nothing recorded")
    distance = check_correction(gallery.templates(), identity, vector, op)
    count = gallery.add_negative(identity, vector, f"correction of event {event_id}")
    return {"event_id": event_id, "not": identity, "distance": round(distance, 4), "corrections": count}
