"""MQTT commands: parsing, checking and authentication.

A command is a JSON object published to ``{prefix}/{device}/command/{name}``::

    {"id": "req-42", "args": {...}, "reply_to": "optional/topic"}

``verify`` and ``list`` read; ``enroll``, ``remove`` and ``reload`` change
state. Those are disabled unless listed in ``commands.enabled``, and then
each request must also carry ``ts`` (unix seconds), a fresh ``nonce`` and an
``hmac``: hex HMAC-SHA256, keyed with the device's command secret, over
``name + "\\n" + canonical JSON of the payload without "hmac"`` (``sign``
below builds it). Broker login alone is not enough to open a door or add a
face: a request with a missing or wrong signature, a stale ``ts`` or a
replayed ``nonce`` gets an error reply and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import time
from typing import Any

from edge.config import STATE_CHANGING
from edge.errors import FacegateError
from edge.gallery import check_name

KNOWN = ("verify", "list", "enroll", "remove", "reload")
MAX_JPEG = 5 * 1024 * 1024


class CommandError(FacegateError):
    pass


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    id: str | None
    args: dict[str, Any]
    reply_to: str | None


def canonical(name: str, payload: dict[str, Any]) -> bytes:
    body = {k: v for k, v in payload.items() if k != "hmac"}
    return name.encode() + b"\n" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: bytes, name: str, payload: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """``payload`` with ``ts``, a random ``nonce`` and its ``hmac``: what a client sends."""
    import secrets

    signed = {**payload, "ts": now if now is not None else time.time(), "nonce": secrets.token_hex(16)}
    signed["hmac"] = hmac.new(secret, canonical(name, signed), hashlib.sha256).hexdigest()
    return signed


class Authority:
    """Checks commands against the config; remembers nonces to refuse replays."""

    def __init__(self, enabled: list[str], secret: bytes | None, max_skew_s: float) -> None:
        self.enabled = set(enabled)
        self.secret = secret
        self.max_skew_s = max_skew_s
        self._nonces: dict[str, float] = {}

    def parse(self, name: str, raw: bytes, now: float | None = None) -> Command:
        now = time.time() if now is None else now
        try:
            payload = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"payload is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise CommandError("payload must be a JSON object")
        request_id = payload.get("id")
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
            raise CommandError("id must be a string of at most 128 characters")
        if name not in KNOWN:
            raise CommandError(f"unknown command {name!r} (known: {', '.join(KNOWN)})")
        if name not in self.enabled:
            raise CommandError(f"command {name!r} is disabled on this device (commands.enabled)")
        if name in STATE_CHANGING:
            self._authenticate(name, payload, now)
        args = payload.get("args", {})
        if not isinstance(args, dict):
            raise CommandError("args must be a JSON object")
        reply_to = payload.get("reply_to")
        if reply_to is not None and (not isinstance(reply_to, str) or "+" in reply_to or "#" in reply_to):
            raise CommandError("reply_to must be a topic without wildcards")
        return Command(name, request_id, _check_args(name, args), reply_to)

    def _authenticate(self, name: str, payload: dict[str, Any], now: float) -> None:
        if self.secret is None:
            raise CommandError("this device has no command secret; state-changing commands are refused")
        given = payload.get("hmac")
        if not isinstance(given, str):
            raise CommandError(f"{name} changes state and needs an hmac (see docs/MQTT.md)")
        expected = hmac.new(self.secret, canonical(name, payload), hashlib.sha256).hexdigest()
        # Compare bytes: compare_digest refuses non-ASCII str (a fuzzed payload found it).
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            raise CommandError("bad hmac: not signed with this device's command secret")
        ts, nonce = payload.get("ts"), payload.get("nonce")
        if not isinstance(ts, (int, float)) or abs(now - float(ts)) > self.max_skew_s:
            raise CommandError(f"stale or missing ts (allowed skew {self.max_skew_s:g} s)")
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
            raise CommandError("missing nonce (8-128 characters)")
        self._nonces = {n: t for n, t in self._nonces.items() if now - t <= 2 * self.max_skew_s}
        if nonce in self._nonces:
            raise CommandError("replayed nonce")
        self._nonces[nonce] = now


def peek(raw: bytes) -> tuple[str | None, str | None]:
    """Best-effort ``id`` and ``reply_to`` of a refused request, to address the error reply."""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    request_id, reply_to = payload.get("id"), payload.get("reply_to")
    return (
        request_id if isinstance(request_id, str) and len(request_id) <= 128 else None,
        reply_to if isinstance(reply_to, str) else None,
    )


def _check_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    def name_arg(key: str) -> str:
        value = args.get(key)
        if not isinstance(value, str):
            raise CommandError(f"{name} needs args.{key} (a name)")
        try:
            return check_name(value)
        except FacegateError as exc:
            raise CommandError(str(exc)) from None

    if name == "verify":
        out: dict[str, Any] = {"claim": name_arg("claim")}
        timeout = args.get("timeout_s")
        if timeout is not None:
            if not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
                raise CommandError("args.timeout_s must be a number of seconds in (0, 60]")
            out["timeout_s"] = float(timeout)
        return out
    if name == "remove":
        return {"name": name_arg("name")}
    if name == "enroll":
        out = {"name": name_arg("name"), "display_name": args.get("display_name")}
        if args.get("jpeg") is not None:
            try:
                out["jpeg"] = base64.b64decode(args["jpeg"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise CommandError("args.jpeg must be base64") from None
            if len(out["jpeg"]) > MAX_JPEG:
                raise CommandError(f"args.jpeg is larger than {MAX_JPEG // (1024 * 1024)} MB")
        elif args.get("from_camera") is not True:
            raise CommandError("enroll needs args.jpeg (base64) or args.from_camera: true")
        return out
    return {}
