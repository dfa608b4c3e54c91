"""The enrolled people and their embeddings, in one private SQLite file.

- One transaction per change (``BEGIN IMMEDIATE`` ... ``COMMIT``), WAL
  journal, ``synchronous=FULL``: a crash or ``kill -9`` loses at most the
  change in flight, never a committed person.
- The file belongs to facegate: it carries an ``application_id`` and the
  sha256 of the model that made its embeddings. A foreign or corrupt file,
  or one made by another model, is refused with a message, and never written.
- The file and its WAL are created 0600 (readable by the service user only);
  a gallery found readable by others is made private again on open.
- Enrolling a name that exists adds the new embeddings to that person (more
  images make a better template); ``replace=True`` swaps them instead. A photo
  the person is already enrolled from (its embedding within ``SAME_PHOTO``) is
  not added again: enrolling again, or ``enroll --dir`` re-run after a folder
  was added, leaves the others' templates as they were.
- Matching uses one template per person: the L2-normalised mean of their
  embeddings, kept in a float32 matrix and reloaded when the file changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import os
import pathlib
import pwd
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from facegate.errors import FacegateError
from facegate.files import create_private, make_private, read_only_fs, sqlite_files

log = logging.getLogger(__name__)

APPLICATION_ID = 0x46474731  # "FGG1"
SCHEMA_VERSION = 1
SQLITE_HEADER = 100  # bytes: any SQLite file has at least its header
_NOT_SQLITE = "not a facegate gallery (not an SQLite file); left untouched"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # always fullmatch: "bob\n" is not "bob"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    created TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    quality TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL,
    image BLOB
);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE TABLE IF NOT EXISTS negatives (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    created TEXT NOT NULL
);
"""
# Added after schema 1 shipped: created on open where missing (older facegate ignores it).
_NEGATIVES = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS negatives") :]
MAX_NEGATIVES = 32  # per person; a new correction beyond it replaces the oldest
# Embedding distance under which two samples are one photo. The same pixels give the same
# embedding to the bit (also with another thread count); the least change to them (a JPEG
# re-save at quality 95, noise of 2 grey levels) moved lfw-dev embeddings by 0.008 or more
# (scripts/dev/same_photo.py).
SAME_PHOTO = 1e-3


class GalleryError(FacegateError):
    """A gallery file that cannot be used; the file is left as it was."""

    def __init__(self, path: pathlib.Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class ModelMismatchError(GalleryError):
    pass


@dataclasses.dataclass(frozen=True)
class ModelFingerprint:
    """What a gallery records about the encoder that made its embeddings."""

    sha256: str
    name: str
    embedding_size: int


@dataclasses.dataclass(frozen=True)
class Sample:
    """One enrollment image's embedding, with where it came from."""

    vector: np.ndarray
    source: str
    quality: dict[str, float] = dataclasses.field(default_factory=dict)
    image: bytes | None = None  # the original file, only when the user keeps images


@dataclasses.dataclass(frozen=True)
class Person:
    name: str
    display_name: str
    created: str
    metadata: dict[str, Any]
    embeddings: int
    images: int


@dataclasses.dataclass(frozen=True)
class Templates:
    """One L2-normalised template per person, row i belongs to ``names[i]``; and the
    corrections (``facegate.decide``): faces recorded as *not* a person, each a unit
    vector in ``negatives`` with its person's row in ``negative_of``."""

    names: tuple[str, ...]
    matrix: np.ndarray  # (people, size) float32
    negatives: np.ndarray | None = None  # (M, size) float32
    negative_of: np.ndarray | None = None  # (M,) int: row in ``names``

    def negatives_of(self, row: int) -> np.ndarray:
        """The negatives recorded for the person in ``row``, (k, size)."""
        if self.negatives is None or self.negative_of is None:
            return self.matrix[:0]
        return self.negatives[self.negative_of == row]


F = TypeVar("F", bound=Callable[..., Any])


def guarded(method: F) -> F:
    """SQLite errors from a damaged or busy file become a GalleryError naming it."""

    @functools.wraps(method)
    def wrapper(self: Gallery, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.OperationalError as exc:
            raise GalleryError(self.path, f"cannot use the gallery: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise GalleryError(
                self.path, f"corrupt gallery ({exc}); left untouched: restore a backup or move it aside"
            ) from None

    return wrapper  # type: ignore[return-value]


DISPLAY_NAME_MAX = 128


def printable_display_name(text: object) -> bool:
    """1-128 characters that read as they are: no control or format characters (bidi
    overrides, zero-width marks), no separator but the plain space, nothing unassigned."""
    return isinstance(text, str) and 0 < len(text) <= DISPLAY_NAME_MAX and text.isprintable()


def check_display_name(text: str) -> str:
    if not printable_display_name(text):
        raise FacegateError(f"invalid display name {str(text)[:40]!r}: use 1-128 printable characters")
    return text


RESERVED_NAMES = frozenset({"unknown"})  # an event's identity for a stranger: never a person's name


def check_name(name: str) -> str:
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise FacegateError(
            f"invalid name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit (it becomes part of MQTT topics); put spaces in --display-name"
        )
    if name.lower() in RESERVED_NAMES:
        raise FacegateError(
            f"invalid name {name!r}: events name a stranger 'unknown', so no person may be called "
            "that; pick another name (and --display-name for how it is shown)"
        )
    return name


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Gallery:
    """An open gallery. Use ``Gallery.open``; close it, or use it as a context manager."""

    def __init__(self, path: pathlib.Path, db: sqlite3.Connection, model: ModelFingerprint) -> None:
        self.path = path
        self._db = db
        self.model = model
        self._templates: Templates | None = None
        self._version: int | None = None

    # --- opening -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        model: ModelFingerprint,
        create: bool = True,
        any_model: bool = False,
    ) -> Gallery:
        """Open (or create) the gallery at ``path`` for embeddings from ``model``.

        ``any_model=True`` opens a gallery made by another model (for
        ``rebuild`` and ``list``); matching with it is then refused.
        """
        path = pathlib.Path(path)
        try:
            st: os.stat_result | None = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise GalleryError(path, f"cannot open: {exc.strerror}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise GalleryError(path, "not a facegate gallery (not a file); left untouched")
        size = None if st is None else st.st_size
        fresh = not size
        if fresh and not create:
            raise GalleryError(path, "no gallery here (enroll someone first)")
        read_only = size is not None and size >= SQLITE_HEADER and read_only_fs(path)
        # The file is never opened here but by SQLite: closing any descriptor of it drops every
        # POSIX lock this process holds on it, also those of the connections already open on it
        # (the daemon has several), and another process closing its own connection would then
        # delete the WAL under them, losing or corrupting later writes (sqlite.org/howtocorrupt).
        if size is None:
            try:
                create_private(path)  # a new file: no connection holds it yet
            except OSError as exc:
                raise GalleryError(path, f"cannot create it: {exc.strerror}{_run_as(path.parent)}") from None
        elif size < SQLITE_HEADER:
            raise GalleryError(path, _NOT_SQLITE)
        elif read_only:
            pass  # read, not written: nothing on it can change
        elif not os.access(path, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids):
            raise GalleryError(path, f"cannot open it: permission denied{_run_as(path)}")
        if not read_only:
            make_private(path)
        try:
            db = (
                _connect_read_only(path)
                if read_only
                else sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            )
        except sqlite3.Error as exc:
            raise GalleryError(path, f"cannot open: {exc}") from None
        try:
            gallery = cls._checked(path, db, model, fresh, any_model, read_only)
        except sqlite3.DatabaseError as exc:
            db.close()
            if "file is not a database" in str(exc):  # SQLITE_NOTADB: SQLite read the header only
                raise GalleryError(path, _NOT_SQLITE) from None
            if isinstance(exc, sqlite3.OperationalError) and (
                "readonly" in str(exc) or "unable to open" in str(exc)
            ):  # a file it may write, in a folder it may not: no room for the WAL beside it
                raise GalleryError(
                    path,
                    f"cannot open it ({exc}): SQLite writes its WAL beside the file, so its folder "
                    f"must be writable too{_run_as(path.parent)}",
                ) from None
            if isinstance(exc, sqlite3.OperationalError):  # locked, busy, I/O, a full disk: not damage
                raise GalleryError(path, f"cannot open it now ({exc}); left untouched") from None
            raise GalleryError(
                path,
                f"corrupt gallery ({exc}); left untouched: restore a backup "
                "(`facegate gallery restore FILE`) or move it aside",
            ) from None
        except BaseException:
            db.close()
            raise
        return gallery

    @classmethod
    def _checked(
        cls,
        path: pathlib.Path,
        db: sqlite3.Connection,
        model: ModelFingerprint,
        fresh: bool,
        any_model: bool,
        read_only: bool = False,
    ) -> Gallery:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (tables or not fresh):
            raise GalleryError(path, "an SQLite file that is not a facegate gallery; left untouched")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not left in free pages
        if not read_only:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA busy_timeout = 5000")
        if app_id != APPLICATION_ID:
            cls._create(db, model)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'negatives'").fetchone() is None:
            if read_only:
                raise GalleryError(
                    path, "a gallery from before corrections cannot be upgraded on a read-only file system"
                )
            with write_transaction(db):
                db.execute(_NEGATIVES)
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
            raise GalleryError(path, f"gallery schema {meta.get('schema_version')} is not supported")
        stored = ModelFingerprint(meta["model_sha256"], meta["model_name"], int(meta["embedding_size"]))
        if stored.sha256 != model.sha256 and not any_model:
            raise ModelMismatchError(
                path,
                f"its embeddings were made by model {stored.name} ({stored.sha256[:12]}), not by "
                f"{model.name} ({model.sha256[:12]}); run `facegate gallery rebuild` if the enrollment "
                "images were kept, or enroll the people again into a new gallery",
            )
        gallery = cls(path, db, stored)
        if read_only:
            log.error(
                "%s is on a read-only file system: deciding with the %d people in it, and refusing "
                "changes (an SD card the kernel made read-only after errors: `dmesg | grep -i ext4`)",
                path,
                len(gallery),
            )
        else:
            make_private(path)
        return gallery

    @staticmethod
    def _create(db: sqlite3.Connection, model: ModelFingerprint) -> None:
        """Tables, meta and the application id in one transaction (executescript would commit early)."""
        with write_transaction(db):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("model_sha256", model.sha256),
                    ("model_name", model.name),
                    ("embedding_size", str(model.embedding_size)),
                    ("created", _now()),
                ],
            )
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _purge(self) -> None:
        """After a deletion: copy the WAL into the file and truncate it, so what was deleted
        (zeroed by ``secure_delete``) is gone from both files, not only from the tables. A
        reader holding an old snapshot can delay it; the next deletion or checkpoint does it."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "%s: a reader kept the WAL from being truncated; retried at the next change", self.path
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this gallery's connection, for a store kept beside the
        gallery's own tables (the fleet's versions): committed whole or not at all."""
        with self._write():
            yield self._db

    @property
    def connection(self) -> sqlite3.Connection:
        """This gallery's connection, for reads by a store kept beside it."""
        return self._db

    def purge(self) -> None:
        """After deleting rows through ``transaction``: gone from the file and its WAL too."""
        self._purge()

    def check_vector(self, vector: np.ndarray) -> None:
        self._check_vector(vector)

    def restore_from(self, source: Gallery) -> None:
        """Make this gallery's file ``source``'s, page for page (SQLite's online backup, into
        the open file: other connections see it as any change), and what it replaced gone
        from the WAL too. This connection's own writes do not move ``data_version``, so its
        template cache is dropped here."""
        self._templates = None
        source._db.backup(self._db)
        self._templates = None
        self._purge()

    def relaxed_sync(self) -> Gallery:
        """Make this connection's commits cheap (WAL ``synchronous=NORMAL``: no fsync per
        transaction), for a stream of small changes that can be fetched again (the fleet's).
        A power cut may roll back the last few, never half of one. Other connections, and
        enrollment, keep ``FULL``."""
        self._db.execute("PRAGMA synchronous = NORMAL")
        return self

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """A write transaction; this connection's own commits do not move
        ``PRAGMA data_version``, so the template cache is dropped here."""
        self._templates = None
        with write_transaction(self._db):
            self._same_model()
            yield
        self._templates = None

    def _same_model(self) -> None:
        """Refuse a gallery whose embeddings another process remade with another model while
        this one had it open (`gallery rebuild` beside the service): its distances to this
        model's embeddings mean nothing, and a face of this model written there would be
        compared with the other's."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'model_sha256'").fetchone()
        if row is None or row[0] != self.model.sha256:
            now = row[0][:12] if row else "none"
            raise ModelMismatchError(
                self.path,
                f"its embeddings were remade with another model ({now}) since it was opened with "
                f"{self.model.name} ({self.model.sha256[:12]}); restart with that model "
                "(models.encoder, --model), or rebuild the gallery with this one",
            )

    # --- reading ---------------------------------------------------------------

    @guarded
    def people(self) -> list[Person]:
        return self._people("", ())

    @guarded
    def person(self, name: str) -> Person:
        found = self._people("WHERE p.name = ?", (name,))
        if not found:
            raise FacegateError(f"{name!r} is not enrolled in {self.path}")
        return found[0]

    def _people(self, where: str, params: tuple[str, ...]) -> list[Person]:
        rows = self._db.execute(
            "SELECT p.name, p.display_name, p.created, p.metadata, count(e.id), count(e.image) "
            f"FROM people p LEFT JOIN embeddings e ON e.person_id = p.id {where} "
            "GROUP BY p.id ORDER BY p.name",
            params,
        ).fetchall()
        return [Person(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    @guarded
    def __contains__(self, name: object) -> bool:
        return self._db.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    @guarded
    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM people").fetchone()[0])

    @guarded
    def embeddings(self, name: str) -> np.ndarray:
        rows = self._db.execute(
            "SELECT e.vector FROM embeddings e JOIN people p ON p.id = e.person_id WHERE p.name = ? "
            "ORDER BY e.id",
            (name,),
        ).fetchall()
        return np.array([np.frombuffer(r[0], "<f4") for r in rows], np.float32).reshape(
            -1, self.model.embedding_size
        )

    @guarded
    def templates(self) -> Templates:
        """Per-person templates, cached until this or another process changes the file."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if self._templates is None or version != self._version:
            self._same_model()
            self._templates = self._load_templates()
            self._version = version
        return self._templates

    def _load_templates(self) -> Templates:
        rows = self._db.execute(
            "SELECT p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
            "ORDER BY p.name, e.id"
        ).fetchall()
        size = self.model.embedding_size
        if not rows:
            return Templates((), np.zeros((0, size), np.float32))
        names = [r[0] for r in rows]
        vectors = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(-1, size)
        _unique, start = np.unique(names, return_index=True)
        sums = np.add.reduceat(vectors.astype(np.float64), np.sort(start), axis=0)
        order = [names[i] for i in np.sort(start)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        negatives = self._db.execute(
            "SELECT p.name, n.vector FROM negatives n JOIN people p ON p.id = n.person_id ORDER BY n.id"
        ).fetchall()
        row = {name: i for i, name in enumerate(order)}
        return Templates(
            tuple(order),
            (sums / np.maximum(norms, 1e-12)).astype(np.float32),
            np.frombuffer(b"".join(r[1] for r in negatives), "<f4").reshape(-1, size).copy(),
            np.array([row[r[0]] for r in negatives], np.intp),
        )

    @guarded
    def negatives(self, name: str) -> list[tuple[int, str, str]]:
        """(id, source, created) of each correction recorded against ``name``, oldest first."""
        return self._db.execute(
            "SELECT n.id, n.source, n.created FROM negatives n JOIN people p ON p.id = n.person_id "
            "WHERE p.name = ? ORDER BY n.id",
            (name,),
        ).fetchall()

    @guarded
    def samples(self) -> list[tuple[str, int, str, bytes | None]]:
        """(name, embedding id, source, kept image or None) for every embedding."""
        return self._db.execute(
            "SELECT p.name, e.id, e.source, e.image FROM embeddings e JOIN people p ON p.id = e.person_id "
            "ORDER BY p.name, e.id"
        ).fetchall()

    # --- writing ------------------------------------------------------------

    @guarded
    def add(
        self,
        name: str,
        samples: Sequence[Sample],
        display_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        replace: bool = False,
        guard: Callable[[], None] | None = None,
    ) -> Person:
        """Enroll ``name`` with ``samples`` in one transaction (see the module doc). Samples
        of a photo the person is already enrolled from, or given twice, are left out:
        ``Person.embeddings`` says how many the person has. ``guard`` runs inside the
        transaction, before any write, and refuses by raising: what it checks (that the fleet
        does not hold the name) cannot change between its check and the write."""
        check_name(name)
        if display_name is not None:
            check_display_name(display_name)
        if not samples:
            raise FacegateError(f"nothing to enroll for {name!r}: no usable image")
        for s in samples:
            self._check_vector(s.vector)
        replaced = False
        with self._write():
            if guard is not None:
                guard()
            row = self._db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                person_id = self._db.execute(
                    "INSERT INTO people (name, display_name, created, metadata) VALUES (?, ?, ?, ?)",
                    (name, display_name or name, _now(), json.dumps(metadata or {})),
                ).lastrowid
            else:
                person_id = row[0]
                if replace:
                    self._db.execute("DELETE FROM embeddings WHERE person_id = ?", (person_id,))
                    replaced = True
                if display_name is not None or metadata is not None:
                    self._db.execute(
                        "UPDATE people SET display_name = coalesce(?, display_name), "
                        "metadata = coalesce(?, metadata) WHERE id = ?",
                        (display_name, None if metadata is None else json.dumps(metadata), person_id),
                    )
            samples = self._new_photos(person_id, samples)
            self._db.executemany(
                "INSERT INTO embeddings (person_id, vector, source, quality, created, image) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        person_id,
                        np.asarray(s.vector, "<f4").tobytes(),
                        s.source,
                        json.dumps(s.quality),
                        _now(),
                        s.image,
                    )
                    for s in samples
                ],
            )
        if replaced:
            self._purge()
        return self.person(name)

    def _new_photos(self, person_id: int | None, samples: Sequence[Sample]) -> list[Sample]:
        """``samples`` less those within ``SAME_PHOTO`` of one the person has, or of one before.
        A photo given again with its image (``--keep-images``) keeps it where none was kept.
        Distances are taken a block of samples at a time, as matrix products in float64 (a
        person imported with thousands of embeddings took seconds a thousand, one at a time)."""
        rows = self._db.execute("SELECT id, vector FROM embeddings WHERE person_id = ?", (person_id,))
        ids, vectors = [], []
        for row_id, blob in rows:
            ids.append(row_id)
            vectors.append(np.frombuffer(blob, "<f4"))
        vectors += [np.asarray(s.vector, np.float32) for s in samples]
        if not samples:
            return []
        every = np.stack(vectors).astype(np.float64)  # the person's, then these samples
        norms, old = np.einsum("ij,ij->i", every, every), len(ids)
        usable = np.ones(len(every), bool)  # the person's, and the samples kept so far
        new: list[Sample] = []
        for start in range(0, len(samples), 256):
            rows_at = slice(old + start, old + min(start + 256, len(samples)))
            squared = norms[rows_at, None] + norms[None, :] - 2 * every[rows_at] @ every.T
            for r, s in enumerate(samples[start : start + 256]):
                i = old + start + r
                near = np.flatnonzero(squared[r, :i] < SAME_PHOTO**2 + 1e-9)  # before it; slack for rounding
                near = near[np.linalg.norm(every[near] - every[i], axis=1) < SAME_PHOTO]  # exactly
                had = near[near < old]
                if had.size:  # a photo the person has
                    at = int(had[np.argmin(np.linalg.norm(every[had] - every[i], axis=1))])
                    if s.image is not None:
                        update = "UPDATE embeddings SET image = ? WHERE id = ? AND image IS NULL"
                        self._db.execute(update, (s.image, ids[at]))
                    usable[i] = False
                elif usable[near].any():  # one given before it in this call
                    usable[i] = False
                else:
                    new.append(s)
        return new

    def _check_vector(self, vector: np.ndarray) -> None:
        v = np.asarray(vector)
        if v.shape != (self.model.embedding_size,) or not np.all(np.isfinite(v)):
            raise FacegateError(
                f"an embedding must be {self.model.embedding_size} finite numbers, got shape {v.shape}"
            )

    @guarded
    def add_negative(self, name: str, vector: np.ndarray, source: str) -> int:
        """Record ``vector`` (a unit embedding) as a face that is not ``name``; returns how many
        ``name`` has now. At most ``MAX_NEGATIVES`` are kept: the oldest beyond it is deleted.
        Whether a correction is sensible is the caller's (``facegate.decide.check_correction``)."""
        self._check_vector(vector)
        with self._write():
            row = self._db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise FacegateError(f"{name!r} is not enrolled in {self.path}")
            self._db.execute(
                "INSERT INTO negatives (person_id, vector, source, created) VALUES (?, ?, ?, ?)",
                (row[0], np.asarray(vector, "<f4").tobytes(), source, _now()),
            )
            dropped = self._db.execute(
                "DELETE FROM negatives WHERE person_id = ? AND id NOT IN "
                "(SELECT id FROM negatives WHERE person_id = ? ORDER BY id DESC LIMIT ?)",
                (row[0], row[0], MAX_NEGATIVES),
            ).rowcount
            count = self._db.execute("SELECT count(*) FROM negatives WHERE person_id = ?", (row[0],))
            total = int(count.fetchone()[0])
        if dropped:
            self._purge()
        return total

    @guarded
    def clear_negatives(self, name: str) -> int:
        """Forget every correction recorded against ``name``; returns how many."""
        with self._write():
            removed = self._db.execute(
                "DELETE FROM negatives WHERE person_id = (SELECT id FROM people WHERE name = ?)", (name,)
            ).rowcount
        if removed:
            self._purge()
        return int(removed)

    @guarded
    def remove(self, name: str) -> None:
        """Delete ``name`` with every embedding and kept image, gone from the file itself. (Who
        may remove whom is the callers' policy: see ``facegate.fleet.store.owned_by_fleet``.)"""
        with self._write():
            if self._db.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount == 0:
                raise FacegateError(f"{name!r} is not enrolled in {self.path}")
        self._purge()

    @guarded
    def rename(self, old: str, new: str) -> None:
        check_name(new)
        with self._write():
            if new in self:
                raise FacegateError(f"{new!r} is already enrolled; remove it first or pick another name")
            if self._db.execute("UPDATE people SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
                raise FacegateError(f"{old!r} is not enrolled in {self.path}")

    @guarded
    def replace_vectors(self, vectors: dict[int, np.ndarray], model: ModelFingerprint) -> None:
        """Swap every embedding for one made by ``model`` (rebuild), in one transaction."""
        for v in vectors.values():
            if np.asarray(v).shape != (model.embedding_size,):
                raise FacegateError(f"rebuilt embedding has shape {np.asarray(v).shape}")
        with self._write():
            total = self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
            if total != len(vectors):
                raise FacegateError(f"rebuild covers {len(vectors)} of {total} embeddings; nothing changed")
            self._db.executemany(
                "UPDATE embeddings SET vector = ? WHERE id = ?",
                [(np.asarray(v, "<f4").tobytes(), k) for k, v in vectors.items()],
            )
            # Corrections are embeddings of the old model with no image to rebuild them from.
            dropped = self._db.execute("DELETE FROM negatives").rowcount
            if dropped:
                log.warning(
                    "%s: rebuild dropped %d correction(s) made with the old model", self.path, dropped
                )
            self._db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [
                    (model.sha256, "model_sha256"),
                    (model.name, "model_name"),
                    (str(model.embedding_size), "embedding_size"),
                ],
            )
        self.model = model


def _connect_read_only(path: pathlib.Path) -> sqlite3.Connection:
    """A gallery on a read-only file system. A WAL gallery needs its shared-memory file, which
    cannot be made there: with a WAL left beside it (a power cut), SQLite reads it in
    memory if it can; otherwise (a clean stop leaves no WAL) the file is read as it is."""
    uri = path.absolute().as_uri()
    wal = sqlite_files(path)[1]
    if wal.exists() and wal.stat().st_size > 0:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            log.error(
                "%s: its WAL cannot be read on a read-only file system; its latest changes are missed", path
            )
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _run_as(path: pathlib.Path) -> str:
    """Whom to run as, when ``path`` (or the nearest folder above it that exists) belongs to
    another user: the service's gallery is its user's alone (``sudo -u facegate ...``)."""
    for where in (path, *path.parents):
        try:
            uid = where.stat().st_uid
        except OSError:
            continue
        if uid == os.geteuid():
            return ""
        owner, me = _user(uid), _user(os.geteuid())
        run = "sudo facegate ..." if uid == 0 else f"sudo -u {owner} facegate ..."
        give = f"sudo chown {me}: {where}"
        return f" (it belongs to {owner}: run as that user, `{run}`, or give it to {me}: `{give}`)"
    return ""


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (the review store uses it too)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
