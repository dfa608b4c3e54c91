"""The daemon's gallery while it runs: keeps deciding when the file goes bad under it.

A gallery file can change under a running daemon: enrolled into by the CLI
(fine: SQLite sees it), restored from a backup by ``cp`` over it, replaced by
a rename, or damaged. ``LiveGallery`` keeps the last good templates, so the
camera loop goes on deciding with what was committed, and says what is wrong
in ``problem`` (published in ``state``, logged once per change). It notices a
file changed on disk (another inode, size or time) and checks it with a
fresh connection, switching to it only if it is a facegate gallery for the
same model; while it is not, changes (enroll, remove) are refused: nothing
is ever written into a file that is not a gallery. A gallery whose embeddings
another process remade with another model (``gallery rebuild``) is one that is
not for this model: ``Gallery`` checks the model again whenever the file changed.
"""

from __future__ import annotations

import logging
import os
import pathlib
import time

import numpy as np

from facegate.errors import FacegateError
from facegate.gallery import Gallery, ModelFingerprint, Templates

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0


def _signature(path: pathlib.Path) -> tuple[int, int, int, int] | None:
    """What changes when the file is replaced or rewritten (SQLite in WAL mode writes the main
    file only at checkpoints, so this moves rarely in normal use)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class LiveGallery:
    def __init__(self, path: str | os.PathLike[str], model: ModelFingerprint) -> None:
        self.path = pathlib.Path(path)
        self.model = model
        self.gallery = Gallery.open(self.path, model, create=True)
        self._signature = _signature(self.path)
        self._good = Templates((), np.zeros((0, model.embedding_size), np.float32))
        self._checked_at = time.monotonic()
        self.problem: str | None = None

    def templates(self) -> Templates:
        """The current templates, or the last good ones while the file cannot be used."""
        now = time.monotonic()
        if now - self._checked_at >= CHECK_EVERY_S:
            self._checked_at = now
            self._follow()
        if self.problem is None:
            try:
                self._good = self.gallery.templates()
            except FacegateError as exc:
                self._set_problem(f"cannot read the gallery ({exc}); deciding with the last good copy")
        return self._good

    def _follow(self) -> None:
        """When the file changed on disk (or is still unusable), check it with a fresh
        connection, and switch to that one if it is a facegate gallery for this model."""
        signature = _signature(self.path)
        if signature == self._signature and self.problem is None:
            return
        if signature is None:
            self._set_problem(f"{self.path} is gone; deciding with the last good copy")
            return
        try:
            fresh = Gallery.open(self.path, self.model, create=False)
        except FacegateError as exc:
            self._set_problem(f"{exc}; deciding with the last good copy")
            return
        try:
            fresh.templates()
        except FacegateError as exc:
            fresh.close()
            self._set_problem(f"{exc}; deciding with the last good copy")
            return
        old, self.gallery, self._signature = self.gallery, fresh, signature
        old.close()
        self._set_problem(None)

    def _set_problem(self, problem: str | None) -> None:
        if problem == self.problem:
            return
        if problem is None:
            log.warning("gallery %s is usable again (%d people)", self.path, self.count())
        else:
            log.error("gallery: %s", problem)
        self.problem = problem

    def writable(self) -> None:
        """Refuse a change while the file is not a usable gallery: nothing is ever written
        into a file that is not one."""
        if self.problem is not None:
            raise FacegateError(f"the gallery cannot be changed now: {self.problem}")

    def count(self) -> int:
        try:
            return len(self.gallery)
        except FacegateError:
            return len(self._good.names)

    def close(self) -> None:
        self.gallery.close()
