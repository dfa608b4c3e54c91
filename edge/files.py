"""Small file helpers shared by the gallery, the outbox, the command nonces and the fleet, and
the daemon's one-per-device lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pathlib
import stat
from typing import Any

from facegate.errors import FacegateError
from facegate.wire import dumps

log = logging.getLogger(__name__)


def write_private(path: pathlib.Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path``, readable by its owner only (0600), atomically: a crash
    leaves the old file or the new one, never half of one (a stray ``NAME.tmp`` at most).
    ``durable``, for state that must survive power loss: the file is fsynced before the rename
    and its folder after it (until then a power cut can undo the rename, and the old file
    comes back)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if durable:
            replace_durably(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half file behind
        raise


def replace_durably(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """``tmp`` renamed over ``path`` so that a power cut keeps it: the file fsynced before the
    rename, its folder after it (until then a power cut can undo the rename)."""
    _fsync(tmp, os.O_RDONLY)
    os.replace(tmp, path)
    _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: pathlib.Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sqlite_files(path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """An SQLite file and the WAL and shared-memory files SQLite keeps beside it."""
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def create_private(path: pathlib.Path) -> None:
    """A new empty file, 0600, in a folder made 0700 if need be, given to the folder's owner
    when root makes it (``owned_like_folder``); one already there is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        owned_like_folder(path)


def write_private_json(path: pathlib.Path, doc: Any, durable: bool = False, **dump: Any) -> None:
    """``doc`` as strict JSON (``facegate.wire.dumps``), written as ``write_private`` does."""
    write_private(path, dumps(doc, **dump).encode(), durable)


def make_private(path: pathlib.Path) -> None:
    """Make an existing SQLite file (and its WAL/SHM) readable by its owner only, saying so.
    Only files: a folder (a mistyped path) is left as it is."""
    for p in sqlite_files(path):
        with contextlib.suppress(FileNotFoundError):
            st = p.stat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISREG(st.st_mode) and mode & 0o077:
                log.warning("%s was readable by others (mode %o); making it private (0600)", p, mode)
                try:
                    os.chmod(p, 0o600)
                except PermissionError:  # another user's: opening it says whose, and what to do
                    log.error("%s is not this user's to make private; its owner must (chmod 600)", p)


def owned_like_folder(path: pathlib.Path) -> None:
    """A file root just made in another user's folder goes to that user: `sudo facegate enroll`
    into the service's state folder must not leave a gallery the service cannot open. (SQLite
    does the same for the WAL it makes beside a file.)"""
    if os.geteuid() == 0:
        folder = path.parent.stat()
        if folder.st_uid != 0:
            os.chown(path, folder.st_uid, folder.st_gid)


def lock_holders(path: pathlib.Path) -> list[int]:
    """The other processes holding a lock on ``path`` (for an SQLite WAL file's ``-shm``: each
    process with a connection open on it), from ``/proc/locks``: nothing here opens ``path``,
    which would drop this process's own locks on it. Empty where the file or ``/proc/locks``
    is missing (not Linux); -1 or 0 for a holder the kernel does not name (an OFD lock, a
    process in another pid namespace)."""
    try:
        st = os.stat(path)
        text = pathlib.Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":  # "->": waiting for the lock, not holding it
            continue
        pid, inode = fields[4], fields[5]
        if inode == where and pid.lstrip("-").isdigit() and int(pid) != os.getpid():
            holders.add(int(pid))
    return sorted(holders)


def read_only_fs(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is on a file system mounted read-only (an SD card the kernel remounted
    after errors): its gallery can still be read, and a door still decide."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_HELD: dict[str, int] = {}  # the locks this process holds: path -> descriptor


def hold_lock(path: pathlib.Path, what: str) -> None:
    """An exclusive lock on ``path`` (created 0600; its folder must exist), held until
    ``release_lock`` or the end of the process, however it ends; the file names the holder's
    pid. FacegateError, naming that pid, when another process holds it. The process that holds
    it may take it again (a test's second daemon). The descriptor is read-only: an open file
    being written would stop the file system from being made read-only under it."""
    key = os.path.realpath(path)
    if key in _HELD:
        return
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 16).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise FacegateError(f"another process (pid {holder}) is already running with {what}") from None
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = fd
    path.write_text(f"{os.getpid()}\n")


def release_lock(path: pathlib.Path) -> None:
    fd = _HELD.pop(os.path.realpath(path), None)
    if fd is not None:
        os.close(fd)
