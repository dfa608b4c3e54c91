"""The one boundary where bytes from the network become Python values.

Everything the daemon hears over MQTT (commands, fleet entries, the fleet
manifest) is untrusted: anyone who can publish on the broker can send it.
``parse`` turns a payload into a JSON value under hard limits (size, UTF-8,
nesting depth, strict JSON: no ``NaN``/``Infinity``, no duplicate keys), and
``Fields`` reads an object's fields with their type, range and form checked,
so handlers only ever see checked values. Every refusal is a ``PayloadError``
with a short ``reason`` (counted in the daemon's ``state``) and a message
that names the field.

``dumps`` is the other direction: every JSON facegate publishes or prints
passes through it, so none holds ``NaN`` or ``Infinity`` (a strict parser such
as JavaScript's ``JSON.parse`` refuses them); a number that is not finite is
written ``null``.

``guarded`` wraps the MQTT client's callbacks: no exception from a handler
reaches paho's network thread (where it would stop the thread, and with it
every event, while the camera loop kept feeding the watchdog).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from facegate.errors import FacegateError

log = logging.getLogger(__name__)

MAX_DEPTH = 16  # facegate's own payloads nest 3 deep
MAX_TOPIC_BYTES = 256
MAX_CORRELATION_BYTES = 128
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class PayloadError(FacegateError):
    """A payload or field refused at the boundary; ``reason`` is a short tag for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _no_constants(name: str) -> Any:
    raise PayloadError("not strict JSON", f"{name} is not a JSON number (strict JSON only)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise PayloadError("not strict JSON", f"{text[:20]} is out of range for a number")
    return value


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:  # beyond 64 bits; Python would build it (or refuse at 4300 digits)
        raise PayloadError("not strict JSON", f"{text[:20]}... is out of range for a number")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PayloadError("not strict JSON", f"key {_shown(key)} appears twice")
        out[key] = value
    return out


def _depth(raw: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings, found without recursion and
    in C (the parser recurses, so this runs first, on every payload)."""
    codes = np.frombuffer(_STRINGS.sub(b'""', raw), np.uint8)
    steps = np.isin(codes, _OPEN).astype(np.int32) - np.isin(codes, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def parse(raw: bytes, max_bytes: int, max_depth: int = MAX_DEPTH, empty: Any = None) -> Any:
    """``raw`` as a JSON value, or ``PayloadError``. An empty payload gives ``empty``."""
    if len(raw) > max_bytes:
        raise PayloadError("too large", f"payload is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw.strip():
        if empty is None:
            raise PayloadError("not JSON", "payload is empty")
        return empty
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("not JSON", f"payload is not UTF-8 (byte {exc.start})") from None
    if _depth(raw) > max_depth:
        raise PayloadError("too deep", f"payload nests deeper than {max_depth} levels")
    try:
        return json.loads(
            text,
            parse_constant=_no_constants,
            parse_float=_finite_float,
            parse_int=_small_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise PayloadError("not JSON", f"payload is not JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # any other refusal by the decoder
        raise PayloadError("not JSON", f"payload is not JSON: {str(exc)[:80]}") from None
    except RecursionError:  # _depth makes this unreachable; kept as a second wall
        raise PayloadError("too deep", "payload nests too deep") from None


def parse_object(raw: bytes, max_bytes: int, what: str = "payload", empty: Any = None) -> Fields:
    value = parse(raw, max_bytes, empty=empty)
    if not isinstance(value, dict):
        raise PayloadError("not an object", f"{what} must be a JSON object")
    return Fields(value, what)


def _shown(value: object, limit: int = 40) -> str:
    """A value quoted for a log line or an error reply, cut short (never echo a whole payload)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` for a terminal or a log line: every character that is not printable (control
    characters, escape sequences, line breaks, bidirectional overrides) written as its Python
    escape, so what someone else wrote cannot move the cursor, retitle the window, set the
    clipboard, or pose as another line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


_MISSING = object()


class Fields:
    """Checked access to a JSON object's fields; each error names ``where.key``."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _bad(self, key: str, wants: str) -> PayloadError:
        got = self.data.get(key, _MISSING)
        shown = "nothing" if got is _MISSING else _shown(got)
        return PayloadError("bad field", f"{self._name(key)} must be {wants}, got {shown}")

    def only(self, allowed: Iterable[str]) -> Fields:
        """Refuse keys outside ``allowed`` (a typo must not pass silently)."""
        extra = sorted(set(self.data) - set(allowed))
        if extra:
            raise PayloadError(
                "unknown field", f"{self.where or 'payload'} has unknown field(s): {_shown(extra, 80)}"
            )
        return self

    def present(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def string(
        self,
        key: str,
        max_len: int,
        pattern: re.Pattern[str] | None = None,
        wants: str = "",
        required: bool = True,
        check: Callable[[str], bool] | None = None,
    ) -> str | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        form = wants or f"a string of at most {max_len} characters"
        if not isinstance(value, str) or not 0 < len(value) <= max_len or not _encodable(value):
            raise self._bad(key, form)
        if pattern is not None and pattern.fullmatch(value) is None:
            raise self._bad(key, form)
        if check is not None and not check(value):
            raise self._bad(key, form)
        return value

    def integer(self, key: str, lo: int, hi: int, required: bool = True) -> int | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self._bad(key, f"a whole number from {lo} to {hi}")
        return value

    def number(self, key: str, lo: float, hi: float, required: bool = True) -> float | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._bad(key, f"a finite number from {lo:g} to {hi:g}")
        try:
            number = float(value)  # an integer of 400 digits overflows here
        except OverflowError:
            raise self._bad(key, f"a finite number from {lo:g} to {hi:g}") from None
        if not math.isfinite(number) or not lo <= number <= hi:
            raise self._bad(key, f"a finite number from {lo:g} to {hi:g}")
        return number

    def boolean(self, key: str, required: bool = True) -> bool | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def object(self, key: str, required: bool = True) -> Fields:
        value = self.data.get(key)
        if value is None and not required:
            return Fields({}, self._name(key))
        if not isinstance(value, dict):
            raise self._bad(key, "a JSON object")
        return Fields(value, self._name(key))

    def versions(self, key: str, name: re.Pattern[str], max_items: int, hi: int) -> dict[str, int]:
        """An object mapping names (``name``) to versions (1..``hi``)."""
        value = self.data.get(key)
        if not isinstance(value, dict) or len(value) > max_items:
            raise self._bad(key, f"an object of at most {max_items} name: version pairs")
        inner = Fields(value, self._name(key))
        for item in value:
            if name.fullmatch(item) is None:
                raise PayloadError("bad field", f"{self._name(key)}: {_shown(item)} is not a valid name")
            inner.integer(item, 1, hi)
        return dict(value)


def _encodable(text: str) -> bool:
    """False for lone surrogates (JSON's "\\ud800"), which cannot be UTF-8 and would fail later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- topics ------------------------------------------------------------------

_TOPIC_LEVEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_reply_topic(topic: object, base: str) -> str:
    """A reply topic a requester chose, accepted only if it is ``base`` or lies under it, has
    at most 4 more levels of 1-64 letters, digits, ``_ . -`` (no wildcards, no empty levels,
    nothing a broker could refuse) and fits in ``MAX_TOPIC_BYTES``. Anything else is refused:
    the device never publishes where a stranger points it."""
    if not isinstance(topic, str) or not _encodable(topic):
        raise PayloadError("bad reply topic", "reply topic must be a UTF-8 string")
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise PayloadError("bad reply topic", f"reply topic is longer than {MAX_TOPIC_BYTES} bytes")
    if topic == base:
        return topic
    if not topic.startswith(base + "/"):
        raise PayloadError("bad reply topic", f"reply topic {_shown(topic)} is not under {base}")
    levels = topic[len(base) + 1 :].split("/")
    if len(levels) > 4 or not all(_TOPIC_LEVEL.fullmatch(level) for level in levels):
        raise PayloadError(
            "bad reply topic",
            f"reply topic {_shown(topic)}: at most 4 levels under {base}, "
            "each 1-64 letters, digits, '_', '.' or '-'",
        )
    return topic


def check_correlation(data: object) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_CORRELATION_BYTES:
        raise PayloadError(
            "bad correlation data", f"correlation data must be at most {MAX_CORRELATION_BYTES} bytes"
        )
    return bytes(data)


# --- out ---------------------------------------------------------------------------


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON (what JavaScript's ``JSON.parse`` accepts): non-finite numbers become null."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


# --- the callback boundary -------------------------------------------------------

C = TypeVar("C", bound=Callable[..., Any])


def guarded(on_error: Callable[[str, BaseException], None]) -> Callable[[C], C]:
    """Decorate a paho callback so that no exception escapes into paho's thread: each one is
    passed to ``on_error`` (which logs one line and counts it) and the callback returns None."""

    def wrap(callback: C) -> C:
        @functools.wraps(callback)
        def safe(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except Exception as exc:  # this is the boundary
                try:
                    on_error(callback.__name__, exc)
                except Exception:  # a broken counter must not break the network thread
                    log.exception("error while reporting an error in %s", callback.__name__)
                return None

        return safe  # type: ignore[return-value]

    return wrap
