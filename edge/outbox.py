"""Events on disk until the broker has them: one private file per event.

Each event is written here before it is published and removed when the broker
acknowledges it (PUBACK); what is left after a crash or a power cut is sent
again at the next start. At most ``limit`` events are kept (the oldest are
dropped, counted and logged). A folder that cannot be written (a full disk, a
file system gone read-only) never stops an event: ``write`` returns None, the
event goes from memory only, and ``error`` says why until a write succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import time

from facegate.files import write_private

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, folder: str | pathlib.Path, limit: int) -> None:
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.limit = limit
        self.dropped = 0
        self.error: str | None = None  # set while the folder cannot be written

    def leftovers(self) -> list[pathlib.Path]:
        """What an earlier run left unacknowledged, oldest first (half-written files removed)."""
        try:
            for path in self.folder.glob("*.tmp"):  # half written when an earlier run was killed
                path.unlink(missing_ok=True)
            return sorted(self.folder.glob("*.json"))
        except OSError as exc:
            self._failed(exc)
            return []

    def write(self, event_id: str, payload: bytes) -> pathlib.Path | None:
        path = self.folder / f"{time.time_ns():020d}-{event_id}.json"
        try:
            write_private(path, payload)
            self._trim()
        except OSError as exc:
            self._failed(exc)
            return None
        if self.error is not None:
            log.info("outbox %s is writable again", self.folder)
            self.error = None
        return path

    def done(self, path: pathlib.Path) -> None:
        with contextlib.suppress(OSError):  # a read-only outbox keeps it; sent again at start
            path.unlink(missing_ok=True)

    @property
    def pending(self) -> int:
        try:
            return len(list(self.folder.glob("*.json")))
        except OSError:
            return 0

    def _failed(self, exc: OSError) -> None:
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
        if self.error != problem:
            log.error(
                "outbox %s cannot be written (%s); events are sent from memory only", self.folder, problem
            )
        self.error = problem

    def _trim(self) -> None:
        pending = sorted(self.folder.glob("*.json"))
        for path in pending[: max(0, len(pending) - self.limit)]:
            path.unlink(missing_ok=True)
            self.dropped += 1
            log.warning("outbox full (%d events): dropped the oldest, %s", self.limit, path.name)
