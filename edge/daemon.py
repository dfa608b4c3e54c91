"""``facegate run``: camera frames in, decisions out over MQTT.

The loop, in one thread: frame -> (motion gate) -> detect -> (a decided face,
steady: followed by the detector alone, ``facegate.follow``) -> refine/landmarks/
align -> encode -> identify -> track -> decide -> publish. Frames are taken at
``camera.max_fps`` at most, except while a new face is being decided. Then, with
``camera.overlap``, the next frame is taken and detected in a second thread while
this one is finished (``facegate.lookahead``). MQTT runs in paho's own thread and
never blocks the loop (``facegate.mqtt``); commands arrive on a queue and are
handled between frames, so the gallery is only touched from the loop's thread.

Signals: SIGTERM/SIGINT stop cleanly after publishing ``offline``; SIGHUP
reloads the config file's decision and gate settings (camera, MQTT and
model changes need a restart, and say so) and the gallery.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from facegate.config import SECTIONS, Config, load_config
from facegate.decide import OperatingPoint, identify
from facegate.detect import Detection, reach_warning
from facegate.encoder import Encoder
from facegate.enroll import Enroller, fingerprint
from facegate.errors import FacegateError
from facegate.events import Event, Health, Origin, State
from facegate.files import hold_lock, read_only_fs, release_lock
from facegate.fleet import member_for
from facegate.follow import Follower
from facegate.gallery import Gallery, Templates
from facegate.livegallery import LiveGallery
from facegate.lookahead import Lookahead, Taken
from facegate.modelcard import ModelCard
from facegate.mqtt import Link
from facegate.notify import Notifier
from facegate.perception import Face, Gates, Perception, to_rgb
from facegate.ratelimit import LogLimiter
from facegate.requests import Desk, PendingVerify
from facegate.review import Limits, Recorder, ReviewError, ReviewStore
from facegate.sources import Frame, FrameSource, open_source, without_login
from facegate.track import Decision, Judge, Observation, Track, Tracker, TrackerConfig
from facegate.web import Console

log = logging.getLogger(__name__)

RELOADED_SECTIONS = ("decision", "gates", "idle")  # what SIGHUP applies; the rest needs a restart
RESTART_SECTIONS = tuple(s for s in SECTIONS if s not in RELOADED_SECTIONS)
# A frame whose processing raises is skipped, logged and counted (state ``frame_errors``):
# one face that meets a bug must not take the door down while it stands there, restarting
# every few seconds. This many failures in a row is not one frame: the daemon then ends, and
# systemd starts it afresh.
FAILED_FRAMES_IN_A_ROW = 25


def overlap_on(config: Config) -> bool:
    """``camera.overlap``; "auto" is on where this process may use more cores than the
    interpreters' ``models.threads``: the thread that detects ahead then has one of its own.
    Where the interpreters already take every core, the two threads only slowed each other
    (BENCHMARKS.md, "From a person appearing to their event")."""
    overlap = config.camera.overlap
    if isinstance(overlap, bool):
        return overlap
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores > config.models.threads


def _tracker_config(config: Config, op: OperatingPoint) -> TrackerConfig:
    """The tracker's settings; a face further than the operating threshold from the faces that
    decided its track is someone else in that place (``facegate.track``)."""
    d = config.decision
    return TrackerConfig(d.votes_to_decide, d.window, d.min_iou, d.max_missing, d.aggregate, op.threshold)


def _track_op(config: Config, card: ModelCard) -> OperatingPoint | None:
    """The threshold for a track's mean embedding (``decision.aggregate: mean``), else None."""
    d = config.decision
    return OperatingPoint.for_tracks(card, d.far, d.votes_to_decide) if d.aggregate == "mean" else None


class Daemon:
    def __init__(
        self, config: Config, source: FrameSource | None = None, notifier: Notifier | None = None
    ) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier()
        # One daemon per device state: a second (`facegate run` by hand beside the service)
        # would fight the first for the camera and run every signed command twice. Checked
        # before the camera when an earlier run left the outbox folder, so the error says so.
        self._lock: pathlib.Path | None = None
        if pathlib.Path(config.mqtt.outbox).is_dir():
            self._hold_lock()
        # The camera first: a device without one fails before anything is created on disk.
        self._open_source = (lambda: open_source(self.config)) if source is None else (lambda: source)
        self.source = self._open_source()
        if self._lock is None:
            pathlib.Path(config.mqtt.outbox).mkdir(parents=True, exist_ok=True, mode=0o700)
            self._hold_lock()
        self.encoder = Encoder(config.models.encoder, num_threads=config.models.threads)
        self.perception = Perception.from_config(config, self.encoder.card)
        self.enroller = Enroller(self.perception, self.encoder)
        self.op = OperatingPoint.from_card(self.encoder.card, config.decision.far)
        self.live = LiveGallery(config.gallery.path, fingerprint(self.encoder))
        self.tracker = Tracker(_tracker_config(config, self.op))
        self.track_op = _track_op(config, self.encoder.card)
        r, ha = config.review, config.homeassistant
        self.review = self._open_review() if r.enabled else None
        self.recorder = (
            Recorder(self.review, r.crops, ha.discovery and ha.unknown_face_image)
            if self.review is not None
            else None
        )
        self._purge_at = 0.0
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=30)
        self._last_frame: tuple[float, Frame] | None = None
        self._ahead: Lookahead | None = None  # while camera.overlap iterates the source
        self.follower = Follower(config.decision.recheck_s)
        self.desk = Desk(self)
        self.console = Console(self) if config.web.enabled else None
        model = {"name": self.encoder.card.name, "sha256": self.encoder.card.sha256}
        self.fleet = member_for(config, fingerprint(self.encoder)) if config.fleet.enabled else None
        self._fleet_seen: dict[str, Any] | None = None
        self.link = Link(config, self.desk.offer, model=model, fleet=self.fleet)
        self.origin = Origin(
            config.device.id, config.camera.name, self.op.threshold, self.op.target_far, model
        )
        self.camera = "ok"
        self.stopping = threading.Event()
        self.reload_wanted = threading.Event()
        self._thumb: np.ndarray | None = None
        self._since_detect = 0
        self._present: tuple[tuple[str, ...], int] = ((), 0)
        self._state_at = 0.0
        self._last_event: Event | None = None
        self._health_seen: Health | None = None
        self.counts = {
            "frames": 0,
            "detected_frames": 0,
            "skipped_idle": 0,
            "events": 0,
            "faces": 0,
            "followed": 0,
            "detected_ahead": 0,
            "ignored_strangers": 0,
            "frame_errors": 0,
        }
        self._failed_in_a_row = 0
        self._frame_error_log = LogLimiter(log, per_s=0.1, burst=3)

    def _hold_lock(self) -> None:
        """One daemon per device state (``{mqtt.outbox}.lock``). A lock that cannot be written
        (a full or read-only disk, where the daemon goes on from memory) is said and skipped."""
        outbox = pathlib.Path(self.config.mqtt.outbox)
        self._lock = outbox.with_name(outbox.name + ".lock")
        try:
            hold_lock(self._lock, f"this device's state ({outbox})")
        except FacegateError as exc:
            raise FacegateError(
                f"{exc}: stop it first (`sudo systemctl stop facegate` if it is the service), "
                "or give this one its own mqtt.outbox and device.id"
            ) from None
        except OSError as exc:
            log.warning("cannot lock %s (%s); not checking for a second daemon", self._lock, exc)

    def _open_review(self) -> ReviewStore | None:
        """The review store; on a read-only disk, none (logged): keeping strangers' faces is
        not worth a door that no longer decides."""
        r = self.config.review
        try:
            return ReviewStore.open(
                self.config.review_path,
                fingerprint(self.encoder),
                self.op.threshold,
                Limits(r.max_faces, r.max_age_days, r.events_keep_hours),
            )
        except ReviewError as exc:
            if not read_only_fs(self.config.review_path):
                raise
            log.error("review is off until the disk is writable again: %s", exc)
            return None

    # --- main loop ---------------------------------------------------------------

    def run(self, max_frames: int | None = None) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
            signal.signal(signal.SIGHUP, lambda *_: self.reload_wanted.set())
        self.link.set_people(self.live.templates().names)
        self.link.start()
        if self.console is not None:
            self.console.start()
        # Ready once camera, models and gallery are open (done in __init__) and
        # the broker answered, or after 10 s without it: the daemon keeps
        # deciding and queueing while the broker is down, and says so.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stopping.is_set():
            if self.link.connected.wait(0.1):
                break
        broker = "connected" if self.link.connected.is_set() else "unreachable, retrying"
        self.notifier.ready(f"watching {self.config.camera.source}; broker {broker}")
        period = 1.0 / self.config.camera.max_fps
        next_at = time.monotonic()
        status_at = time.monotonic()
        try:
            for taken in self._frames():
                self.notifier.watchdog()  # a hung camera or loop stops these, and systemd restarts us
                if self.stopping.is_set():
                    break
                if time.monotonic() - status_at > 60:
                    status_at = time.monotonic()
                    self.notifier.status(self._status())
                self.desk.handle()
                if self.console is not None:
                    self.console.run_jobs()
                if self.reload_wanted.is_set():
                    self.reload_wanted.clear()
                    with contextlib.suppress(FacegateError):  # logged; the running config stays
                        self.reload()
                try:
                    self.step(taken.frame, taken.detections)
                    self._failed_in_a_row = 0
                except Exception as exc:
                    self._frame_failed(taken.frame, exc)
                if max_frames is not None and self.counts["frames"] >= max_frames:
                    break
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0 and not self._deciding():
                    self.stopping.wait(delay)
                else:
                    next_at = time.monotonic()  # behind, or hurrying: do not try to catch up
            self.desk.handle()
        finally:
            if self.console is not None:
                self.console.stop()
            self.notifier.stopping()
            self.desk.stopping()
            self.link.stop()
            self._stop_ahead()
            self.source.close()
            self.live.close()
            if self.review is not None:
                self.review.close()
            if self.fleet is not None:
                self.fleet.cancel()
                self.fleet.sync.close()
            if self._lock is not None:
                release_lock(self._lock)
        log.info("stopped: %s", self.counts)
        return 0

    def _frame_failed(self, frame: Frame, exc: Exception) -> None:
        """A frame that raised: skipped, counted, logged with its traceback (a few a minute at
        most); re-raised when ``FAILED_FRAMES_IN_A_ROW`` frames in a row have failed."""
        self.counts["frame_errors"] += 1
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= FAILED_FRAMES_IN_A_ROW:
            log.critical("%d frames in a row failed; stopping, to be started afresh", self._failed_in_a_row)
            raise exc
        self._frame_error_log.error(
            "frame %d skipped: %s: %s", frame.index, type(exc).__name__, exc, exc_info=exc
        )

    def _frames(self) -> Iterator[Taken]:
        """The source's frames. A camera that fails is reported (state, systemd status)
        and reopened with backoff (1 to 30 s), feeding the watchdog meanwhile: the
        process is healthy, the camera is not. A source that simply ends stops the loop."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                for taken in self._taken():
                    if self.camera != "ok":
                        log.info("camera is back")
                        self._camera_state("ok")
                    delay = 1.0
                    yield taken
                return
            except FacegateError:
                raise  # a configuration problem: no retry will fix it
            except Exception as exc:
                if self.stopping.is_set():
                    # the camera closed under a read while stopping (from another thread, or
                    # the lookahead's read ahead): not a failure to report as the last state
                    log.info("camera read ended while stopping (%s: %s)", type(exc).__name__, exc)
                    return
                why = without_login(str(exc))  # an IP camera's URL may hold its password
                log.error("camera failed (%s: %s); reopening in %.0f s", type(exc).__name__, why, delay)
                self._camera_state(f"lost: {why}")
            finally:
                self._stop_ahead()
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping.is_set():
                self.notifier.watchdog()
                self.desk.handle()
                self.desk.expire(time.monotonic())  # a request waiting on frames gets its timeout
                if self.console is not None:
                    self.console.run_jobs()
                self.stopping.wait(0.2)
            delay = min(delay * 2, 30.0)
            with contextlib.suppress(Exception):
                self.source.close()
            try:
                self.source = self._open_source()
            except Exception as exc:
                log.error("camera still unavailable: %s", without_login(str(exc)))

    def _taken(self) -> Iterator[Taken]:
        """The source's frames as they are; with ``camera.overlap``, through a ``Lookahead``
        that ``step`` asks for the next frame while a face is being decided."""
        if not overlap_on(self.config):
            yield from (Taken(frame) for frame in self.source.frames())
            return
        self._ahead = Lookahead(
            self.source.frames(), lambda f: self.perception.detect_frame(f.image, f.layout)
        )
        while (taken := self._ahead.take()) is not None:
            yield taken

    def _stop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def _camera_state(self, state: str) -> None:
        self.camera = state
        self.notifier.status(f"camera {state}; {self._status()}")
        self._state_at = 0.0  # publish the change now
        self._publish_state(time.monotonic(), force=True)

    def _say_reach(self, frame: Frame) -> None:
        """At the first frame of a size: whether the detector can see a face far off in it."""
        height, width = frame.image.shape[:2]
        said = reach_warning(width, height, self.perception.detector.model_path.name)
        if said is not None:
            log.warning("%s", said)

    def step(self, frame: Frame, detections: list[Detection] | None = None) -> list[dict[str, Any]]:
        """One frame through the pipeline; returns the events it published. ``detections``:
        the frame's, when they were found ahead (``facegate.lookahead``)."""
        self.counts["frames"] += 1
        now = time.monotonic()
        self.desk.expire(now)
        if self._idle(frame):
            self.counts["skipped_idle"] += 1
            return []
        self.counts["detected_frames"] += 1
        if self._last_frame is None or self._last_frame[1].image.shape[:2] != frame.image.shape[:2]:
            self._say_reach(frame)
        self._last_frame = (now, frame)
        if detections is None:
            detections = self.perception.detect_frame(frame.image, frame.layout)
        else:
            self.counts["detected_ahead"] += 1
        # A decided face costs only its detection unless it is due a check (facegate.follow);
        # a waiting verify or camera enrollment wants fresh evidence from every face.
        tracks = self.tracker.match([d.box for d in detections])
        ran = (
            [True] * len(detections)
            if self.desk.waiting
            else self.follower.needs_pipeline(detections, tracks, now)
        )
        if self._ahead is not None and self._deciding(tracks, ahead=1):
            self._ahead.ask()  # the next frame, taken and detected while this one goes on
        faces: list[Face] = []
        if any(ran):  # the RGB copy only where a face goes through the pipeline
            rgb = to_rgb(frame.image, frame.layout)
            faces = [self.perception.face(rgb, d) for d, full in zip(detections, ran) if full]
        usable = [f for f in faces if f.rejected is None]
        self.counts["faces"] += len(detections)
        self.counts["followed"] += ran.count(False)
        vectors = self.encoder.embed(np.stack([f.chip for f in usable])) if usable else np.zeros((0, 128))
        templates = self.live.templates()
        self.link.set_people(templates.names)
        observations, k, looked = [], 0, iter(faces)
        voted: list[tuple[int, Face, np.ndarray]] = []  # (observation, face, embedding)
        for det, full in zip(detections, ran):
            face = next(looked) if full else None
            if face is None or face.rejected is not None:
                # followed, or refused by a gate: the track goes on, without a vote
                observations.append(Observation(det.box, None, usable=False))
                continue
            found = identify(templates, vectors[k], self.op)
            voted.append((len(observations), face, vectors[k]))
            observations.append(Observation(det.box, found.name, True, found.distance, vectors[k]))
            k += 1
        decisions = self.tracker.update(observations, self._judge(templates))
        self.follower.record(detections, observations, ran, self.tracker.assigned, now, self.tracker.tracks)
        if self.recorder is not None:
            for i, face, vector in voted:
                self.recorder.see(self.tracker.assigned[i].id, vector, face.chip, face.quality)
            self.recorder.keep_only(set(self.tracker.tracks))
        events = [e for e in (self._identity_event(d, frame) for d in decisions) if self._reported(e)]
        largest = int(np.argmax([f.detection.width for f in usable])) if usable else None
        verifies = self.desk.on_frame(
            faces,
            None if largest is None else usable[largest],
            None if largest is None else vectors[largest],
            templates,
            self._verify_event(frame),
        )
        if self.recorder is not None and largest is not None:
            for v in verifies:
                if v.accepted and v.claimed:
                    self.recorder.accepted(v.event_id, v.claimed, vectors[largest])
        events += verifies
        published = []
        for event in events:
            log.debug("frame %d: %s %s (%s)", frame.index, event.type, event.identity, event.event_id)
            payload = event.as_dict()
            self.link.publish_event(payload)
            published.append(payload)
            self._recent.append(payload)
            self._last_event = event
        self.counts["events"] += len(events)
        if self.recorder is not None and now >= self._purge_at:
            self.recorder.purge()  # the bounds hold even while nothing new arrives
            self._purge_at = now + 3600
        self._publish_state(now)
        return published

    def _judge(self, templates: Templates) -> Judge | None:
        """Names a track's mean embedding at the track threshold (aggregate "mean")."""
        op = self.track_op
        if op is None:
            return None

        def judge(mean: np.ndarray) -> tuple[str | None, float]:
            found = identify(templates, mean, op)
            return found.name, found.distance

        return judge

    def recent_events(self) -> list[dict[str, Any]]:
        """The last events published, newest first (the review page)."""
        return list(reversed(self._recent))

    def camera_faces(self) -> list[Face]:
        """The faces of the last frame the camera gave (within 2 s), through the whole pipeline:
        enrollment from the camera on the review page."""
        if self._last_frame is None or time.monotonic() - self._last_frame[0] > 2.0:
            return []
        frame = self._last_frame[1]
        return self.perception.faces(frame.image, frame.layout)

    def _reported(self, event: Event) -> bool:
        """Keep what review needs of a track's decision (``facegate.review``); False for an
        unknown face of a stranger the user chose to ignore, which is not reported."""
        if self.recorder is None or event.track is None:
            return True
        if not event.accepted:
            if self.recorder.unknown(event.track, event.event_id):
                if self.recorder.last_face is not None:
                    self.link.publish_unknown_face(self.recorder.last_face)
                return True
            self.counts["ignored_strangers"] += 1
            return False
        self.recorder.accepted(event.event_id, event.identity, self.recorder.vector(event.track))
        return True

    def _deciding(self, tracks: Sequence[Track | None] = (), ahead: int = 0) -> bool:
        """A new face is being decided (its first frames) or a request waits on faces: take the
        camera's frames as they come rather than at ``camera.max_fps``, so that the votes that
        decide it are frames apart, not periods apart. A face that stays undecided (refused by
        a gate, say) is paced again after ``2 * decision.window`` frames.

        ``tracks``, ``ahead=1``: the same for the frame after this one, asked before this
        frame's faces are in the tracker (``tracks``: what each of them continues; None, a
        new face), so that the lookahead can take that frame now."""
        if not self.config.decision.decide_at_camera_rate:
            return False
        if self.desk.waiting or any(t is None for t in tracks):
            return True
        limit = 2 * self.config.decision.window
        return any(t.decided is None and t.frames + ahead < limit for t in self.tracker.tracks.values())

    def _idle(self, frame: Frame) -> bool:
        """Skip detection when nothing moves, no face is tracked and nothing waits on a frame."""
        threshold = self.config.idle.motion_threshold
        image = frame.image
        thumb = image[::8, ::8, :3] if image.ndim == 3 else image[::8, ::8]  # not XBGR8888's fourth byte
        thumb = thumb.astype(np.float32)
        thumb = thumb.mean(axis=2) if thumb.ndim == 3 else thumb
        previous, self._thumb = self._thumb, thumb
        busy = self.tracker.tracks or self.desk.waiting
        if threshold <= 0 or previous is None or previous.shape != thumb.shape or busy:
            self._since_detect = 0
            return False
        self._since_detect += 1
        if self._since_detect >= self.config.idle.check_every:
            self._since_detect = 0
            return False
        return float(np.abs(thumb - previous).mean()) < threshold

    def _status(self) -> str:
        c = self.counts
        broker = "connected" if self.link.connected.is_set() else f"DOWN, {self.link.pending} events queued"
        return f"{c['frames']} frames, {c['events']} events, broker {broker}"

    # --- events ----------------------------------------------------------------

    def _identity_event(self, d: Decision, frame: Frame) -> Event:
        known = d.name is not None
        distance = None if np.isnan(d.distance) else d.distance
        origin = self.origin
        if self.track_op is not None:  # decided from a mean embedding, at the track threshold
            origin = dataclasses.replace(origin, threshold=self.track_op.threshold)
        return Event(
            origin,
            "identify",
            "known" if known else "unknown",
            identity=d.name or "unknown",
            display_name=self._display(d.name),
            claimed=None,
            accepted=known,
            distance=distance,
            # the card's score is fitted on single faces; a mean's distance has no calibrated score
            score=None if distance is None or self.track_op is not None else self.op.score(distance),
            frames=d.frames,
            votes=d.votes,
            box=tuple(d.box),
            frame_time=frame.wall,
            track=d.track,
        )

    def _verify_event(self, frame: Frame) -> Callable[[PendingVerify, Face, bool], Event]:
        def build(pending: PendingVerify, face: Face, accepted: bool) -> Event:
            votes = pending.votes
            best = votes.best if np.isfinite(votes.best) else None
            return Event(
                self.origin,
                "verify",
                "verify_accepted" if accepted else "verify_rejected",
                identity=votes.claim if accepted else "unknown",
                display_name=self._display(votes.claim),
                claimed=votes.claim,
                accepted=accepted,
                distance=best,
                score=0.0 if best is None else self.op.score(best),
                frames=len(votes.votes),
                votes=sum(votes.votes),
                box=tuple(face.detection.box),
                frame_time=frame.wall,
                request_id=pending.command.id,
            )

        return build

    @property
    def gallery(self) -> Gallery:
        return self.live.gallery

    def _display(self, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            return str(self.gallery.person(name).display_name)
        except FacegateError:
            return name

    def _publish_state(self, now: float, force: bool = False) -> None:
        decided = [t.decided for t in self.tracker.tracks.values() if t.decided is not None]
        present = tuple(sorted({d.name for d in decided if d.name is not None}))
        strangers = sum(d.name is None for d in decided)
        fleet = self.fleet.status if self.fleet is not None else None
        health = self._health()
        # a change of health (a refusal counted, say) is published too, at most every 5 s
        changed = health != self._health_seen and now - self._state_at >= 5
        if (
            not force
            and not changed
            and (present, strangers) == self._present
            and now - self._state_at < 60
            and fleet is self._fleet_seen
        ):
            return
        self._fleet_seen, self._health_seen = fleet, health
        self._present, self._state_at = (present, strangers), now
        state = State(
            present,
            self._last_event,
            self.live.count(),
            self.counts["frames"],
            self.camera,
            health,
            fleet,
            strangers,
        )
        self.link.publish_state(state.as_dict())

    def _health(self) -> Health:
        return Health(
            tuple(sorted(self.desk.refused.items())),
            tuple(sorted(self.link.errors.items())),
            self.link.dropped,
            self.live.problem,
            self.link.outbox_error,
            self.counts["frame_errors"],
        )

    # --- reload ----------------------------------------------------------------

    def reload(self) -> list[str]:
        """Re-read the config's decision, gate and idle settings (the gallery reloads itself);
        returns the sections that changed in the file but need a restart."""
        if self.config.path is None:
            return []
        try:
            new = load_config(self.config.path)
            # everything that can refuse the new settings, before anything is changed
            op = OperatingPoint.from_card(self.encoder.card, new.decision.far)
            track_op = _track_op(new, self.encoder.card)
        except FacegateError as exc:  # ConfigError, or a FAR or track mean the card has no threshold for
            log.error("reload refused, keeping the running config: %s", exc)
            raise FacegateError(f"reload refused: {exc}") from None
        changed = [s for s in RESTART_SECTIONS if getattr(new, s) != getattr(self.config, s)]
        if changed:
            log.warning("reload: changes to %s need a restart; not applied", ", ".join(changed))
        self.op = op
        self.origin = dataclasses.replace(self.origin, threshold=op.threshold, target_far=op.target_far)
        self.tracker.config = _tracker_config(new, op)
        self.track_op = track_op
        self.follower.recheck_s = new.decision.recheck_s
        g = new.gates
        self.perception.gates = Gates(g.min_eye_distance, g.max_yaw, g.min_sharpness)
        self.config = dataclasses.replace(self.config, **{s: getattr(new, s) for s in RELOADED_SECTIONS})
        log.info("reloaded %s: threshold %.4f at FAR %g", new.path, self.op.threshold, self.op.target_far)
        return changed
