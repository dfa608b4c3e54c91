"""Frame sources behind one small interface: ``frames()`` yields ``Frame``s.

- ``picamera2``: the Pi camera (imported lazily; ``capture_array`` frames in
  the configured format, read by memory layout: XBGR8888 is R, G, B, X in
  memory, XRGB8888 is B, G, R, X, RGB888 is B, G, R, BGR888 is R, G, B);
- ``video``: a video file, or any URL FFmpeg opens (needs the ``video`` extra, PyAV);
  a stream, like a camera, that drops out is a ``CameraLostError`` (reopened), a file ends;
- ``folder``: the images of a folder, sorted by name;
- ``opencv``: a V4L2/USB index or an RTSP URL, where OpenCV is installed;
- ``ArraySource``: frames already in memory (tests, the demo).

A source's frames carry their layout; ``facegate.perception.to_rgb`` reads it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pathlib
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from facegate.config import Config
from facegate.errors import FacegateError, InputError, installed, not_importable
from facegate.images import IMAGE_SUFFIXES, load_rgb

log = logging.getLogger(__name__)

# picamera2 format -> memory layout of the array it returns
PICAMERA2_LAYOUTS = {"XBGR8888": "RGBX", "XRGB8888": "BGRX", "RGB888": "BGR", "BGR888": "RGB"}


@dataclasses.dataclass(frozen=True)
class Frame:
    image: np.ndarray  # HxWxC uint8 (or HxW grey)
    layout: str  # "RGB", "BGR", "RGBX", "BGRX" (ignored for grey)
    index: int
    wall: float  # time.time() when the frame was taken (or read)


_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/'\"]*@")  # to the last @ of the host part


def without_login(text: str) -> str:
    """``text`` with the login of every URL in it hidden: ``rtsp://admin:pw@cam/1`` becomes
    ``rtsp://***@cam/1``. What a camera error says goes to the log, to systemd's status and,
    retained, to the broker (``state.camera``), and FFmpeg's errors quote the URL whole."""
    return _USERINFO.sub(r"\1***@", text)


class CameraLostError(Exception):
    """A live source (a stream, a camera) cannot be reached now or stopped giving frames. Not a
    ``FacegateError``: waiting may mend it, so the daemon reports it and opens the source again
    with backoff, where a configuration problem would end it."""


class FrameSource(Protocol):
    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


OS_PACKAGES = pathlib.Path("/usr/lib/python3/dist-packages")  # where apt puts python3-picamera2


def picamera2_missing(exc: Exception) -> tuple[str, str]:
    """Why picamera2 did not import, and what to do: it is the OS's package, so a venv made
    without ``--system-site-packages`` cannot see it even once installed (the usual trap), and
    an installed one can fail on a dependency: a numpy 2 that pip put in the venv shadows the
    OS's, against which picamera2's ``simplejpeg`` was built ("numpy.dtype size changed", a
    ValueError, raspberrypi/picamera2 #1088)."""
    if installed("picamera2"):  # it is there; something it needs is not, or does not match
        return (
            f"picamera2 {not_importable(exc, 'picamera2')}",
            "in a venv, hold numpy at the OS's version (`pip install numpy==` the version "
            "`/usr/bin/python3 -c 'import numpy; print(numpy.__version__)'` prints), as "
            "systemd/install.sh does; else sudo apt install --reinstall python3-picamera2",
        )
    venv_cfg = pathlib.Path(sys.prefix) / "pyvenv.cfg"
    sealed = (
        sys.prefix != sys.base_prefix
        and venv_cfg.is_file()
        and "include-system-site-packages = false" in venv_cfg.read_text(errors="replace").lower()
    )
    if sealed:
        where = " (the OS has it)" if (OS_PACKAGES / "picamera2").is_dir() else ""
        return (
            f"picamera2 is not visible to this Python: {sys.prefix} is a venv made without "
            f"--system-site-packages{where}",
            f"sudo apt install python3-picamera2; make the venv again with `python3 -m venv "
            f"--system-site-packages {sys.prefix}`",
        )
    return "picamera2 is not installed", "on Raspberry Pi OS: sudo apt install python3-picamera2"


class Picamera2Source:
    """The Pi camera. ``controls``: libcamera controls (``camera.controls``) set as it starts,
    each checked first against the ones this camera advertises."""

    def __init__(
        self, width: int, height: int, fmt: str = "XBGR8888", controls: dict[str, Any] | None = None
    ) -> None:
        try:
            picamera2 = importlib.import_module("picamera2")
        except Exception as exc:  # ImportError, or a compiled part that does not match (ValueError)
            what, fix = picamera2_missing(exc)
            raise FacegateError(f"camera.source is picamera2 but {what}: {fix}") from None
        if fmt not in PICAMERA2_LAYOUTS:
            raise FacegateError(
                f"unsupported picamera2 format {fmt!r}; use one of {', '.join(PICAMERA2_LAYOUTS)}"
            )
        self.layout = PICAMERA2_LAYOUTS[fmt]
        self.camera = picamera2.Picamera2()
        try:
            wanted = self._controls(controls or {})
            config = self.camera.create_preview_configuration(
                main={"size": (width, height), "format": fmt}, controls=wanted
            )
            self.camera.configure(config)
            self.camera.start()
        except BaseException:
            self.camera.close()  # a camera left open is busy for the next try
            raise

    def _controls(self, controls: dict[str, Any]) -> dict[str, Any]:
        advertised = self.camera.camera_controls
        unknown = sorted(set(controls) - set(advertised))
        if unknown:
            raise FacegateError(
                f"camera.controls: this camera has no {', '.join(unknown)} "
                f"(it has: {', '.join(sorted(advertised))})"
            )
        for name, value in controls.items():
            low, high = advertised[name][:2]
            numbers = value if isinstance(value, list) else [value]
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high:
                outside = [x for x in numbers if not low <= x <= high]
                if outside:
                    raise FacegateError(
                        f"camera.controls.{name}: {outside[0]!r} is outside this camera's range "
                        f"{low} to {high}"
                    )
        return {name: tuple(v) if isinstance(v, list) else v for name, v in controls.items()}

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            image = self.camera.capture_array("main")
            yield Frame(image, self.layout, index, time.time())
            index += 1

    def close(self) -> None:
        self.camera.stop()
        self.camera.close()


class VideoSource:
    """A video file, or a stream URL (``rtsp://...``, anything FFmpeg opens), decoded by PyAV.
    A file ends (or loops); a stream that cannot be opened, stalls for ``STREAM_TIMEOUT_S`` or
    ends is a ``CameraLostError``: an IP camera rebooting, or not up yet after a power cut."""

    STREAM_TIMEOUT_S = 10.0

    def __init__(self, path: str, loop: bool = False) -> None:
        try:
            self._av = importlib.import_module("av")
        except Exception as exc:
            raise FacegateError(
                f"camera.source video needs PyAV, which {not_importable(exc, 'av')}: "
                "pip install 'facegate[video]'"
            ) from None
        self.path, self.loop = path, loop
        self.stream = "://" in path
        self._container: Any = None
        if not self.stream and not pathlib.Path(path).is_file():  # a file: fail at start, not later
            raise InputError(f"{path}: no such video file (camera.path)")

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            try:
                timeout = {"timeout": self.STREAM_TIMEOUT_S} if self.stream else {}
                self._container = self._av.open(self.path, **timeout)
            except (OSError, self._av.FFmpegError) as exc:
                if self.stream:
                    raise CameraLostError(
                        without_login(f"{self.path}: cannot open the stream ({exc})")
                    ) from None
                raise InputError(f"{self.path}: cannot open video ({exc})") from None
            with self._container:
                try:
                    for decoded in self._container.decode(video=0):
                        yield Frame(decoded.to_ndarray(format="rgb24"), "RGB", index, time.time())
                        index += 1
                except self._av.FFmpegError as exc:
                    if not self.stream:
                        raise
                    raise CameraLostError(
                        without_login(f"{self.path}: the stream stalled or broke ({exc})")
                    ) from None
            if self.loop:
                continue
            if self.stream:
                raise CameraLostError(without_login(f"{self.path}: the stream ended"))
            return

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


class FolderSource:
    """The images of a folder as frames, in name order. One that cannot be read (damaged,
    half written) is skipped and logged once; a folder none of whose images can be read is an
    error, not a loop that yields nothing."""

    def __init__(self, path: str, loop: bool = False) -> None:
        self.folder = pathlib.Path(path)
        if not self.folder.is_dir():
            raise FacegateError(f"camera.path {self.folder}: not a folder")
        self.files = sorted(f for f in self.folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FacegateError(f"camera.path {self.folder}: no images")
        self.loop = loop
        self.skipped: set[pathlib.Path] = set()

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            read = False
            for f in self.files:
                try:
                    image = load_rgb(f, reduce=False)
                except InputError as exc:
                    if f not in self.skipped:
                        log.warning("camera.path: skipped %s", exc)
                        self.skipped.add(f)
                    continue
                read = True
                yield Frame(image, "RGB", index, time.time())
                index += 1
            if not read:
                raise FacegateError(f"camera.path {self.folder}: none of its images can be read")
            if not self.loop:
                return

    def close(self) -> None:
        pass


class OpenCVSource:
    def __init__(self, path: str | int, width: int, height: int) -> None:
        try:
            self._cv2 = importlib.import_module("cv2")
        except Exception as exc:
            raise FacegateError(
                f"camera.source opencv needs OpenCV, which {not_importable(exc, 'cv2')}: "
                "pip install opencv-python-headless (without a display: not opencv-python)"
            ) from None
        self.path = path
        target = int(path) if isinstance(path, str) and path.isdigit() else path
        self.capture = self._cv2.VideoCapture(target)
        if not self.capture.isOpened():
            raise FacegateError(without_login(f"camera.path {path!r}: OpenCV cannot open it"))
        self.capture.set(self._cv2.CAP_PROP_FRAME_WIDTH, width)
        self.capture.set(self._cv2.CAP_PROP_FRAME_HEIGHT, height)

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = self.capture.read()
            if not ok:  # a camera unplugged, a stream dropped: report it and open it again
                raise CameraLostError(without_login(f"camera.path {self.path!r}: OpenCV read no frame"))
            yield Frame(image, "BGR", index, time.time())
            index += 1

    def close(self) -> None:
        self.capture.release()


class RotatedSource:
    """Another source's frames turned clockwise by ``degrees`` (``camera.rotate``: 90, 180 or
    270), for a camera mounted on its side or upside down. Each frame is copied once, whole
    and contiguous in its own layout, so picamera2's XBGR8888 frame is still detected from
    that copy without another. Boxes and landmarks in events are in the turned frame."""

    def __init__(self, source: FrameSource, degrees: int) -> None:
        if degrees not in (90, 180, 270):
            raise FacegateError(f"camera.rotate {degrees}: use 0, 90, 180 or 270")
        self.source, self.turns = source, degrees // 90

    def frames(self) -> Iterator[Frame]:
        for frame in self.source.frames():
            turned = np.ascontiguousarray(np.rot90(frame.image, -self.turns))  # k < 0: clockwise
            yield dataclasses.replace(frame, image=turned)

    def close(self) -> None:
        self.source.close()


class ArraySource:
    """Frames from memory, in order (``loop`` repeats them)."""

    def __init__(self, images: Iterable[np.ndarray], layout: str = "RGB", loop: bool = False) -> None:
        self.images = list(images)
        self.layout, self.loop = layout, loop

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            for image in self.images:
                yield Frame(image, self.layout, index, time.time())
                index += 1
            if not self.loop:
                return

    def close(self) -> None:
        pass


def open_source(config: Config) -> FrameSource:
    cam = config.camera
    source = _open(config)
    return RotatedSource(source, cam.rotate) if cam.rotate else source


def _open(config: Config) -> FrameSource:
    cam = config.camera
    if cam.source == "picamera2":
        return Picamera2Source(cam.width, cam.height, cam.format, cam.controls)
    if cam.source == "video":
        return VideoSource(str(cam.path), cam.loop)
    if cam.source == "folder":
        return FolderSource(str(cam.path), cam.loop)
    return OpenCVSource(cam.path if cam.path is not None else 0, cam.width, cam.height)
