"""MQTT commands: parsing, checking, authentication and freshness.

A command is a JSON object published to ``{prefix}/{device}/command/{name}``::

    {"id": "req-42", "args": {...}, "reply_to": "facegate/door1/reply/app1"}

Only ``verify`` may be sent unsigned (it decides nothing by itself: only a real
face in front of the camera can make it accept, and its answer for a name that
is not enrolled is the same as for one that does not match). ``list`` tells who
is enrolled, and ``enroll``, ``remove`` and ``reload`` change state, as do the
review commands (``review`` lists the unknown faces; ``review_assign``,
``review_ignore``, ``review_delete`` and ``correct`` act on them): each of
them must be enabled in ``commands.enabled`` and signed. A signed request
carries ``ts`` (unix seconds), a fresh ``nonce`` and an ``hmac``: hex
HMAC-SHA256, keyed with the device's command secret, over::

    facegate-command/2 \\n {device id} \\n {full topic} \\n {canonical JSON of the rest}

(``sign`` below builds it). So a request made for one door does nothing on
another door that shares the secret, nor as another command. Freshness
survives restarts: every accepted nonce is written to a private file
(``NonceStore``) before the command runs, and a ``ts`` older than the newest
accepted one minus ``commands.max_skew_s`` is refused, so neither a captured
request replayed after a restart nor a retained one re-delivered on reconnect
runs twice. Retained commands are refused outright.

Every refusal is a ``CommandError`` with a ``reason`` (counted in ``state``)
and, where the request named them validly, the ``id`` and reply topic to
answer on.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import pathlib
import re
import secrets
import time
from typing import Any

from facegate.config import COMMANDS, UNSIGNED_COMMANDS
from facegate.errors import FacegateError
from facegate.files import write_private_json
from facegate.gallery import NAME_PATTERN, printable_display_name
from facegate.wire import Fields, PayloadError, check_correlation, check_reply_topic, parse_object

log = logging.getLogger(__name__)

KNOWN = COMMANDS
SIGNATURE_VERSION = "facegate-command/2"
ID_PATTERN = re.compile(r"[\x20-\x7e]{1,128}")  # printable ASCII
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
HMAC_PATTERN = re.compile(r"[0-9a-f]{64}")
EVENT_ID = re.compile(r"[0-9a-f]{32}")  # facegate.events.Event.event_id
MAX_SKEW_S = 3600.0


class CommandError(FacegateError):
    """A refused command. ``reason`` is a short tag for counting; ``request_id`` and
    ``reply_to`` are the request's own, when they were valid, to address the error reply."""

    def __init__(
        self,
        message: str,
        reason: str = "refused",
        request_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason, self.request_id, self.reply_to = reason, request_id, reply_to


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    id: str | None
    args: dict[str, Any]
    reply_to: str | None
    signed: bool = False


def canonical(device: str, topic: str, payload: dict[str, Any]) -> bytes:
    body = {k: v for k, v in payload.items() if k != "hmac"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{SIGNATURE_VERSION}\n{device}\n{topic}\n{text}".encode()


PUBLISHED_SIGNATURE_VERSION = "facegate-published/1"
_MAC_FIELD = b',"hmac":"'


def _published_mac(secret: bytes, device: str, topic: str, body: bytes) -> bytes:
    prefix = f"{PUBLISHED_SIGNATURE_VERSION}\n{device}\n{topic}\n".encode()
    return hmac.new(secret, prefix + body, hashlib.sha256).hexdigest().encode()


def sign_published(secret: bytes, device: str, topic: str, body: bytes) -> bytes:
    """An event or reply as the device publishes it when it holds a command secret: the JSON
    object ``body`` with one more field, ``"hmac"``, last, over these exact bytes, the device
    and the topic. Byte for byte, so a consumer in any language checks it without
    re-serialising JSON: cut the last field off, put the ``}`` back, compute the HMAC."""
    if not (body.startswith(b"{") and body.endswith(b"}")) or body == b"{}":
        raise ValueError("only a non-empty JSON object is signed")
    return body[:-1] + _MAC_FIELD + _published_mac(secret, device, topic, body) + b'"}'


def verify_published(secret: bytes | str, device: str, topic: str, payload: bytes) -> bool:
    """Whether ``payload``, received on ``topic``, was published by ``device`` holding
    ``secret`` (``sign_published``). A consumer that acts on events (a lock) checks this,
    then drops stale events (``time``) and repeated ones (``event_id``)."""
    key = secret.encode() if isinstance(secret, str) else secret
    head, found, tail = payload.rpartition(_MAC_FIELD)
    if not found or len(tail) != 66 or not tail.endswith(b'"}'):
        return False
    return hmac.compare_digest(tail[:64], _published_mac(key, device, topic, head + b"}"))


def sign(
    secret: bytes | str, device: str, topic: str, payload: dict[str, Any], now: float | None = None
) -> dict[str, Any]:
    """``payload`` with ``ts``, a random ``nonce`` and its ``hmac``: what a client sends to
    ``topic`` (the full command topic) of the device ``device``."""
    key = secret.encode() if isinstance(secret, str) else secret
    signed = {**payload, "ts": now if now is not None else time.time(), "nonce": secrets.token_hex(16)}
    signed["hmac"] = hmac.new(key, canonical(device, topic, signed), hashlib.sha256).hexdigest()
    return signed


class NonceStore:
    """The nonces of accepted signed commands, kept in a private file until their ``ts`` is
    too old to pass, and the newest accepted ``ts`` (``high``). A ``ts`` older than
    ``high - skew`` is refused even if the device clock went back (a Pi without a clock
    that booted before NTP), so a nonce forgotten is a nonce that can no longer pass.
    Written (fsynced, atomically) before the command runs: a crash never forgets one."""

    def __init__(self, path: pathlib.Path | None, skew: float, max_entries: int = 4096) -> None:
        self.path, self.skew, self.max_entries = path, skew, max_entries
        self.high = 0.0
        self.nonces: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                self.high = float(doc["high"])
                self.nonces = {str(n): float(t) for n, t in doc["nonces"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                # Unreadable: refuse every signed command until a newer ts than any possible
                # replay arrives would be guesswork; instead start from "now" (below).
                log.error("%s: unreadable command nonce file (%s); refusing ts older than now", path, exc)
                self.high = time.time()

    def admit(self, nonce: str, ts: float, now: float) -> None:
        reference = max(now, self.high)
        if ts < reference - self.skew or ts > now + self.skew:
            raise CommandError(
                f"stale ts: {ts:.3f} is more than commands.max_skew_s ({self.skew:g} s) from the "
                f"device clock ({now:.3f}) or older than a command it already ran",
                "stale",
            )
        self.nonces = {n: t for n, t in self.nonces.items() if t >= reference - self.skew}
        if nonce in self.nonces:
            raise CommandError("replayed nonce: this request already ran", "replay")
        if len(self.nonces) >= self.max_entries:
            raise CommandError(
                f"more than {self.max_entries} signed commands within commands.max_skew_s; try later", "busy"
            )
        nonces, high = {**self.nonces, nonce: ts}, max(self.high, ts)
        if self.path is not None:
            try:
                write_private_json(self.path, {"high": high, "nonces": nonces}, durable=True)
            except OSError as exc:
                raise CommandError(
                    f"cannot record the nonce in {self.path} ({exc.strerror}); refused, since it could "
                    "be replayed after a restart",
                    "storage",
                ) from None
        self.nonces, self.high = nonces, high


class Authority:
    """Turns a request off the broker into a checked ``Command`` or a ``CommandError``."""

    def __init__(
        self,
        enabled: list[str],
        secret: bytes | None,
        max_skew_s: float,
        device: str = "facegate",
        base: str = "facegate/facegate",
        nonces: NonceStore | None = None,
        max_bytes: int = 1 << 20,
        max_jpeg: int | None = None,
    ) -> None:
        if not (0 < max_skew_s <= MAX_SKEW_S and math.isfinite(max_skew_s)):
            raise FacegateError(f"commands.max_skew_s must be in (0, {MAX_SKEW_S:g}]")
        self.enabled = set(enabled)
        self.secret = secret
        self.max_skew_s = max_skew_s
        self.device, self.base = device, base
        self.reply_base = f"{base}/reply"
        self.nonces = nonces if nonces is not None else NonceStore(None, max_skew_s)
        self.max_bytes = max_bytes
        self.max_jpeg = max_jpeg if max_jpeg is not None else max_bytes * 3 // 4

    def topic(self, name: str) -> str:
        return f"{self.base}/command/{name}"

    def parse(
        self,
        topic: str,
        raw: bytes,
        now: float | None = None,
        retained: bool = False,
        response_topic: object = None,
        correlation: object = None,
    ) -> Command:
        now = time.time() if now is None else now
        name = topic[len(self.base) + len("/command/") :] if topic.startswith(self.base + "/command/") else ""
        try:
            fields = parse_object(raw, self.max_bytes, "payload", empty={})
        except PayloadError as exc:
            raise CommandError(str(exc), exc.reason) from None
        request_id, reply_to = self._address(fields, response_topic)
        try:
            return self._checked(name, topic, fields, now, retained, correlation, request_id, reply_to)
        except PayloadError as exc:
            raise CommandError(str(exc), exc.reason, request_id, reply_to) from None
        except CommandError as exc:
            exc.request_id, exc.reply_to = request_id, reply_to
            raise

    def _address(self, fields: Fields, response_topic: object) -> tuple[str | None, str | None]:
        """The id and reply topic, when valid: an error reply can then reach the requester."""
        try:
            request_id = fields.string("id", 128, ID_PATTERN, "printable ASCII, 1-128 characters", False)
        except PayloadError as exc:
            raise CommandError(str(exc), exc.reason) from None
        reply_to = None
        for candidate in (response_topic, fields.raw("reply_to")):
            if candidate is not None:
                try:
                    reply_to = check_reply_topic(candidate, self.reply_base)
                except PayloadError as exc:
                    raise CommandError(str(exc), exc.reason, request_id) from None
                break
        return request_id, reply_to

    def _checked(
        self,
        name: str,
        topic: str,
        fields: Fields,
        now: float,
        retained: bool,
        correlation: object,
        request_id: str | None,
        reply_to: str | None,
    ) -> Command:
        if name not in KNOWN:
            raise CommandError(
                f"unknown command {name[:40]!r} (known: {', '.join(KNOWN)})", "unknown command"
            )
        if name not in self.enabled:
            raise CommandError(f"command {name!r} is disabled on this device (commands.enabled)", "disabled")
        if retained:
            raise CommandError(
                "retained commands are refused: a command is for now, not for later", "retained"
            )
        check_correlation(correlation)
        fields.only(("id", "args", "reply_to", "ts", "nonce", "hmac"))
        signed = fields.present("hmac")
        if signed or name not in UNSIGNED_COMMANDS:  # a signed verify is checked too
            self._authenticate(name, topic, fields, now)
        args = _check_args(name, fields.object("args", required=False), self.max_jpeg)
        return Command(name, request_id, args, reply_to, signed)

    def _authenticate(self, name: str, topic: str, fields: Fields, now: float) -> None:
        if self.secret is None:
            raise CommandError(f"{name} needs a signature and this device has no command secret", "unsigned")
        if not fields.present("hmac"):
            raise CommandError(
                f"{name} must be signed: add ts, nonce and hmac (see docs/MQTT.md)", "unsigned"
            )
        given = fields.string("hmac", 64, HMAC_PATTERN, "64 lowercase hex digits")
        assert given is not None
        expected = hmac.new(
            self.secret, canonical(self.device, topic, fields.data), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise CommandError(
                "bad hmac: not signed with this device's command secret for this device and topic",
                "bad signature",
            )
        ts = fields.number("ts", 0, 1e11)
        nonce = fields.string("nonce", 128, NONCE_PATTERN, "16-128 letters, digits, '_' or '-'")
        assert ts is not None and nonce is not None
        self.nonces.admit(nonce, ts, now)


def _check_args(name: str, args: Fields, max_jpeg: int) -> dict[str, Any]:
    person = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    if name == "verify":
        args.only(("claim", "timeout_s"))
        out: dict[str, Any] = {"claim": args.string("claim", 64, NAME_PATTERN, person)}
        timeout = args.number("timeout_s", 0.1, 60, required=False)
        if timeout is not None:
            out["timeout_s"] = timeout
        return out
    if name == "remove":
        args.only(("name",))
        return {"name": args.string("name", 64, NAME_PATTERN, person)}
    if name == "enroll":
        args.only(("name", "display_name", "jpeg", "from_camera"))
        out = {
            "name": args.string("name", 64, NAME_PATTERN, person),
            "display_name": args.string(
                "display_name", 128, None, "1-128 printable characters", False, printable_display_name
            ),
        }
        if args.present("jpeg"):
            text = args.string("jpeg", max_jpeg * 4 // 3 + 4, None, f"base64 of at most {max_jpeg} bytes")
            try:
                out["jpeg"] = base64.b64decode(str(text), validate=True)
            except (binascii.Error, ValueError):
                raise CommandError("args.jpeg must be base64", "bad field") from None
        elif args.boolean("from_camera", required=False) is not True:
            raise CommandError("enroll needs args.jpeg (base64) or args.from_camera: true", "bad field")
        return out
    if name in ("review_assign", "review_ignore", "review_delete"):
        args.only(("group", "name", "display_name") if name == "review_assign" else ("group",))
        out = {"group": args.integer("group", 1, 2**53)}
        if name == "review_assign":
            out["name"] = args.string("name", 64, NAME_PATTERN, person)
            out["display_name"] = args.string(
                "display_name", 128, None, "1-128 printable characters", False, printable_display_name
            )
        return out
    if name == "correct":
        args.only(("event_id", "name"))
        return {
            "event_id": args.string("event_id", 64, EVENT_ID, "an event_id: 32 lowercase hex digits"),
            "name": args.string("name", 64, NAME_PATTERN, person, False),
        }
    args.only(())
    return {}
