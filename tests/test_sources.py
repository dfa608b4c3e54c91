"""Frame sources: each yields frames in its own memory layout, errors name the problem."""

from __future__ import annotations

import io
import pathlib
import socket
import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facegate.config import ConfigError, validate
from facegate.errors import FacegateError, InputError
from facegate.perception import to_rgb
from facegate.sources import (
    ArraySource,
    CameraLostError,
    FolderSource,
    OpenCVSource,
    Picamera2Source,
    RotatedSource,
    VideoSource,
    open_source,
)


def _gradient(i: int) -> np.ndarray:
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[:, :, 0] = np.arange(128, dtype=np.uint8)[None, :] * 2
    frame[:, :, 1] = i * 20
    frame[:, :, 2] = 200
    return frame


def _clip(tmp_path: pathlib.Path) -> pathlib.Path:
    """Six 128x96 frames of ``_gradient`` as an MPEG-4 file."""
    av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(6):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_gradient(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_video_file(tmp_path: pathlib.Path) -> None:
    path = _clip(tmp_path)
    frames = list(VideoSource(str(path)).frames())
    assert len(frames) == 6 and frames[0].layout == "RGB" and frames[0].image.shape == (96, 128, 3)
    assert abs(int(frames[3].image[:, :, 1].mean()) - 60) < 8  # the decoded frames are the encoded ones
    looped = VideoSource(str(path), loop=True).frames()
    assert len([next(looped) for _ in range(14)]) == 14


def test_video_errors(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match=r"bad\.mp4: cannot open video"):
        next(VideoSource(str(bad)).frames())


def test_a_stream_that_ends_or_cannot_be_opened_is_a_lost_camera(tmp_path: pathlib.Path) -> None:
    """A URL is a live source (an IP camera): unreachable, or ended, it is a ``CameraLostError`` that
    the daemon reports and reopens with backoff, not a configuration error that ends it (an
    IP camera still booting after a power cut) nor a clean end (a camera rebooting)."""
    url = _clip(tmp_path).as_uri()  # a URL FFmpeg reads without a network: file:///...
    frames = VideoSource(url).frames()
    assert len([next(frames) for _ in range(6)]) == 6
    with pytest.raises(CameraLostError, match="the stream ended"):
        next(frames)
    assert not issubclass(CameraLostError, FacegateError)  # what the daemon retries
    with pytest.raises(CameraLostError, match="cannot open the stream"):
        next(VideoSource((tmp_path / "camera-not-up-yet.mp4").as_uri()).frames())
    looped = VideoSource(url, loop=True).frames()  # a looped URL starts again, as a file does
    assert len([next(looped) for _ in range(8)]) == 8


def test_a_stream_that_stalls_is_a_lost_camera(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An IP camera that hangs, before its first frame or in the middle of its stream: without a
    timeout FFmpeg would wait for ever (and systemd's watchdog end the daemon); with one it is a
    lost camera, reopened."""
    av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    monkeypatch.setattr(VideoSource, "STREAM_TIMEOUT_S", 0.5)
    ts = io.BytesIO()
    with av.open(ts, "w", format="mpegts") as container:  # a format sent as a stream
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(40):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_gradient(i % 6), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for sent, why in ((0, "cannot open the stream"), (len(ts.getvalue()) // 2, "the stream stalled")):
        server = socket.create_server(("127.0.0.1", 0))
        hold = threading.Event()

        def camera(server: socket.socket = server, sent: int = sent, hold: threading.Event = hold) -> None:
            conn, _ = server.accept()
            conn.sendall(ts.getvalue()[:sent])
            hold.wait(30)  # then nothing more, connection open
            conn.close()

        threading.Thread(target=camera, daemon=True).start()
        got, started = 0, time.monotonic()
        with pytest.raises(CameraLostError, match=why):
            for _ in VideoSource(f"tcp://127.0.0.1:{server.getsockname()[1]}").frames():
                got += 1
        assert time.monotonic() - started < 10 and (got > 0) is (sent > 0)
        hold.set()
        server.close()


def test_an_opencv_camera_that_stops_giving_frames_is_a_lost_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    """A USB camera unplugged, an RTSP stream dropped: ``VideoCapture.read`` says False. Before,
    that ended the daemon as if a file had ended."""

    class VideoCapture:  # OpenCV's camera, as far as OpenCVSource uses it
        def __init__(self, target: Any) -> None:
            self.target, self.left, self.settings = target, 3, {}

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return True

        def set(self, prop: int, value: int) -> None:
            self.settings[prop] = value

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.left -= 1
            return (True, np.zeros((4, 6, 3), np.uint8)) if self.left >= 0 else (False, None)

        def release(self) -> None:
            pass

    cv2 = types.SimpleNamespace(VideoCapture=VideoCapture, CAP_PROP_FRAME_WIDTH=3, CAP_PROP_FRAME_HEIGHT=4)
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    source = OpenCVSource("0", 640, 480)
    assert source.capture.target == 0 and source.capture.settings == {3: 640, 4: 480}
    frames = source.frames()
    assert [next(frames).layout for _ in range(3)] == ["BGR"] * 3
    with pytest.raises(CameraLostError, match="OpenCV read no frame"):
        next(frames)


def test_folder_source_sorted_and_looped(tmp_path: pathlib.Path) -> None:
    for i in (2, 0, 1):
        Image.fromarray(_gradient(i)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(FolderSource(str(tmp_path)).frames())
    assert [int(f.image[0, 0, 1]) for f in frames] == [0, 20, 40]
    looped = FolderSource(str(tmp_path), loop=True).frames()
    assert [next(looped).index for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(FacegateError, match="no images"):
        FolderSource(str(_empty(tmp_path)))


def test_folder_source_skips_what_it_cannot_read(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged or half-written image is skipped and logged once, not the end of the daemon
    (before, its InputError ended ``facegate run`` as a configuration error); a folder with
    nothing readable is an error, not a loop that yields nothing."""
    Image.fromarray(_gradient(0)).save(tmp_path / "0.png")
    (tmp_path / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 half written")
    Image.fromarray(_gradient(2)).save(tmp_path / "2.png")
    looped = FolderSource(str(tmp_path), loop=True).frames()
    with caplog.at_level("WARNING", logger="facegate.sources"):
        frames = [next(looped) for _ in range(6)]
    assert [int(f.image[0, 0, 1]) for f in frames] == [0, 40] * 3
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "1.jpg: cannot decode image" in skipped[0]  # once, not every pass
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FacegateError, match="none of its images can be read"):
        next(FolderSource(str(bad), loop=True).frames())


def test_missing_picamera2_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails
    with pytest.raises(FacegateError, match="python3-picamera2"):
        Picamera2Source(640, 480)


def test_fake_picamera2_layouts(fake_picamera2: Any) -> None:
    picamera2 = fake_picamera2

    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    picamera2.Picamera2.script = [rgb]
    for fmt in ("XBGR8888", "XRGB8888", "RGB888", "BGR888"):
        source = Picamera2Source(64, 48, fmt)
        frame = next(source.frames())
        source.close()
        assert np.array_equal(to_rgb(frame.image, frame.layout), rgb), fmt
    with pytest.raises(FacegateError, match="unsupported picamera2 format"):
        Picamera2Source(64, 48, "YUV420")


def test_camera_controls_reach_the_camera_checked(fake_picamera2: Any) -> None:
    """``camera.controls`` (autofocus on a Camera Module 3, exposure for a backlit door) are
    handed to picamera2 as it configures; a name the camera does not advertise, or a value
    outside its range, is refused by name and the camera is closed for the next try."""
    picamera2 = fake_picamera2
    picamera2.Picamera2.script = [np.zeros((48, 64, 3), np.uint8)]
    controls = {"AfMode": 2, "ExposureValue": 1, "FrameDurationLimits": [33333, 100000]}
    raw = {"camera": {"width": 64, "height": 48, "controls": controls}}
    config = validate(raw)
    source = open_source(config)
    camera = picamera2.Picamera2.instances[-1]
    controls = camera.config["controls"]
    assert controls["AfMode"] == 2 and controls["ExposureValue"] == 1.0
    assert controls["FrameDurationLimits"] == (33333, 100000)  # libcamera's arrays as tuples
    assert next(source.frames()).image.shape == (48, 64, 4)
    source.close()
    for bad, message in (
        ({"AfMode": 2, "Focus": 1}, r"camera.controls: this camera has no Focus \(it has: AeEnable, "),
        ({"ExposureValue": 9.5}, r"controls.ExposureValue: 9.5 is outside this camera's range -8.0 to 8.0"),
        ({"FrameDurationLimits": [1000, 33333]}, r"FrameDurationLimits: 1000 is outside"),
    ):
        with pytest.raises(FacegateError, match=message):
            Picamera2Source(64, 48, controls=bad)
        assert picamera2.Picamera2.instances[-1].closed


def test_camera_controls_are_checked_in_the_config() -> None:
    for controls in (
        {"afMode": 2},  # libcamera's names start with a capital
        {"AfMode": "continuous"},
        {"AfMode": None},
        {"ExposureValue": float("nan")},
        {"FrameDurationLimits": []},
        {"FrameDurationLimits": [1, True]},
        {"ScalerCrop": [[0, 0], [1, 1]]},
        {f"Control{i}": 1 for i in range(33)},
        ["AfMode"],
    ):
        with pytest.raises(ConfigError, match=r"camera\.controls"):
            validate({"camera": {"controls": controls}})
    with pytest.raises(ConfigError, match="only the picamera2 source takes camera controls"):
        validate({"camera": {"source": "folder", "path": "x", "controls": {"AfMode": 2}}})
    assert validate({}).camera.controls == {}


def test_open_source_by_config(tmp_path: pathlib.Path) -> None:
    Image.fromarray(_gradient(0)).save(tmp_path / "a.png")
    source = open_source(validate({"camera": {"source": "folder", "path": str(tmp_path)}}))
    assert isinstance(source, FolderSource)


def test_a_camera_mounted_on_its_side_is_turned_upright(tmp_path: pathlib.Path) -> None:
    """``camera.rotate`` turns each frame clockwise, in its own layout and band count: a frame
    from a camera turned a quarter counterclockwise comes out as the upright scene, pixel for
    pixel, and picamera2's 4-band frame stays 4-band and contiguous (mapped without a copy)."""
    upright = np.arange(4 * 6 * 4, dtype=np.uint8).reshape(4, 6, 4)  # RGBX, 4 rows, 6 columns
    for degrees, mounted in (
        (90, np.rot90(upright, 1)),
        (180, upright[::-1, ::-1]),
        (270, np.rot90(upright, 3)),
    ):
        (frame,) = RotatedSource(ArraySource([mounted], "RGBX"), degrees).frames()
        assert np.array_equal(frame.image, upright) and frame.image.flags.c_contiguous, degrees
        assert frame.layout == "RGBX" and frame.index == 0
    Image.fromarray(np.rot90(_gradient(0), 1).copy()).save(tmp_path / "a.png")
    source = open_source(validate({"camera": {"source": "folder", "path": str(tmp_path), "rotate": 90}}))
    assert isinstance(source, RotatedSource)
    assert np.array_equal(next(source.frames()).image, _gradient(0))
    with pytest.raises(ConfigError, match="0, 90, 180 or 270"):
        validate({"camera": {"rotate": 45}})


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(InputError, match="unknown frame layout"):
        to_rgb(np.zeros((4, 4, 3), np.uint8), "YUV")


def _empty(tmp_path: pathlib.Path) -> pathlib.Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty
