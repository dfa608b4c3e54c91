"""Command parsing, authentication and freshness, tested directly (the daemon's use of them is in
tests/test_adversarial.py, against a real broker)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import stat
from typing import Any

import pytest

from facegate.commands import Authority, CommandError, NonceStore, sign, sign_published, verify_published
from tests.test_gallery import NOT_PRINTABLE

SECRET = b"0123456789abcdef-secret"
NOW = 1_800_000_000.0
BASE = "facegate/door1"


def _auth(
    enabled: tuple[str, ...] = ("verify", "list", "enroll", "remove"),
    nonces: NonceStore | None = None,
    device: str = "door1",
) -> Authority:
    return Authority(list(enabled), SECRET, 60, device, f"facegate/{device}", nonces)


def _raw(payload: object) -> bytes:
    return json.dumps(payload).encode()


def _topic(name: str, base: str = BASE) -> str:
    return f"{base}/command/{name}"


def _signed(name: str, args: dict[str, object], now: float = NOW, device: str = "door1") -> bytes:
    return _raw(sign(SECRET, device, _topic(name, f"facegate/{device}"), {"args": args}, now=now))


def test_verify_needs_no_signature_but_list_does() -> None:
    command = _auth().parse(
        _topic("verify"), _raw({"id": "r1", "args": {"claim": "alice", "timeout_s": 5}}), NOW
    )
    assert command.id == "r1" and command.args == {"claim": "alice", "timeout_s": 5.0} and not command.signed
    with pytest.raises(CommandError, match="must be signed") as refused:
        _auth().parse(_topic("list"), b"", NOW)
    assert refused.value.reason == "unsigned"
    assert _auth().parse(_topic("list"), _signed("list", {}), NOW).signed


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("verify", b"not json", "not JSON"),
        ("verify", b"\xff\xfe", "not UTF-8"),
        ("verify", _raw([1, 2]), "JSON object"),
        ("verify", _raw({"args": {}}), "args.claim must be"),
        ("verify", _raw({"args": {"claim": "a/b"}}), "args.claim must be"),
        ("verify", _raw({"args": {"claim": "alice\n"}}), "args.claim must be"),  # matched whole
        ("verify", _raw({"args": {"claim": "alice\u0000"}}), "args.claim must be"),
        ("verify", _raw({"args": {"claim": "a", "timeout_s": 600}}), "timeout_s"),
        ("verify", b'{"args": {"claim": "a", "timeout_s": NaN}}', "strict JSON"),
        ("verify", b'{"args": {"claim": "a", "timeout_s": Infinity}}', "strict JSON"),
        ("verify", b'{"args": {"claim": "a", "timeout_s": 1e999}}', "out of range"),
        ("verify", b'{"args": {"claim": "a"}, "args": {"claim": "b"}}', "appears twice"),
        ("verify", b"[" * 5000 + b"]" * 5000, "deeper"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": "x/#"}), "reply topic"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": f"{BASE}/reply/#"}), "reply topic"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": f"{BASE}/reply/a\u0000"}), "reply topic"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": f"{BASE}/reply/\ud800"}), "reply topic"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": f"{BASE}/reply//x"}), "reply topic"),
        ("verify", _raw({"args": {"claim": "a"}, "reply_to": "lock/front/set"}), "not under"),
        ("verify", _raw({"args": {"claim": "a"}, "id": "x" * 200}), "id must be"),
        ("verify", _raw({"args": {"claim": "a"}, "unlock": True}), "unknown field"),
        ("verify", _raw({"args": {"claim": "a", "extra": 1}}), "unknown field"),
        ("verify", b" " + b"x" * (1 << 20), "limit"),
        ("unlock", _raw({}), "unknown command"),
        ("reload", _raw({}), "disabled on this device"),
        ("remove", _raw({"args": {"name": "alice"}}), "must be signed"),
    ],
)
def test_bad_commands_say_why(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _auth().parse(_topic(name), payload, NOW)


def test_an_error_reply_is_addressed_only_where_the_request_validly_said() -> None:
    with pytest.raises(CommandError) as refused:
        _auth().parse(_topic("verify"), _raw({"id": "r9", "reply_to": f"{BASE}/reply/app", "args": {}}), NOW)
    assert (refused.value.request_id, refused.value.reply_to) == ("r9", f"{BASE}/reply/app")
    with pytest.raises(CommandError) as refused:
        _auth().parse(_topic("verify"), _raw({"id": "r9", "args": {"claim": "a"}}), NOW, response_topic="x/+")
    assert (refused.value.request_id, refused.value.reply_to, refused.value.reason) == (
        "r9",
        None,
        "bad reply topic",
    )
    with pytest.raises(CommandError, match="correlation"):
        _auth().parse(_topic("verify"), _raw({"args": {"claim": "a"}}), NOW, correlation=b"x" * 1000)


def test_signature_freshness_and_replay() -> None:
    auth = _auth()
    signed = _signed("remove", {"name": "alice"})
    assert auth.parse(_topic("remove"), signed, NOW + 5).args == {"name": "alice"}
    with pytest.raises(CommandError, match="replayed nonce"):
        auth.parse(_topic("remove"), signed, NOW + 6)
    with pytest.raises(CommandError, match="stale"):
        auth.parse(_topic("remove"), _signed("remove", {"name": "a"}, now=NOW - 3600), NOW)
    tampered = {**json.loads(_signed("remove", {"name": "alice"})), "args": {"name": "bob"}}
    with pytest.raises(CommandError, match="bad hmac"):
        auth.parse(_topic("remove"), _raw(tampered), NOW)
    with pytest.raises(CommandError, match="bad hmac"):  # bound to its command (the topic)
        auth.parse(_topic("enroll"), _signed("remove", {"name": "alice"}), NOW)
    for ts in ("1e999", "NaN", "1" + "0" * 400, "true", '"1800000000"'):
        body = _raw(sign(SECRET, "door1", _topic("remove"), {"args": {"name": "a"}}, now=NOW))
        body = body.replace(f'"ts": {NOW}'.encode(), f'"ts": {ts}'.encode())
        with pytest.raises(CommandError):
            auth.parse(_topic("remove"), body, NOW)


def test_a_command_for_one_door_does_nothing_on_another() -> None:
    """Two doors share the secret; a request signed for door1 is refused by door2, on door2's
    own topic (re-published there) as on door1's."""
    for_door1 = _signed("remove", {"name": "alice"}, device="door1")
    door2 = _auth(device="door2")
    with pytest.raises(CommandError, match="bad hmac"):
        door2.parse(_topic("remove", "facegate/door2"), for_door1, NOW)


def test_replay_after_a_restart_and_with_the_clock_set_back(tmp_path: pathlib.Path) -> None:
    store = tmp_path / "nonces.json"
    signed = _signed("remove", {"name": "alice"})
    assert _auth(nonces=NonceStore(store, 60)).parse(_topic("remove"), signed, NOW).args == {"name": "alice"}
    assert (store.stat().st_mode & 0o777) == 0o600
    restarted = _auth(nonces=NonceStore(store, 60))  # a new process, the same file
    with pytest.raises(CommandError, match="replayed nonce"):
        restarted.parse(_topic("remove"), signed, NOW + 1)
    # Much later the nonce is forgotten, yet a request as old as it is still refused, even by
    # a device whose clock went back to the request's time (no RTC, before NTP).
    later = _auth(nonces=NonceStore(store, 60))
    later.parse(_topic("remove"), _signed("remove", {"name": "b"}, now=NOW + 1000), NOW + 1000)
    clock_back = _auth(nonces=NonceStore(store, 60))
    with pytest.raises(CommandError, match="stale"):
        clock_back.parse(_topic("remove"), signed, NOW)
    assert len(json.loads(store.read_text())["nonces"]) == 1  # bounded: old nonces pruned


def test_a_nonce_is_on_disk_before_its_command_runs(tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    """Before the command runs, the nonce file is fsynced, renamed into place, and its folder
    fsynced: until the folder is, a power cut can undo the rename and bring back the old file,
    which does not hold the nonce, and the command could be replayed after the reboot."""
    synced: list[str] = []
    fsync = os.fsync

    def recording(fd: int) -> None:
        st = os.fstat(fd)
        on_disk = sorted(p.name for p in tmp_path.iterdir())
        synced.append(("folder " if stat.S_ISDIR(st.st_mode) else "file ") + ",".join(on_disk))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    _auth(nonces=NonceStore(tmp_path / "nonces.json", 60)).parse(
        _topic("remove"), _signed("remove", {"name": "alice"}), NOW
    )
    assert synced == ["file nonces.json.tmp", "folder nonces.json"]


def test_retained_commands_are_refused() -> None:
    with pytest.raises(CommandError, match="retained") as refused:
        _auth().parse(_topic("remove"), _signed("remove", {"name": "alice"}), NOW, retained=True)
    assert refused.value.reason == "retained"


def test_nonce_store_bounds_and_a_disk_that_cannot_record(tmp_path: pathlib.Path) -> None:
    auth = _auth(nonces=NonceStore(None, 60, max_entries=2))
    for _ in range(2):
        auth.parse(_topic("remove"), _signed("remove", {"name": "a"}), NOW)
    with pytest.raises(CommandError, match="more than 2 signed commands"):
        auth.parse(_topic("remove"), _signed("remove", {"name": "a"}), NOW)
    blocked = tmp_path / "a-file"  # its parent is a file: no one, root included, can write there
    blocked.write_text("")
    auth = _auth(nonces=NonceStore(blocked / "nonces.json", 60))
    with pytest.raises(CommandError, match="cannot record the nonce"):
        auth.parse(_topic("remove"), _signed("remove", {"name": "a"}), NOW)


def test_enroll_arguments() -> None:
    auth = _auth()
    jpeg = base64.b64encode(b"\xff\xd8 fake").decode()
    ok = auth.parse(_topic("enroll"), _signed("enroll", {"name": "al", "jpeg": jpeg}), NOW)
    assert ok.args["jpeg"] == b"\xff\xd8 fake"
    with pytest.raises(CommandError, match="base64"):
        auth.parse(_topic("enroll"), _signed("enroll", {"name": "al", "jpeg": "%%%"}), NOW)
    with pytest.raises(CommandError, match="from_camera"):
        auth.parse(_topic("enroll"), _signed("enroll", {"name": "al"}), NOW)
    for display in NOT_PRINTABLE:
        with pytest.raises(CommandError, match="display_name"):
            auth.parse(
                _topic("enroll"),
                _signed("enroll", {"name": "al", "from_camera": True, "display_name": display}),
                NOW,
            )
    named = _signed("enroll", {"name": "al", "from_camera": True, "display_name": "Zoë 🙂"})
    assert auth.parse(_topic("enroll"), named, NOW).args["display_name"] == "Zoë 🙂"


def test_no_secret_refuses_signed_commands() -> None:
    auth = Authority(["remove"], None, 60, "door1", BASE)
    with pytest.raises(CommandError, match="no command secret"):
        auth.parse(_topic("remove"), _signed("remove", {"name": "a"}), NOW)


def test_absurd_skews_are_refused() -> None:
    for skew in (0, -1, 1e9, float("inf"), float("nan")):
        with pytest.raises(Exception, match="max_skew_s"):
            Authority(["verify"], SECRET, skew, "door1", BASE)


def test_non_ascii_signature_is_a_clear_refusal() -> None:
    """Found by the fuzzing in test_robustness.py: it used to raise TypeError."""
    for bad in ("\u0080", "\ud800", "é" * 64):
        with pytest.raises(CommandError, match="hmac must be"):
            _auth().parse(_topic("remove"), _raw({"args": {"name": "a"}, "hmac": bad}), NOW)


def test_published_events_and_replies_carry_a_signature_a_consumer_checks() -> None:
    """What the device publishes with a command secret: its exact bytes, its topic and its device
    signed; anything changed, moved, or signed with another secret does not verify."""
    body = b'{"schema":1,"identity":"alice","accepted":true,"distance":0.31}'
    topic = f"{BASE}/event"
    signed = sign_published(SECRET, "door1", topic, body)
    assert json.loads(signed) == {**json.loads(body), "hmac": json.loads(signed)["hmac"]}
    assert verify_published(SECRET, "door1", topic, signed)
    forged = signed.replace(b'"alice"', b'"mallo"')
    assert not verify_published(SECRET, "door1", topic, forged)  # another identity, same length
    assert not verify_published(SECRET, "door1", f"{BASE}/reply", signed)  # another topic
    assert not verify_published(SECRET, "door2", topic, signed)  # another door's
    assert not verify_published("another-secret-entirely", "door1", topic, signed)
    assert not verify_published(SECRET, "door1", topic, body)  # unsigned
    assert not verify_published(SECRET, "door1", topic, signed + b" ")  # anything after it
    with pytest.raises(ValueError):
        sign_published(SECRET, "door1", topic, b"{}")
    # the consumer's check that docs/MQTT.md gives, run as written, agrees
    doc = (pathlib.Path(__file__).parents[1] / "docs" / "MQTT.md").read_text()
    snippet = next(block for block in doc.split("```python")[1:] if "def from_the_door" in block)
    scope: dict[str, Any] = {}
    exec(snippet.split("```")[0], scope)
    for payload in (signed, forged, body, signed + b" "):
        assert scope["from_the_door"](SECRET, "door1", topic, payload) == verify_published(
            SECRET, "door1", topic, payload
        )
