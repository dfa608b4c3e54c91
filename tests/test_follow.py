"""Decided faces followed by the detector alone (facegate.follow), and a new face's first
frames taken at the camera's rate: real models, real mosquitto, fake camera only."""

from __future__ import annotations

import collections
import pathlib
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest

from facegate.bench.door import swaying
from facegate.daemon import Daemon
from facegate.demo import PHOTOS, scene
from facegate.detect import Detection
from facegate.follow import Follower, detector_yaw
from facegate.perception import Perception, to_rgb
from facegate.sources import Frame
from facegate.track import Decision, Observation, Track
from tests.mqtt_support import Broker, FeedSource, Subscriber
from tests.test_daemon import _config, _events, running

# --- the follower's rules, on plain data ---------------------------------------------


def _det(box: tuple[float, float, float, float], nose_dx: float = 0.0) -> Detection:
    left, top, right, _ = box
    w = right - left
    eyes = [[left + 0.3 * w, top + 0.4 * w], [left + 0.7 * w, top + 0.4 * w]]
    nose = [left + (0.5 + nose_dx) * w, top + 0.6 * w]
    return Detection(box, 0.9, np.array([*eyes, nose, nose, eyes[0], eyes[1]], np.float64))


def _decided(track_id: int, box: tuple[float, float, float, float], name: str | None = "alice") -> Track:
    track = Track(track_id, box, collections.deque(maxlen=5), frames=5)
    track.decided = Decision(track_id, name, 3, 3, 0.2, box)
    return track


BOX = (100.0, 100.0, 200.0, 200.0)


def _checked(
    follower: Follower, track: Track, det: Detection, now: float, vote: str | None = "alice"
) -> None:
    follower.record([det], [Observation(det.box, vote, True, 0.2)], [True], [track], now, {track.id})


def test_undecided_and_unchecked_faces_take_the_whole_pipeline() -> None:
    follower = Follower(2.0)
    det = _det(BOX)
    undecided = Track(1, BOX, collections.deque(maxlen=5))
    assert follower.needs_pipeline([det, det], [None, undecided], 0.0) == [True, True]
    assert follower.needs_pipeline([det], [_decided(2, BOX)], 0.0) == [True]  # decided, never checked


def test_a_steady_decided_face_is_followed_until_its_check_is_due() -> None:
    follower = Follower(2.0)
    track, det = _decided(1, BOX), _det(BOX)
    _checked(follower, track, det, 10.0)
    assert follower.needs_pipeline([det], [track], 10.1) == [False]
    assert follower.needs_pipeline([det], [track], 11.9) == [False]
    assert follower.needs_pipeline([det], [track], 12.0) == [True]
    assert (follower.followed, follower.checked) == (2, 1)


@pytest.mark.parametrize(
    "change",
    ["grew", "shrank", "turned", "jumped", "another face near", "check disagreed", "check unusable"],
)
def test_a_face_in_doubt_is_checked_at_once(change: str) -> None:
    follower = Follower(60.0)
    track, det = _decided(1, BOX), _det(BOX)
    vote: str | None = {"check disagreed": "bob", "check unusable": None}.get(change, "alice")
    follower.record(
        [det], [Observation(BOX, vote, change != "check unusable", 0.2)], [True], [track], 0.0, {1}
    )
    now, frame = 1.0, [det]
    if change == "grew":
        frame = [_det((95.0, 95.0, 230.0, 230.0))]
    elif change == "shrank":
        frame = [_det((114.0, 114.0, 186.0, 186.0))]  # overlap 0.52: only its size says it
    elif change == "turned":
        frame = [_det(BOX, nose_dx=0.2)]
        assert abs(detector_yaw(frame[0]) - detector_yaw(det)) > 0.15
    elif change == "jumped":
        frame = [_det((150.0, 100.0, 250.0, 200.0))]  # overlap 1/3 with the track's box
    elif change == "another face near":
        frame = [det, _det((230.0, 100.0, 330.0, 200.0))]
    assert follower.needs_pipeline(frame, [track, None][: len(frame)], now)[0] is True


def test_small_movements_do_not_put_a_face_in_doubt() -> None:
    follower = Follower(60.0)
    track, det = _decided(1, BOX), _det(BOX)
    _checked(follower, track, det, 0.0)
    moved = _det((104.0, 102.0, 206.0, 204.0), nose_dx=0.05)
    far_away = _det((400.0, 100.0, 500.0, 200.0))
    assert follower.needs_pipeline([moved, far_away], [track, None], 1.0) == [False, True]


def test_recheck_zero_means_every_frame_and_ended_tracks_are_forgotten() -> None:
    follower = Follower(0.0)
    track, det = _decided(1, BOX), _det(BOX)
    _checked(follower, track, det, 0.0)
    assert follower.needs_pipeline([det], [track], 0.01) == [True]
    follower.record([], [], [], [], 1.0, set())
    assert follower.checks == {}


# --- the daemon -------------------------------------------------------------------------

# Under emulation (scripts/pi-check) a frame through the whole pipeline takes about a second.
PATIENCE = 300.0


@pytest.fixture(scope="module")
def standing() -> list[np.ndarray]:
    return swaying(phases=12)


def _run_standing(
    broker: Broker,
    tmp: pathlib.Path,
    frames: list[np.ndarray],
    sample: Any,
    stranger: np.ndarray,
    **decision: Any,
) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    config = _config(tmp, broker.port, sample, decision=decision)
    sub = Subscriber(broker.port, ["facegate/door1/#"])
    feed = FeedSource()
    # every RGB copy of a frame the daemon makes (only for frames where a face runs the pipeline)
    copies = mock.patch("facegate.daemon.to_rgb", wraps=to_rgb)
    with copies as rgb, running(Daemon(config, feed)) as daemon:
        sub.wait(lambda t, p: t.endswith("/availability") and p["state"] == "online")
        for i in range(60):
            feed.put(frames[i % len(frames)][:, :, :3].copy())
        feed.put(np.full((480, 640, 3), 96, np.uint8), 6)
        feed.put(stranger, 8)
        feed.put(np.full((480, 640, 3), 96, np.uint8), 6)
        events = _events(sub, 2, PATIENCE)
        feed.drained(PATIENCE)
        time.sleep(0.3)
        counts = {**daemon.counts, "rgb_copies": rgb.call_count}
    sub.close()
    return [(e["type"], e["identity"], e["frames"]) for e in events], counts


@pytest.mark.pi
def test_a_decided_person_costs_only_detection_and_the_events_are_the_same(
    broker: Broker, tmp_path: pathlib.Path, standing: list[np.ndarray], obama_sample: Any
) -> None:
    stranger = scene(PHOTOS / "biden.jpg", perception=Perception())
    every, every_counts = _run_standing(
        broker, tmp_path / "every", standing, obama_sample, stranger, recheck_s=0
    )
    # A check every 60 s: how many frames are followed then depends on the doubt rules alone,
    # not on how fast this machine is (under emulation a frame can take a second).
    followed, counts = _run_standing(
        broker, tmp_path / "followed", standing, obama_sample, stranger, recheck_s=60
    )
    print(f"standing: {counts['followed']} of {counts['faces']} faces followed by the detector alone")
    assert every == followed == [("identify", "obama", 3), ("identify", "unknown", 3)]
    assert every_counts["followed"] == 0
    assert counts["faces"] == every_counts["faces"] and counts["followed"] >= 50
    # one face a frame: a followed frame costs no RGB copy, every other frame with a face one
    assert every_counts["rgb_copies"] == every_counts["faces"]
    assert counts["rgb_copies"] == counts["faces"] - counts["followed"]


@pytest.mark.pi
def test_a_verify_gets_fresh_evidence_from_a_followed_face(
    broker: Broker, tmp_path: pathlib.Path, standing: list[np.ndarray], obama_sample: Any
) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    config = _config(tmp_path, broker.port, obama_sample, camera={"max_fps": 20})
    sub = Subscriber(broker.port, ["facegate/door1/#"])
    frames = [f[:, :, :3].copy() for f in standing]
    feed = FeedSource()
    with running(Daemon(config, feed)) as daemon:
        sub.wait(lambda t, p: t.endswith("/availability") and p["state"] == "online")
        feed.put(frames[0], 20)
        assert _events(sub, 1, PATIENCE)[0]["identity"] == "obama"
        feed.drained(PATIENCE)
        assert daemon.counts["followed"] > 0
        looked = daemon.counts["faces"] - daemon.counts["followed"]
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "facegate/door1/reply/test"
        sub.publish(
            "facegate/door1/command/verify", {"id": "v1", "args": {"claim": "obama"}}, properties=props
        )
        time.sleep(0.3)
        feed.put(frames[1], 10)
        reply = sub.wait(lambda t, p: t == "facegate/door1/reply/test", timeout=PATIENCE)[0][1]
        assert reply["ok"] is True and reply["result"]["accepted"] is True
        # the verify's votes came from frames that went through the whole pipeline
        assert daemon.counts["faces"] - daemon.counts["followed"] - looked >= reply["result"]["frames"]
    sub.close()


@pytest.mark.pi
def test_someone_else_in_a_followed_place_is_seen_at_the_next_check(
    broker: Broker, tmp_path: pathlib.Path, standing: list[np.ndarray], obama_sample: Any
) -> None:
    """Swapping places with a decided person (same box, no frame without a face) is seen at the
    next check; the track is then in doubt, every frame goes through the whole pipeline, and
    once their votes agree the newcomer is a new track, decided and reported (a stranger here),
    then followed in turn."""
    config = _config(tmp_path, broker.port, obama_sample, decision={"recheck_s": 0.2})
    biden = scene(PHOTOS / "biden.jpg", perception=Perception())
    sub = Subscriber(broker.port, ["facegate/door1/#"])
    feed = FeedSource()
    with running(Daemon(config, feed)) as daemon:
        sub.wait(lambda t, p: t.endswith("/availability") and p["state"] == "online")
        feed.put(standing[0][:, :, :3].copy(), 8)
        feed.drained(PATIENCE)
        time.sleep(0.3)
        (first,) = daemon.tracker.tracks
        assert daemon.tracker.tracks[first].decided.name == "obama"
        sub.wait(
            lambda t, p: (
                t.endswith("/state")
                and (p["present"], p["known_present"], p["unknown_present"]) == (["obama"], True, 0)
            )
        )
        feed.put(biden, 20)
        feed.drained(PATIENCE)
        time.sleep(0.3)
        known, stranger = (m[1] for m in sub.wait(lambda t, p: t.endswith("/event"), 2))
        (second,) = daemon.tracker.tracks
        assert (known["identity"], known["track"]) == ("obama", first)
        assert (stranger["identity"], stranger["track"], stranger["votes"]) == ("unknown", second, 3)
        assert second != first and daemon.tracker.tracks[second].decided.name is None
        state = [m[1] for m in sub.messages if m[0].endswith("/state")][-1]
        assert (state["present"], state["known_present"], state["unknown_present"]) == ([], False, 1)
        # decided in turn, the newcomer is followed (checks made rare: under emulation a frame
        # takes longer than the 0.2 s above, and every frame would be due one)
        daemon.follower.recheck_s = 60.0
        before = daemon.counts["followed"]
        feed.put(biden, 10)
        feed.drained(PATIENCE)
        time.sleep(0.3)
        assert daemon.counts["followed"] > before
        assert daemon.counts["events"] == 2
    sub.close()


class _Camera:
    """Frames as fast as asked, each stamped; the first face frame's time is kept."""

    def __init__(self, images: list[np.ndarray], first_face: int) -> None:
        self.images, self.first_face = images, first_face
        self.walls: list[float] = []

    def frames(self) -> Iterator[Frame]:
        for index, image in enumerate(self.images):
            self.walls.append(time.time())
            yield Frame(image, "RGB", index, self.walls[-1])

    def close(self) -> None:
        pass


@pytest.mark.parametrize("at_camera_rate", [True, False])
def test_a_new_face_is_decided_at_the_camera_rate(
    broker: Broker,
    tmp_path: pathlib.Path,
    standing: list[np.ndarray],
    obama_sample: Any,
    at_camera_rate: bool,
) -> None:
    """camera.max_fps 4: paced, the three deciding frames are 0.5 s apart end to end; taken as
    the camera gives them, they follow each other at once."""
    config = _config(
        tmp_path,
        broker.port,
        obama_sample,
        camera={"max_fps": 4},
        decision={"decide_at_camera_rate": at_camera_rate},
    )
    blank = np.full((480, 640, 3), 96, np.uint8)
    camera = _Camera([blank, blank] + [standing[0][:, :, :3].copy()] * 4 + [blank] * 4, first_face=2)
    sub = Subscriber(broker.port, ["facegate/door1/#"])
    daemon = Daemon(config, camera)
    with running(daemon):
        event = _events(sub, 1, PATIENCE)[0]
    took = event["frame_time"] - camera.walls[camera.first_face]
    print(f"new face decided {took * 1000:.0f} ms after its first frame (at camera rate: {at_camera_rate})")
    assert event["identity"] == "obama" and event["frames"] == 3
    assert (took < 0.25) if at_camera_rate else (took >= 0.45)
    sub.close()
