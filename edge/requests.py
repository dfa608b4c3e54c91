"""The daemon's commands: queued from paho's thread, checked, run between frames, answered.

``Desk.offer`` runs in paho's thread and only queues (a bounded queue: a flood
is dropped and counted). Everything else runs in the frame loop's thread, so
the gallery is only touched from there: ``handle`` checks each request with
``facegate.commands.Authority`` and runs it; ``on_frame`` gives the frame's
largest usable face to the waiting verify requests and camera enrollments;
``expire`` answers those that waited too long. Nothing in one request can stop
the loop: a handler that fails answers "internal error", logs and counts it.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from facegate.commands import Authority, Command, CommandError, NonceStore
from facegate.config import REVIEW_COMMANDS, Config
from facegate.decide import OperatingPoint, VerifyVotes
from facegate.encoder import Encoder
from facegate.enroll import Enroller, RefusedError, add_samples, one_usable_face
from facegate.errors import FacegateError
from facegate.events import Event, reply
from facegate.fleet.store import refuse_if_fleet_owned
from facegate.gallery import Gallery, Sample, Templates
from facegate.images import load_rgb
from facegate.livegallery import LiveGallery
from facegate.mqtt import Link, Request
from facegate.perception import Face
from facegate.ratelimit import Bucket, LogLimiter
from facegate.review import ReviewStore, correct

log = logging.getLogger(__name__)

QUEUE_MAX = 256  # requests waiting for the frame loop; more are dropped and counted


class Host(Protocol):
    """What the desk needs of the daemon it serves (``facegate.daemon.Daemon``)."""

    config: Config
    link: Link
    live: LiveGallery
    enroller: Enroller
    encoder: Encoder
    op: OperatingPoint
    review: ReviewStore | None

    @property
    def gallery(self) -> Gallery: ...

    def reload(self) -> list[str]: ...


@dataclasses.dataclass
class PendingVerify:
    command: Command
    request: Request
    deadline: float
    votes: VerifyVotes


@dataclasses.dataclass
class PendingEnroll:
    command: Command
    request: Request
    deadline: float


class Desk:
    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        config = daemon.config
        c = config.commands
        self.authority = Authority(
            c.enabled,
            config.command_secret,
            c.max_skew_s,
            device=config.device.id,
            base=f"{config.mqtt.prefix}/{config.device.id}",
            nonces=NonceStore(config.nonce_file, c.max_skew_s),
            max_bytes=config.mqtt.max_payload,
        )
        # What stays open to anyone on the broker (unsigned verify) is rate-limited, and so are
        # the answers and log lines for refused requests: a flood costs the loop little.
        self.open_bucket = Bucket(c.rate_per_minute / 60.0, min(c.rate_per_minute, 10))
        self.error_replies = Bucket(10.0, 20)
        self.refusal_log = LogLimiter(log, per_s=1.0, burst=10)
        self.refused: dict[str, int] = {}
        self.queue: queue.Queue[Request] = queue.Queue(QUEUE_MAX)
        self.verifies: list[PendingVerify] = []
        self.enrolls: list[PendingEnroll] = []

    @property
    def waiting(self) -> bool:
        """Requests that need the next frames (the motion gate must not skip them)."""
        return bool(self.verifies or self.enrolls)

    def offer(self, request: Request) -> bool:
        """Called in paho's thread: queue a request for the frame loop, or say it was dropped."""
        try:
            self.queue.put_nowait(request)
        except queue.Full:
            return False
        return True

    # --- in the frame loop ------------------------------------------------------------

    def handle(self) -> None:
        """Every queued request, each answered or refused."""
        while True:
            try:
                request = self.queue.get_nowait()
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
            self._run(command, request)
        except FacegateError as exc:
            self.answer(request, command, ok=False, error=str(exc))

    def _admit_open(self, command: Command) -> None:
        if not self.open_bucket.take():
            raise CommandError("too many unsigned requests; try again in a few seconds", "rate limited")
        if command.name == "verify" and len(self.verifies) >= self.daemon.config.commands.max_pending:
            raise CommandError("too many verify requests waiting; try again shortly", "busy")

    def _refuse(self, request: Request, exc: CommandError) -> None:
        self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
        self.refusal_log.warning("refused command %r: %s", request.name, exc)
        if self.error_replies.take():
            body = reply(request.name, exc.request_id, False, str(exc), None)
            self.daemon.link.reply(request, body, exc.reply_to)

    def _run(self, command: Command, request: Request) -> None:
        d = self.daemon
        decision = d.config.decision
        if command.name == "verify":
            # Unsigned, a name that is not enrolled is answered as one that does not match
            # (rejected, or timeout): who is enrolled is not told to anyone on the broker.
            if command.signed and command.args["claim"] not in d.gallery:
                raise FacegateError(f"{command.args['claim']!r} is not enrolled")
            deadline = time.monotonic() + command.args.get("timeout_s", decision.verify_timeout_s)
            votes = VerifyVotes(command.args["claim"], decision.votes_to_decide, decision.window)
            self.verifies.append(PendingVerify(command, request, deadline, votes))
        elif command.name == "list":
            people = [
                {"name": p.name, "display_name": p.display_name, "embeddings": p.embeddings}
                for p in d.gallery.people()
            ]
            self.answer(request, command, ok=True, result={"people": people})
        elif command.name == "remove":
            d.live.writable()
            refuse_if_fleet_owned(d.gallery, command.args["name"])
            d.gallery.remove(command.args["name"])
            self.answer(request, command, ok=True, result={"removed": command.args["name"]})
        elif command.name == "reload":
            restart = d.reload()
            result = {"people_enrolled": d.live.count(), "needs_restart": restart}
            self.answer(request, command, ok=True, result=result)
        elif command.name in REVIEW_COMMANDS:
            self.answer(request, command, ok=True, result=self._review(command))
        elif command.name == "enroll":
            refuse_if_fleet_owned(d.gallery, command.args["name"], "enroll")  # before any photo or frame
            if "jpeg" in command.args:
                try:
                    rgb = load_rgb(io.BytesIO(command.args["jpeg"]), "args.jpeg")
                    sample = d.enroller.sample_from_rgb(rgb, "mqtt enroll")
                except (RefusedError, FacegateError) as exc:
                    raise FacegateError(f"enroll refused: {exc}") from None
                self._enroll(command, request, sample)
            else:
                deadline = time.monotonic() + decision.verify_timeout_s
                self.enrolls.append(PendingEnroll(command, request, deadline))

    def _review(self, command: Command) -> dict[str, Any]:
        """The review commands (``facegate.review``); what each did, for the reply."""
        d, args = self.daemon, command.args
        if d.review is None:
            raise FacegateError("review is off on this device (review.enabled)")
        if command.name == "review":
            return {"groups": [g.as_dict() for g in d.review.groups()]}
        if command.name == "correct":
            d.live.writable()
            return correct(d.review, d.gallery, args["event_id"], d.op, args.get("name"))
        group = args["group"]
        if command.name == "review_assign":
            d.live.writable()
            person, alike = d.review.assign(group, args["name"], d.gallery, args.get("display_name"), d.op)
            return {"group": group, "name": person.name, "embeddings": person.embeddings, "warnings": alike}
        if command.name == "review_ignore":
            d.review.ignore(group)
            return {"group": group, "ignored": True}
        d.review.delete(group)
        return {"group": group, "deleted": True}

    def _enroll(self, command: Command, request: Request, sample: Sample) -> None:
        d = self.daemon
        d.live.writable()
        args = command.args
        person, alike = add_samples(d.gallery, args["name"], [sample], d.op, args.get("display_name"))
        result = {"name": person.name, "embeddings": person.embeddings, "warnings": alike}
        self.answer(request, command, ok=True, result=result)

    def on_frame(
        self,
        faces: list[Face],
        largest: Face | None,
        vector: np.ndarray | None,
        templates: Templates,
        verify_event: Callable[[PendingVerify, Face, bool], Event],
    ) -> list[Event]:
        """Votes of this frame's largest usable face for each waiting verify, and a camera
        enrollment if the frame has exactly one usable face; returns the decided verifies."""
        if largest is None or vector is None:
            return []
        events = []
        for pending in list(self.verifies):
            decided = pending.votes.add(templates, vector, self.daemon.op)
            if decided is None:
                continue
            self.verifies.remove(pending)
            event = verify_event(pending, largest, decided)
            events.append(event)
            self.answer(pending.request, pending.command, ok=True, result=event.as_dict())
        self._enroll_from_camera(faces)
        return events

    def _enroll_from_camera(self, faces: list[Face]) -> None:
        if not self.enrolls:
            return
        try:
            face = one_usable_face(faces, "camera frame")
        except RefusedError:
            return  # wait for a frame with exactly one usable face
        vector = self.daemon.encoder.embed(face.chip)[0]
        pending = self.enrolls.pop(0)
        sample = Sample(vector, "mqtt enroll from camera", {k: round(v, 4) for k, v in face.quality.items()})
        try:
            self._enroll(pending.command, pending.request, sample)
        except FacegateError as exc:
            self.answer(pending.request, pending.command, ok=False, error=str(exc))

    def expire(self, now: float) -> None:
        for pending in [p for p in self.verifies if now > p.deadline]:
            self.verifies.remove(pending)
            result = {"accepted": False, "reason": "timeout", "frames": len(pending.votes.votes)}
            self.answer(pending.request, pending.command, ok=True, result=result)
        for enroll in [p for p in self.enrolls if now > p.deadline]:
            self.enrolls.remove(enroll)
            self.answer(enroll.request, enroll.command, ok=False, error="timeout: no single usable face seen")

    def stopping(self) -> None:
        for pending in self.verifies:
            self.answer(pending.request, pending.command, ok=False, error="daemon stopping")

    def answer(
        self, request: Request, command: Command, ok: bool, error: str | None = None, result: Any = None
    ) -> None:
        self.daemon.link.reply(request, reply(request.name, command.id, ok, error, result), command.reply_to)
