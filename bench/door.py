"""``facegate bench door``: what a door costs, the daemon as it runs, on a real broker.

- **standing**: a known person stands in view for ``seconds`` at ``fps`` (swaying a few
  pixels, breathing in size, with sensor noise). The frames are fed without pacing and
  the daemon's process CPU time is measured, once with every face through the whole
  pipeline on every frame (``decision.recheck_s: 0``, the behaviour before decided tracks
  were followed) and once with the shipped setting; the configurations alternate round
  by round. The events a subscriber receives are compared.
- **latency**: a person steps into view again and again; frames paced at ``fps`` as a
  camera delivers them; time from the first frame with the person to their event at a
  subscriber, median and p95, for each thread count: paced throughout, a new face's
  frames at the camera's rate (shipped), and the same with the next frame taken and
  detected ahead (``camera.overlap``).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from facegate.sources import Frame


class StandingSource:
    """A few precomputed frames of one person swaying, cycled for ``count`` frames, then a
    short empty scene so the track ends; ``wall`` is stamped as each frame is handed over."""

    def __init__(self, frames: list[np.ndarray], count: int, tail: list[np.ndarray]) -> None:
        self.images, self.count, self.tail = frames, count, tail

    def frames(self) -> Iterator[Frame]:
        index = 0
        for i in range(self.count):
            yield Frame(self.images[i % len(self.images)], "RGBX", index, time.time())
            index += 1
        for image in self.tail:
            yield Frame(image, "RGBX", index, time.time())
            index += 1

    def close(self) -> None:
        pass


class CameraClock:
    """A camera running at ``camera_fps`` whatever the daemon does, as picamera2's is: asked
    for a frame, it waits for the next sensor tick and hands over that tick's scene. The
    scene: a person in view for ``present_s`` of every ``cycle_s``, an empty hall between;
    ``appeared`` holds the ticks the person came into view (whether or not the daemon
    took those frames)."""

    def __init__(
        self,
        face: list[np.ndarray],
        blank: np.ndarray,
        times: int,
        camera_fps: float,
        present_s: float,
        cycle_s: float,
    ) -> None:
        self.face, self.blank, self.times = face, blank, times
        self.tick, self.present_s, self.cycle_s = 1.0 / camera_fps, present_s, cycle_s
        self.start = 0.0
        self.appeared: list[float] = []

    def frames(self) -> Iterator[Frame]:
        # Each appearance at a random phase of the camera's and the daemon's clocks.
        rng = np.random.default_rng(0)
        self.start = time.time() + 0.5
        self.appeared = [
            self.start + k * self.cycle_s + float(rng.uniform(0, self.cycle_s - self.present_s) / 2)
            for k in range(self.times)
        ]
        index = 0
        while True:
            now = time.time()
            n = max(0, math.ceil((now - self.start) / self.tick))
            taken = self.start + n * self.tick
            time.sleep(max(0.0, taken - now))
            if taken >= self.start + self.times * self.cycle_s:
                return
            inside = any(a <= taken < a + self.present_s for a in self.appeared)
            image = self.face[n % len(self.face)] if inside else self.blank
            yield Frame(image, "RGBX", index, taken)
            index += 1

    def close(self) -> None:
        pass


def swaying(phases: int = 40, seed: int = 0) -> list[np.ndarray]:
    """One 640x480 frame per phase of a slow sway (+-6 px across, +-3 px up and down, face
    width 110 +- 3 px), with sensor noise (sigma 2): a person waiting at a door."""
    from facegate.demo import PHOTOS, scene
    from facegate.perception import Perception

    perception = Perception()
    rng = np.random.default_rng(seed)
    out = []
    for k in range(phases):
        angle = 2 * math.pi * k / phases
        image = scene(
            PHOTOS / "obama2.jpg",
            face_width=110.0 + 3.0 * math.sin(2 * angle),
            centre=(320.0 + 6.0 * math.sin(angle), 220.0 + 3.0 * math.cos(angle)),
            perception=perception,
        )
        noisy = image.astype(np.float32) + rng.normal(0.0, 2.0, image.shape).astype(np.float32)
        out.append(_xbgr(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)))
    return out


def _xbgr(rgb: np.ndarray) -> np.ndarray:
    """As picamera2 hands over its default XBGR8888 format: R, G, B, X in memory ("RGBX")."""
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def _daemon_config(
    tmp: str, port: int, protocol: str, threads: int, fps: float, overlap: bool | None = None, **decision: Any
) -> Any:
    """``overlap`` None: the daemon's default, and no key an older checkout would refuse
    (scripts/dev/standing_before_after.py drives older daemons with this file)."""
    from facegate.config import validate

    camera: dict[str, Any] = {"source": "folder", "path": tmp, "max_fps": fps}
    if overlap is not None:
        camera["overlap"] = overlap
    return validate(
        {
            "device": {"id": "bench"},
            "camera": camera,
            "models": {"threads": threads},
            "gallery": {"path": f"{tmp}/gallery.db"},
            "mqtt": {"port": port, "protocol": protocol, "outbox": f"{tmp}/outbox"},
            "decision": decision,
            "homeassistant": {"discovery": False},
        }
    )


def _run(
    config: Any, source: Any
) -> tuple[list[tuple[float, dict[str, Any]]], dict[str, float], dict[str, int]]:
    """One daemon over ``source`` with obama enrolled; (events at a subscriber with their
    arrival times, cpu/wall seconds of the run, the daemon's counts)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from facegate.daemon import Daemon
    from facegate.demo import PHOTOS

    daemon = Daemon(config, source)
    daemon.gallery.add("obama", [daemon.enroller.sample(PHOTOS / "obama.jpg")])
    arrivals: list[tuple[float, dict[str, Any]]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    sub.on_message = lambda client, userdata, message: arrivals.append(
        (time.time(), json.loads(message.payload))
    )
    sub.connect("127.0.0.1", config.mqtt.port)
    sub.subscribe(f"facegate/{config.device.id}/event", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    cpu, wall = time.process_time(), time.perf_counter()
    daemon.run()
    spent = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(arrivals) < daemon.counts["events"]:
        time.sleep(0.05)
    sub.loop_stop()
    sub.disconnect()
    return arrivals, spent, dict(daemon.counts)


STANDING = {"every frame (recheck_s 0)": {"recheck_s": 0.0}, "followed (shipped settings)": {}}


def bench_standing(
    seconds: float = 60.0,
    fps: float = 10.0,
    threads: int = 1,
    rounds: int = 2,
    settings: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``settings``: name -> ``decision`` section overrides, each run in every round."""
    from facegate.demo.broker import start_broker

    frames = swaying()
    blank = [np.full_like(frames[0], 96)] * 12  # longer than max_missing: the track ends
    count = round(seconds * fps)
    port, stop_broker, broker, protocol = start_broker()
    settings = STANDING if settings is None else settings
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    try:
        for _ in range(rounds):
            for name, decision in settings.items():
                with tempfile.TemporaryDirectory() as tmp:
                    config = _daemon_config(tmp, port, protocol, threads, 10_000.0, **decision)
                    arrivals, spent, counts = _run(config, StandingSource(frames, count, blank))
                events = [(e["type"], e["identity"], e["frames"]) for _, e in arrivals]
                rows[name].append({**spent, "events": events, "counts": counts})
    finally:
        stop_broker()
    results = []
    for name, runs in rows.items():
        results.append(
            {
                "setting": name,
                "cpu_s": float(np.median([r["cpu_s"] for r in runs])),
                "wall_s": float(np.median([r["wall_s"] for r in runs])),
                "events": runs[0]["events"],
                "same_events_every_round": all(r["events"] == runs[0]["events"] for r in runs),
                "followed_faces": runs[0]["counts"].get("followed", 0),
                "frames": runs[0]["counts"]["frames"],
            }
        )
    return {
        "seconds": seconds,
        "fps": fps,
        "threads": threads,
        "rounds": rounds,
        "broker": broker,
        "results": results,
    }


def bench_latency(
    threads: list[int],
    appearances: int = 10,
    fps: float = 10.0,
    camera_fps: float = 30.0,
    rounds: int = 1,
    present_s: float = 1.0,
) -> dict[str, Any]:
    """Each thread count, with the daemon's loop paced at ``fps`` throughout, taking a new
    face's first frames at the camera's rate (the shipped setting), and that with
    ``camera.overlap``; rounds alternate them. The person stays ``present_s`` in view, then
    the hall is empty for 0.8 x as long (more than the tracker's ``max_missing`` frames, so
    each appearance is a track of its own)."""
    from facegate.demo.broker import start_broker

    frames = swaying(phases=8, seed=1)
    blank = np.full_like(frames[0], 96)
    port, stop_broker, broker, protocol = start_broker()
    waits: dict[tuple[int, bool, bool], list[float]] = {}
    events: dict[tuple[int, bool, bool], int] = {}
    ahead: dict[tuple[int, bool, bool], int] = {}
    try:
        for _ in range(rounds):
            for t in threads:
                for hurry, overlap in ((False, False), (True, False), (True, True)):
                    key = (t, hurry, overlap)
                    with tempfile.TemporaryDirectory() as tmp:
                        config = _daemon_config(
                            tmp, port, protocol, t, fps, overlap, max_missing=2, decide_at_camera_rate=hurry
                        )
                        # one track, one event each time the person comes into view
                        camera = CameraClock(
                            frames, blank, appearances, camera_fps, present_s, 1.8 * present_s
                        )
                        arrivals, _, counts = _run(config, camera)
                    appeared = np.array(camera.appeared)
                    got = waits.setdefault(key, [])
                    for at, event in arrivals:
                        started = appeared[appeared <= event["frame_time"]]
                        if len(started):
                            got.append((at - started[-1]) * 1000)
                    events[key] = events.get(key, 0) + len(arrivals)
                    ahead[key] = ahead.get(key, 0) + counts["detected_ahead"]
    finally:
        stop_broker()
    results = [
        {
            "threads": t,
            "decide_at_camera_rate": hurry,
            "overlap": overlap,
            "events": events[(t, hurry, overlap)],
            "frames_detected_ahead": ahead[(t, hurry, overlap)],
            "appearances": appearances * rounds,
            "median_ms": float(np.median(w)) if w else float("nan"),
            "p95_ms": float(np.percentile(w, 95)) if w else float("nan"),
        }
        for (t, hurry, overlap), w in waits.items()
    ]
    return {
        "fps": fps,
        "camera_fps": camera_fps,
        "present_s": present_s,
        "broker": broker,
        "results": results,
    }


def standing_line(report: dict[str, Any]) -> str:
    every, followed = report["results"]
    rounds_agree = every["same_events_every_round"] and followed["same_events_every_round"]
    same = every["events"] == followed["events"] and rounds_agree
    threads = f"{report['threads']} thread{'s' * (report['threads'] > 1)}"
    return (
        f"known person standing {report['seconds']:.0f} s at {report['fps']:.0f} fps, {threads}: "
        f"daemon CPU {every['cpu_s']:.2f} s every frame, {followed['cpu_s']:.2f} s followed "
        f"({every['cpu_s'] / followed['cpu_s']:.1f}x less); events {'the same' if same else 'DIFFERENT'} "
        f"({len(followed['events'])})"
    )


def latency_line(report: dict[str, Any]) -> str:
    def mode(r: dict[str, Any]) -> str:
        if not r["decide_at_camera_rate"]:
            return f"paced at {report['fps']:.0f} fps"
        return "new faces at camera rate" + (", next frame detected ahead" if r.get("overlap") else "")

    parts = [
        f"{r['threads']} thread{'s' * (r['threads'] > 1)}, {mode(r)}: "
        f"median {r['median_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms ({r['events']} of {r['appearances']})"
        for r in report["results"]
    ]
    return f"person appears -> event at subscriber, camera at {report['camera_fps']:.0f} fps: " + "; ".join(
        parts
    )
