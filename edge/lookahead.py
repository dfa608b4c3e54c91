"""The next camera frame taken, and detected, in a thread of its own while the loop
finishes this one (``camera.overlap``).

While a new face is being decided the daemon takes the camera's frames as they come
(``decision.decide_at_camera_rate``). Where a frame takes longer to go through the
pipeline than the camera's interval (a Raspberry Pi), the wait for the next frame and
its detection then add to every vote. Asked ahead, they overlap the landmarks,
alignment and encoding of the frame before, so the votes that decide a face come
sooner. Detection and the camera read release the GIL (TFLite's ``invoke``, Pillow's
resize, picamera2's wait), so the two threads run on two cores.

Only the source's own iteration and the detector run in this thread; everything that
touches the gallery, the tracker or MQTT stays on the loop's. A source that fails
hands its exception over, and it is raised where the loop takes the frame, as if the
loop had read the camera itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from facegate.detect import Detection
from facegate.sources import Frame


@dataclasses.dataclass(frozen=True)
class Taken:
    """A frame from the source; ``detections`` when it was detected ahead, else None
    (the loop detects it, or its motion gate skips it)."""

    frame: Frame
    detections: list[Detection] | None = None


_END = object()  # the source ended


def _drain(q: queue.Queue[Any]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


class Lookahead:
    """Iterates ``frames`` in a worker thread, one frame at a time, when asked.

    ``ask(detect=True)`` starts taking the next frame now (and running ``detect`` on it);
    ``take()`` returns it, asking first if nothing was asked (then the frame is taken
    when the loop wants it, as without this class). At most one frame is ever ahead,
    so a frame is never older than one pass of the loop."""

    def __init__(self, frames: Iterator[Frame], detect: Callable[[Frame], list[Detection]]) -> None:
        self._frames = frames
        self._detect = detect
        self._wanted: queue.Queue[bool | None] = queue.Queue(maxsize=1)
        self._ready: queue.Queue[Taken | Exception | object] = queue.Queue(maxsize=1)
        self._asked = False
        self._done = False
        self._thread = threading.Thread(target=self._work, name="facegate-lookahead", daemon=True)
        self._thread.start()

    def ask(self, detect: bool = True) -> None:
        """Start taking the next frame (and detecting it) now, unless that is already asked."""
        if not self._asked and not self._done:
            self._asked = True
            self._wanted.put(detect)

    def take(self) -> Taken | None:
        """The next frame; None once the source has ended. The source's exception, if it
        failed, is raised here."""
        if self._done:
            return None
        self.ask(detect=False)
        while True:
            try:
                item = self._ready.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._ready.empty():  # it ended without a word
                    self._done = True
                    raise RuntimeError("the lookahead thread ended") from None
        self._asked = False
        if item is _END:
            self._done = True
            return None
        if isinstance(item, Exception):
            self._done = True
            raise item
        assert isinstance(item, Taken)
        return item

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (after the frame it may be reading) and wait for it, at most
        ``timeout`` seconds. The source itself is the caller's to close."""
        self._done = True
        _drain(self._wanted)  # make room, then tell it to stop
        self._wanted.put(None)
        _drain(self._ready)  # a frame it is handing over would block it
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            detect = self._wanted.get()
            if detect is None:
                return
            item: Taken | Exception | object
            try:
                item = Taken(next(self._frames))
            except StopIteration:
                item = _END
            except Exception as exc:  # the camera failed: the loop reports it and reopens
                item = exc
            if detect and isinstance(item, Taken):
                # a frame the detector refuses is handed over undetected: the loop detects it
                # again and meets the error itself, as it would without this thread
                with contextlib.suppress(Exception):
                    item = Taken(item.frame, self._detect(item.frame))
            self._ready.put(item)
            if item is _END or isinstance(item, Exception):
                return
