"""Command parsing and authentication, tested directly."""

from __future__ import annotations

import base64
import json

import pytest

from edge.commands import Authority, CommandError, sign

SECRET = b"0123456789abcdef-secret"
NOW = 1_800_000_000.0


def _auth(enabled: tuple[str, ...] = ("verify", "list", "enroll", "remove")) -> Authority:
    return Authority(list(enabled), SECRET, max_skew_s=60)


def _raw(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_read_commands_need_no_signature() -> None:
    command = _auth().parse("verify", _raw({"id": "r1", "args": {"claim": "alice", "timeout_s": 5}}), NOW)
    assert command.id == "r1" and command.args == {"claim": "alice", "timeout_s": 5.0}
    assert _auth().parse("list", b"", NOW).args == {}


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("verify", b"not json", "not JSON"),
        ("verify", _raw([1, 2]), "JSON object"),
        ("verify", _raw({"args": {}}), "needs args.claim"),
        ("verify", _raw({"args": {"claim": "a/b"}}), "invalid name"),
        ("verify", _raw({"args": {"claim": "a", "timeout_s": 600}}), "timeout_s"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": "x/#"}), "wildcards"),
        ("unlock", _raw({}), "unknown command"),
        ("reload", _raw({}), "disabled on this device"),
        ("remove", _raw({"args": {"name": "alice"}}), "needs an hmac"),
    ],
)
def test_bad_commands_say_why(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _auth().parse(name, payload, NOW)


def test_signature_freshness_and_replay() -> None:
    auth = _auth()
    signed = sign(SECRET, "remove", {"args": {"name": "alice"}}, now=NOW)
    assert auth.parse("remove", _raw(signed), NOW + 5).args == {"name": "alice"}
    with pytest.raises(CommandError, match="replayed nonce"):
        auth.parse("remove", _raw(signed), NOW + 6)
    with pytest.raises(CommandError, match="stale"):
        auth.parse("remove", _raw(sign(SECRET, "remove", {"args": {"name": "a"}}, now=NOW - 3600)), NOW)
    tampered = {**sign(SECRET, "remove", {"args": {"name": "alice"}}, now=NOW), "args": {"name": "bob"}}
    with pytest.raises(CommandError, match="bad hmac"):
        auth.parse("remove", _raw(tampered), NOW)
    other_command = sign(SECRET, "remove", {"args": {"name": "alice"}}, now=NOW)
    with pytest.raises(CommandError, match="bad hmac"):  # a signature is bound to its command name
        auth.parse("enroll", _raw(other_command), NOW)


def test_enroll_arguments() -> None:
    auth = _auth()
    jpeg = base64.b64encode(b"\xff\xd8 fake").decode()
    ok = auth.parse(
        "enroll", _raw(sign(SECRET, "enroll", {"args": {"name": "al", "jpeg": jpeg}}, now=NOW)), NOW
    )
    assert ok.args["jpeg"] == b"\xff\xd8 fake"
    with pytest.raises(CommandError, match="base64"):
        auth.parse(
            "enroll", _raw(sign(SECRET, "enroll", {"args": {"name": "al", "jpeg": "%%%"}}, now=NOW)), NOW
        )
    with pytest.raises(CommandError, match="from_camera"):
        auth.parse("enroll", _raw(sign(SECRET, "enroll", {"args": {"name": "al"}}, now=NOW)), NOW)


def test_no_secret_refuses_state_changes() -> None:
    auth = Authority(["remove"], None, 60)
    with pytest.raises(CommandError, match="no command secret"):
        auth.parse("remove", _raw(sign(SECRET, "remove", {"args": {"name": "a"}}, now=NOW)), NOW)


def test_non_ascii_signature_is_a_clear_refusal() -> None:
    """Found by the fuzzing in test_robustness.py: it used to raise TypeError."""
    for bad in ("\u0080", "\ud800", "é" * 64):
        with pytest.raises(CommandError, match="bad hmac"):
            _auth().parse("remove", _raw({"args": {"name": "a"}, "hmac": bad}), NOW)
