"""What the device publishes, typed in one place: events, its state, and replies.

docs/MQTT.md documents each field; these classes are the only places the
payloads are built, and ``as_dict`` is what goes on the wire (through
``facegate.wire.dumps``: strict JSON, never NaN or Infinity).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
import uuid
from typing import Any

SCHEMA = 1


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="milliseconds")


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


@dataclasses.dataclass(frozen=True)
class Origin:
    """Who decided, at which operating point: the same for every event of a running device."""

    device: str
    camera: str
    threshold: float
    target_far: float
    model: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Event:
    """One decided track (``type`` identify) or the answer to a verify request (verify)."""

    origin: Origin
    type: str  # identify | verify
    event_type: str  # known | unknown | verify_accepted | verify_rejected
    identity: str  # the enrolled name, or "unknown"
    display_name: str | None
    claimed: str | None
    accepted: bool
    distance: float | None  # the best distance among the agreeing frames
    score: float | None  # the card's calibrated P(same person | distance)
    frames: int
    votes: int
    box: tuple[float, ...]  # left, top, right, bottom in frame pixels
    frame_time: float
    track: int | None = None  # identify events
    request_id: str | None = None  # verify events
    event_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = dataclasses.field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        o = self.origin
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "event_id": self.event_id,
            "type": self.type,
            "event_type": self.event_type,
            "time": iso(self.ts),
            "ts": self.ts,
            "frame_time": self.frame_time,
            "device": o.device,
            "camera": o.camera,
            "threshold": o.threshold,
            "target_far": o.target_far,
            "model": o.model,
            "identity": self.identity,
            "display_name": self.display_name,
            "claimed": self.claimed,
            "accepted": self.accepted,
            "distance": _rounded(self.distance, 4),
            "score": _rounded(self.score, 4),
            "frames": self.frames,
            "votes": self.votes,
            "box": [round(v, 1) for v in self.box],
        }
        if self.type == "identify":
            out["track"] = self.track
        else:
            out["request_id"] = self.request_id
        return out


@dataclasses.dataclass(frozen=True)
class Health:
    """What went wrong at the device's edges, counted: published in ``state``."""

    refused: tuple[tuple[str, int], ...] = ()  # requests refused, by reason
    errors: tuple[tuple[str, int], ...] = ()  # failures at the MQTT client's boundary
    dropped_events: int = 0
    gallery: str | None = None  # what is wrong with the gallery file, if anything
    outbox: str | None = None  # why the outbox cannot be written, if it cannot
    frame_errors: int = 0  # frames skipped because their processing raised (a bug: see the log)


@dataclasses.dataclass(frozen=True)
class State:
    """The retained summary for dashboards."""

    present: tuple[str, ...]  # the known people at the camera now (decided tracks)
    last: Event | None
    people_enrolled: int
    frames: int
    camera: str
    health: Health
    fleet: dict[str, Any] | None = None
    strangers: int = 0  # faces at the camera now decided unknown
    ts: float = dataclasses.field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        last = self.last
        h = self.health
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "time": iso(self.ts),
            "present": list(self.present),
            "known_present": bool(self.present),
            "unknown_present": self.strangers,
            "last": None
            if last is None
            else {
                "identity": last.identity,
                "time": iso(last.ts),
                "event_type": last.event_type,
                "accepted": last.accepted,
            },
            "people_enrolled": self.people_enrolled,
            "frames": self.frames,
            "camera": self.camera,
            "gallery": h.gallery or "ok",
            "outbox": h.outbox or "ok",
            "frame_errors": h.frame_errors,
            "mqtt": {
                "refused": dict(h.refused),
                "errors": dict(h.errors),
                "dropped_events": h.dropped_events,
            },
        }
        if self.fleet is not None:
            out["fleet"] = self.fleet
        return out


def reply(command: str, request_id: str | None, ok: bool, error: str | None, result: Any) -> dict[str, Any]:
    """The answer to a request (on ``reply`` or the requester's reply topic)."""
    return {
        "schema": SCHEMA,
        "command": command,
        "id": request_id,
        "ok": ok,
        "error": error,
        "result": result,
    }
