"""``facegate run``: camera frames in, decisions out over MQTT.

The loop, in one thread: frame -> (motion gate) -> detect/align -> encode ->
identify -> track -> decide -> publish. MQTT runs in paho's own thread and
never blocks the loop (``facegate.mqtt``); commands arrive on a queue and are
handled between frames, so the gallery is only touched from this thread.

Signals: SIGTERM/SIGINT stop cleanly after publishing ``offline``; SIGHUP
reloads the config file's decision and gate settings (camera, MQTT and
model changes need a restart, and say so) and the gallery.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import logging
import queue
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from facegate.commands import Authority, Command, CommandError, NonceStore
from facegate.config import Config, ConfigError, load_config
from facegate.decide import OperatingPoint, identify, verify
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError, fingerprint, one_usable_face
from facegate.errors import FacegateError
from facegate.fleet import member_for
from facegate.gallery import Sample
from facegate.images import load_rgb
from facegate.livegallery import LiveGallery
from facegate.modelcard import MODELS_DIR, ModelCard
from facegate.mqtt import Link, Request
from facegate.notify import Notifier
from facegate.perception import Face, Gates, Perception
from facegate.ratelimit import Bucket, LogLimiter
from facegate.sources import Frame, FrameSource, open_source
from facegate.track import Decision, Observation, Tracker, TrackerConfig

log = logging.getLogger(__name__)

RESTART_SECTIONS = ("camera", "models", "mqtt", "gallery", "device", "homeassistant", "commands")
QUEUE_MAX = 256  # requests waiting for the frame loop; more are dropped and counted


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="milliseconds")


@dataclasses.dataclass
class PendingVerify:
    command: Command
    request: Request
    deadline: float
    votes: list[bool] = dataclasses.field(default_factory=list)
    best: float = float("inf")


@dataclasses.dataclass
class PendingEnroll:
    command: Command
    request: Request
    deadline: float


def _perception(config: Config, card: ModelCard) -> Perception:
    g = config["gates"]
    return Perception(
        chip_size=card.chip_size,
        padding=card.chip_padding,
        detector=MODELS_DIR / f"face_detection_{config['models']['detector']}_range.tflite",
        gates=Gates(g["min_eye_distance"], g["max_yaw"], g["min_sharpness"]),
        min_score=g["min_score"],
        min_size=g["min_face"],
        num_threads=config["models"]["threads"],
        refine=config["models"]["refine"],
    )


def _tracker_config(config: Config) -> TrackerConfig:
    d = config["decision"]
    return TrackerConfig(d["votes_to_decide"], d["window"], d["min_iou"], d["max_missing"])


class Daemon:
    def __init__(
        self, config: Config, source: FrameSource | None = None, notifier: Notifier | None = None
    ) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier()
        # The camera first: a device without one fails before anything is created on disk.
        self._open_source = (lambda: open_source(self.config)) if source is None else (lambda: source)
        self.source = self._open_source()
        self.encoder = Encoder(config["models"]["encoder"], num_threads=config["models"]["threads"])
        self.perception = _perception(config, self.encoder.card)
        self.enroller = Enroller(self.perception, self.encoder)
        self.op = OperatingPoint.from_card(self.encoder.card, config["decision"]["far"])
        self.live = LiveGallery(config["gallery"]["path"], fingerprint(self.encoder))
        self.tracker = Tracker(_tracker_config(config))
        c = config["commands"]
        self.authority = Authority(
            c["enabled"],
            config.command_secret,
            c["max_skew_s"],
            device=config["device"]["id"],
            base=f"{config['mqtt']['prefix']}/{config['device']['id']}",
            nonces=NonceStore(config.nonce_file, c["max_skew_s"]),
            max_bytes=config["mqtt"]["max_payload"],
        )
        # What stays open to anyone on the broker (unsigned verify) is rate-limited, and so are
        # the answers and log lines for refused requests: a flood costs the loop little.
        self.open_bucket = Bucket(c["rate_per_minute"] / 60.0, min(c["rate_per_minute"], 10))
        self.error_replies = Bucket(10.0, 20)
        self.refusal_log = LogLimiter(log, per_s=1.0, burst=10)
        self.refused: dict[str, int] = {}
        self.requests: queue.Queue[Request] = queue.Queue(QUEUE_MAX)
        model = {"name": self.encoder.card.name, "sha256": self.encoder.card.sha256}
        self.fleet = member_for(config, fingerprint(self.encoder)) if config["fleet"]["enabled"] else None
        self._fleet_seen: dict[str, Any] | None = None
        self.link = Link(config, self._offer, model=model, fleet=self.fleet)
        self.model = model
        self.camera = "ok"
        self.stopping = threading.Event()
        self.reload_wanted = threading.Event()
        self.verifies: list[PendingVerify] = []
        self.enrolls: list[PendingEnroll] = []
        self._thumb: np.ndarray | None = None
        self._since_detect = 0
        self._present: tuple[str, ...] = ()
        self._state_at = 0.0
        self._last_event: dict[str, Any] | None = None
        self._health: tuple[Any, ...] = ()
        self.counts = {"frames": 0, "detected_frames": 0, "skipped_idle": 0, "events": 0, "faces": 0}

    # --- main loop ---------------------------------------------------------------

    def run(self, max_frames: int | None = None) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
            signal.signal(signal.SIGHUP, lambda *_: self.reload_wanted.set())
        self.link.start()
        # Ready once camera, models and gallery are open (done in __init__) and
        # the broker answered, or after 10 s without it: the daemon keeps
        # deciding and queueing while the broker is down, and says so.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stopping.is_set():
            if self.link.connected.wait(0.1):
                break
        broker = "connected" if self.link.connected.is_set() else "unreachable, retrying"
        self.notifier.ready(f"watching {self.config['camera']['source']}; broker {broker}")
        period = 1.0 / self.config["camera"]["max_fps"]
        next_at = time.monotonic()
        status_at = time.monotonic()
        try:
            for frame in self._frames():
                self.notifier.watchdog()  # a hung camera or loop stops these, and systemd restarts us
                if self.stopping.is_set():
                    break
                if time.monotonic() - status_at > 60:
                    status_at = time.monotonic()
                    self.notifier.status(self._status())
                self.handle_requests()
                if self.reload_wanted.is_set():
                    self.reload_wanted.clear()
                    with contextlib.suppress(FacegateError):  # logged; the running config stays
                        self.reload()
                self.step(frame)
                if max_frames is not None and self.counts["frames"] >= max_frames:
                    break
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stopping.wait(delay)
                else:
                    next_at = time.monotonic()  # behind: do not try to catch up
            self.handle_requests()
        finally:
            self.notifier.stopping()
            for pending in self.verifies:
                self._reply(pending.request, pending.command, ok=False, error="daemon stopping")
            self.link.stop()
            self.source.close()
            self.live.close()
            if self.fleet is not None:
                self.fleet.cancel()
                self.fleet.sync.close()
        log.info("stopped: %s", self.counts)
        return 0

    def _frames(self) -> Iterator[Frame]:
        """The source's frames. A camera that fails is reported (state, systemd status)
        and reopened with backoff (1 to 30 s), feeding the watchdog meanwhile: the
        process is healthy, the camera is not. A source that simply ends stops the loop."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                for frame in self.source.frames():
                    if self.camera != "ok":
                        log.info("camera is back")
                        self._camera_state("ok")
                    delay = 1.0
                    yield frame
                return
            except FacegateError:
                raise  # a configuration problem: no retry will fix it
            except Exception as exc:
                log.error("camera failed (%s: %s); reopening in %.0f s", type(exc).__name__, exc, delay)
                self._camera_state(f"lost: {exc}")
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping.is_set():
                self.notifier.watchdog()
                self.handle_requests()
                self.stopping.wait(0.2)
            delay = min(delay * 2, 30.0)
            with contextlib.suppress(Exception):
                self.source.close()
            try:
                self.source = self._open_source()
            except Exception as exc:
                log.error("camera still unavailable: %s", exc)

    def _camera_state(self, state: str) -> None:
        self.camera = state
        self.notifier.status(f"camera {state}; {self._status()}")
        self._state_at = 0.0  # publish the change now
        self._publish_state(time.monotonic(), force=True)

    def step(self, frame: Frame) -> list[dict[str, Any]]:
        """One frame through the pipeline; returns the events it published."""
        self.counts["frames"] += 1
        now = time.monotonic()
        self._expire(now)
        if self._idle(frame):
            self.counts["skipped_idle"] += 1
            return []
        self.counts["detected_frames"] += 1
        faces = self.perception.faces(frame.image, frame.layout)
        usable = [f for f in faces if f.rejected is None]
        self.counts["faces"] += len(faces)
        vectors = self.encoder.embed(np.stack([f.chip for f in usable])) if usable else np.zeros((0, 128))
        templates = self.live.templates()
        observations, k = [], 0
        for face in faces:
            if face.rejected is not None:
                observations.append(Observation(face.detection.box, None, usable=False))
                continue
            found = identify(templates, vectors[k], self.op)
            observations.append(Observation(face.detection.box, found.name, True, found.distance))
            k += 1
        events = [self._identity_event(d, frame) for d in self.tracker.update(observations)]
        if usable:
            largest = int(np.argmax([f.detection.width for f in usable]))
            events += self._verify_votes(vectors[largest], templates, frame, usable[largest])
            self._enroll_from_camera(faces)
        for event in events:
            log.debug(
                "frame %d: %s %s (%s)", frame.index, event["type"], event["identity"], event["event_id"]
            )
            self.link.publish_event(event)
            self._last_event = event
        self.counts["events"] += len(events)
        self._publish_state(now)
        return events

    def _idle(self, frame: Frame) -> bool:
        """Skip detection when nothing moves, no face is tracked and nothing waits on a frame."""
        threshold = self.config["idle"]["motion_threshold"]
        image = frame.image
        thumb = image[::8, ::8].astype(np.float32)
        thumb = thumb.mean(axis=2) if thumb.ndim == 3 else thumb
        previous, self._thumb = self._thumb, thumb
        busy = self.tracker.tracks or self.verifies or self.enrolls
        if threshold <= 0 or previous is None or previous.shape != thumb.shape or busy:
            self._since_detect = 0
            return False
        self._since_detect += 1
        if self._since_detect >= self.config["idle"]["check_every"]:
            self._since_detect = 0
            return False
        return float(np.abs(thumb - previous).mean()) < threshold

    def _status(self) -> str:
        c = self.counts
        broker = "connected" if self.link.connected.is_set() else f"DOWN, {self.link.pending} events queued"
        return f"{c['frames']} frames, {c['events']} events, broker {broker}"

    # --- events ----------------------------------------------------------------

    def _event(self, frame: Frame, kind: str, event_type: str, **fields: Any) -> dict[str, Any]:
        now = time.time()
        return {
            "schema": 1,
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "event_type": event_type,
            "time": _iso(now),
            "ts": now,
            "frame_time": frame.wall,
            "device": self.config["device"]["id"],
            "camera": self.config["camera"]["name"],
            "threshold": self.op.threshold,
            "target_far": self.op.target_far,
            "model": self.model,
            **fields,
        }

    def _identity_event(self, d: Decision, frame: Frame) -> dict[str, Any]:
        known = d.name is not None
        return self._event(
            frame,
            "identify",
            "known" if known else "unknown",
            identity=d.name if known else "unknown",
            display_name=self._display(d.name),
            claimed=None,
            accepted=known,
            distance=None if np.isnan(d.distance) else round(d.distance, 4),
            score=None if np.isnan(d.distance) else round(self.op.score(d.distance), 4),
            frames=d.frames,
            votes=d.votes,
            track=d.track,
            box=[round(v, 1) for v in d.box],
        )

    @property
    def gallery(self) -> Any:
        return self.live.gallery

    def _display(self, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            return str(self.gallery.person(name).display_name)
        except FacegateError:
            return name

    def _publish_state(self, now: float, force: bool = False) -> None:
        present = tuple(sorted({str(t.decided.name) for t in self.tracker.tracks.values() if t.decided}))
        fleet = self.fleet.status if self.fleet is not None else None
        health = self._health_state()
        # a change of health (a refusal counted, say) is published too, at most every 5 s
        changed = health != self._health and now - self._state_at >= 5
        if (
            not force
            and not changed
            and present == self._present
            and now - self._state_at < 60
            and fleet is self._fleet_seen
        ):
            return
        self._fleet_seen, self._health = fleet, health
        self._present, self._state_at = present, now
        last = self._last_event
        self.link.publish_state(
            {
                "time": _iso(time.time()),
                "present": list(present),
                "known_present": any(p != "None" for p in present),
                "last": None
                if last is None
                else {k: last[k] for k in ("identity", "time", "event_type", "accepted") if k in last},
                "people_enrolled": self.live.count(),
                "frames": self.counts["frames"],
                "camera": self.camera,
                "gallery": self.live.problem or "ok",
                "outbox": self.link.outbox_error or "ok",
                "mqtt": {"refused": dict(health[0]), "errors": dict(health[1]), "dropped_events": health[2]},
                **({"fleet": fleet} if fleet is not None else {}),
            }
        )

    # --- commands ----------------------------------------------------------------

    def _offer(self, request: Request) -> bool:
        """Called in paho's thread: queue a request for the frame loop, or say it was dropped."""
        try:
            self.requests.put_nowait(request)
        except queue.Full:
            return False
        return True

    def _health_state(self) -> tuple[Any, ...]:
        return (
            tuple(sorted(self.refused.items())),
            tuple(sorted(self.link.errors.items())),
            self.link.dropped,
            self.live.problem,
            self.link.outbox_error,
        )

    def handle_requests(self) -> None:
        """Every queued request, each answered or refused; nothing in one can stop the loop."""
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            try:
                self._handle(request)
            except Exception as exc:  # a bug in one handler must not end the door
                self._refuse(request, CommandError(f"internal error: {type(exc).__name__}", "internal error"))
                log.exception("command %s failed", request.name)

    def _handle(self, request: Request) -> None:
        try:
            command = self.authority.parse(
                request.topic,
                request.payload,
                retained=request.retained,
                response_topic=request.reply_topic,
                correlation=request.correlation,
            )
            if not command.signed:
                self._admit_open(command)
        except CommandError as exc:
            self._refuse(request, exc)
            return
        try:
            self._run_command(command, request)
        except FacegateError as exc:
            self._reply(request, command, ok=False, error=str(exc))

    def _admit_open(self, command: Command) -> None:
        if not self.open_bucket.take():
            raise CommandError("too many unsigned requests; try again in a few seconds", "rate limited")
        if command.name == "verify" and len(self.verifies) >= self.config["commands"]["max_pending"]:
            raise CommandError("too many verify requests waiting; try again shortly", "busy")

    def _refuse(self, request: Request, exc: CommandError) -> None:
        self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
        self.refusal_log.warning("refused command %r: %s", request.name, exc)
        if self.error_replies.take():
            body = {"id": exc.request_id, "ok": False, "error": str(exc), "result": None}
            self.link.reply(request, body, exc.reply_to)

    def _run_command(self, command: Command, request: Request) -> None:
        timeout = self.config["decision"]["verify_timeout_s"]
        if command.name == "verify":
            # Unsigned, a name that is not enrolled is answered as one that does not match
            # (rejected, or timeout): who is enrolled is not told to anyone on the broker.
            if command.signed and command.args["claim"] not in self.gallery:
                raise FacegateError(f"{command.args['claim']!r} is not enrolled")
            deadline = time.monotonic() + command.args.get("timeout_s", timeout)
            self.verifies.append(PendingVerify(command, request, deadline))
        elif command.name == "list":
            people = [
                {"name": p.name, "display_name": p.display_name, "embeddings": p.embeddings}
                for p in self.gallery.people()
            ]
            self._reply(request, command, ok=True, result={"people": people})
        elif command.name == "remove":
            self.live.writable()
            self.gallery.remove(command.args["name"])
            self._reply(request, command, ok=True, result={"removed": command.args["name"]})
        elif command.name == "reload":
            self.reload()
            self._reply(request, command, ok=True, result={"people_enrolled": self.live.count()})
        elif command.name == "enroll":
            if "jpeg" in command.args:
                try:
                    rgb = load_rgb(io.BytesIO(command.args["jpeg"]), "args.jpeg")
                    sample = self.enroller.sample_from_rgb(rgb, "mqtt enroll")
                except (RefusedError, FacegateError) as exc:
                    raise FacegateError(f"enroll refused: {exc}") from None
                self._enroll(command, request, sample)
            else:
                self.enrolls.append(PendingEnroll(command, request, time.monotonic() + timeout))

    def _enroll(self, command: Command, request: Request, sample: Sample) -> None:
        self.live.writable()
        person = self.gallery.add(
            command.args["name"], [sample], display_name=command.args.get("display_name")
        )
        self._reply(request, command, ok=True, result={"name": person.name, "embeddings": person.embeddings})

    def _enroll_from_camera(self, faces: list[Face]) -> None:
        if not self.enrolls:
            return
        try:
            face = one_usable_face(faces, "camera frame")
        except RefusedError:
            return  # wait for a frame with exactly one usable face
        vector = self.encoder.embed(face.chip)[0]
        pending = self.enrolls.pop(0)
        sample = Sample(vector, "mqtt enroll from camera", {k: round(v, 4) for k, v in face.quality.items()})
        try:
            self._enroll(pending.command, pending.request, sample)
        except FacegateError as exc:
            self._reply(pending.request, pending.command, ok=False, error=str(exc))

    def _verify_votes(
        self, vector: np.ndarray, templates: Any, frame: Frame, face: Face
    ) -> list[dict[str, Any]]:
        events = []
        need, window = self.config["decision"]["votes_to_decide"], self.config["decision"]["window"]
        for pending in list(self.verifies):
            claim = pending.command.args["claim"]
            try:
                result = verify(templates, vector, claim, self.op)
                accepted_now, distance = result.accepted, result.distance
            except FacegateError:  # not enrolled (or removed meanwhile): a vote against
                accepted_now, distance = False, float("inf")
            pending.votes.append(accepted_now)
            pending.best = min(pending.best, distance)
            accepted = sum(pending.votes) >= need
            if not accepted and len(pending.votes) < window:
                continue
            self.verifies.remove(pending)
            event = self._event(
                frame,
                "verify",
                "verify_accepted" if accepted else "verify_rejected",
                identity=claim if accepted else "unknown",
                display_name=self._display(claim),
                claimed=claim,
                accepted=accepted,
                distance=round(pending.best, 4) if np.isfinite(pending.best) else None,
                score=round(self.op.score(pending.best), 4) if np.isfinite(pending.best) else 0.0,
                frames=len(pending.votes),
                votes=sum(pending.votes),
                request_id=pending.command.id,
                box=[round(v, 1) for v in face.detection.box],
            )
            events.append(event)
            self._reply(pending.request, pending.command, ok=True, result=event)
        return events

    def _expire(self, now: float) -> None:
        for pending in [p for p in self.verifies if now > p.deadline]:
            self.verifies.remove(pending)
            self._reply(
                pending.request,
                pending.command,
                ok=True,
                result={"accepted": False, "reason": "timeout", "frames": len(pending.votes)},
            )
        for enroll in [p for p in self.enrolls if now > p.deadline]:
            self.enrolls.remove(enroll)
            self._reply(enroll.request, enroll.command, ok=False, error="timeout: no single usable face seen")

    def _reply(
        self,
        request: Request,
        command: Command | None,
        ok: bool,
        error: str | None = None,
        result: Any = None,
    ) -> None:
        body = {"id": command.id if command else None, "ok": ok, "error": error, "result": result}
        self.link.reply(request, body, command.reply_to if command else None)

    # --- reload ----------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the config's decision and gate settings; the gallery reloads itself."""
        if self.config.path is None:
            return
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            raise FacegateError(f"reload refused: {exc}") from None
        changed = [s for s in RESTART_SECTIONS if new[s] != self.config[s]]
        if changed:
            log.warning("reload: changes to %s need a restart; not applied", ", ".join(changed))
        self.op = OperatingPoint.from_card(self.encoder.card, new["decision"]["far"])
        self.tracker.config = _tracker_config(new)
        g = new["gates"]
        self.perception.gates = Gates(g["min_eye_distance"], g["max_yaw"], g["min_sharpness"])
        live = {s: new[s] for s in ("decision", "gates", "idle")}
        self.config = Config({**self.config.data, **live}, self.config.path)
        log.info("reloaded %s: threshold %.4f at FAR %g", new.path, self.op.threshold, self.op.target_far)
