"""The daemon's lookahead (``camera.overlap``): the next frame taken, and detected, in a
second thread while the loop finishes this one. The detector is the real BlazeFace."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from facegate.config import ConfigError, validate
from facegate.daemon import overlap_on
from facegate.detect import Detection
from facegate.lookahead import Lookahead
from facegate.perception import Perception
from facegate.sources import Frame


class Camera:
    """A source that records when each frame is read, by which thread, and can be held."""

    def __init__(self, images: list[np.ndarray], fail_at: int | None = None) -> None:
        self.images, self.fail_at = images, fail_at
        self.read_at: list[float] = []
        self.threads: set[str] = set()
        self.hold = threading.Event()
        self.hold.set()

    def frames(self) -> Iterator[Frame]:
        for i, image in enumerate(self.images):
            self.hold.wait()
            if i == self.fail_at:
                raise OSError("camera unplugged")
            self.read_at.append(time.monotonic())
            self.threads.add(threading.current_thread().name)
            yield Frame(image, "RGB", i, time.time())


@pytest.fixture(scope="module")
def perception() -> Perception:
    return Perception()


def _detect(perception: Perception) -> Callable[[Frame], list[Detection]]:
    return lambda f: perception.detect_frame(f.image, f.layout)


def test_asked_frames_are_detected_ahead_in_order(
    perception: Perception, frames: dict[str, np.ndarray]
) -> None:
    images = [frames["obama"], frames["blank"], frames["obama"]]
    camera = Camera(images)
    ahead = Lookahead(camera.frames(), _detect(perception))
    try:
        ahead.ask()
        first = ahead.take()
        assert first is not None and first.frame.index == 0
        assert first.detections is not None and len(first.detections) == 1
        # the same detections as the loop's own detector on the same frame
        own = perception.detect_frame(images[0], "RGB")
        assert np.allclose(first.detections[0].box, own[0].box)
        second = ahead.take()  # not asked ahead: taken now, left to the loop to detect
        assert second is not None and second.frame.index == 1 and second.detections is None
        ahead.ask()
        third = ahead.take()
        assert third is not None and third.frame.index == 2
        assert third.detections is not None and len(third.detections) == 1
        assert ahead.take() is None and ahead.take() is None  # the source ended
    finally:
        ahead.close()
    assert camera.threads == {"facegate-lookahead"}  # the loop's thread never read the camera


def test_no_frame_is_taken_before_it_is_asked_for(frames: dict[str, np.ndarray]) -> None:
    camera = Camera([frames["blank"]] * 5)
    ahead = Lookahead(camera.frames(), lambda f: [])
    try:
        time.sleep(0.2)
        assert camera.read_at == []  # nothing asked: the camera is not read
        asked = time.monotonic()
        taken = ahead.take()
        assert taken is not None and camera.read_at[0] >= asked
        time.sleep(0.2)
        assert len(camera.read_at) == 1  # at most one frame ahead, and only when asked
        ahead.ask()
        ahead.ask()  # asking twice takes one frame
        time.sleep(0.2)
        assert len(camera.read_at) == 2
        assert ahead.take() is not None and len(camera.read_at) == 2
    finally:
        ahead.close()


def test_a_failing_camera_is_raised_where_the_loop_takes_the_frame(frames: dict[str, np.ndarray]) -> None:
    ahead = Lookahead(Camera([frames["blank"]] * 3, fail_at=1).frames(), lambda f: [])
    try:
        assert ahead.take() is not None
        ahead.ask()
        with pytest.raises(OSError, match="camera unplugged"):
            ahead.take()
        assert ahead.take() is None  # a failed source is done; the daemon reopens it
    finally:
        ahead.close()


def test_a_frame_the_detector_refuses_is_left_to_the_loop(frames: dict[str, np.ndarray]) -> None:
    def refuse(frame: Frame) -> list[Detection]:
        raise ValueError("not a frame")

    ahead = Lookahead(Camera([frames["blank"]]).frames(), refuse)
    try:
        ahead.ask()
        taken = ahead.take()
        assert taken is not None and taken.detections is None  # the loop meets the error itself
    finally:
        ahead.close()


def test_close_does_not_wait_on_a_camera_that_hangs(frames: dict[str, np.ndarray]) -> None:
    camera = Camera([frames["blank"]] * 3)
    ahead = Lookahead(camera.frames(), lambda f: [])
    assert ahead.take() is not None
    camera.hold.clear()  # the next read hangs
    ahead.ask()
    started = time.monotonic()
    ahead.close(timeout=0.5)
    assert time.monotonic() - started < 2.0
    camera.hold.set()  # the camera wakes: the worker hands over nothing and ends
    time.sleep(0.2)
    assert ahead.take() is None


def test_the_latency_bench_runs_all_three_loops() -> None:
    """`facegate bench latency` on a camera with its own clock and a real broker: the paced,
    the serial and the overlapped loop each decide the person every time they appear, and
    only the overlapped one detects frames ahead."""
    from facegate.bench.door import bench_latency, latency_line

    report = bench_latency([1], appearances=2, fps=10.0, camera_fps=30.0)
    loops = [(r["decide_at_camera_rate"], r["overlap"]) for r in report["results"]]
    assert loops == [(False, False), (True, False), (True, True)]
    for row in report["results"]:
        assert row["events"] == row["appearances"] == 2, row
        assert 0 < row["median_ms"] < 5000, row
        assert (row["frames_detected_ahead"] > 0) == row["overlap"], row
    line = latency_line(report)
    assert line.count("median") == 3 and "next frame detected ahead" in line


def test_overlap_auto_leaves_the_interpreters_their_cores() -> None:
    """``camera.overlap: auto`` is on only where a core is left beside ``models.threads``; true
    and false are taken as they are; anything else is refused with the key's name."""
    cores = len(os.sched_getaffinity(0))

    def config(overlap: object, threads: int) -> Any:
        return validate({"camera": {"overlap": overlap}, "models": {"threads": threads}})

    assert overlap_on(config("auto", cores)) is False
    assert overlap_on(config("auto", max(1, cores - 1))) is (cores > 1)
    assert overlap_on(config(True, cores)) is True and overlap_on(config(False, 1)) is False
    assert validate({}).camera.overlap == "auto"
    with pytest.raises(ConfigError, match=r"camera\.overlap"):
        config("yes", 1)
