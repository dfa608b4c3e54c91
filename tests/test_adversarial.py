"""An attacker on the broker, against a real mosquitto and a real ``facegate run``.

The attacker holds no secret (except where a test says it replays what it
captured). Every class of attack of issue 15 is tried; after each one the
daemon must still be running, still connected (its Last Will never fired),
publish a new event, and answer a signed command. What was tried is printed
in the test run's summary (``robustness: adversarial ...`` lines).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from PIL import Image

from facegate.commands import sign, verify_published
from facegate.demo import PHOTOS, scene
from facegate.encoder import Encoder
from facegate.enroll import Enroller, fingerprint
from facegate.fleet import HmacKey, encode_vectors, sign_message
from facegate.gallery import Gallery
from facegate.perception import Perception
from tests.conftest import INT8_MODEL, ROBUSTNESS, ROOT
from tests.mqtt_support import Broker, Subscriber

SECRET = "adversarial-command-secret-0123"
FLEET_KEY = "adversarial-fleet-hmac-key-0123"
BASE = "facegate/door1"
REPLY = f"{BASE}/reply/tester"
FLEET = "facegate/fleet/adv"
TRIED: Counter[str] = Counter()


def _summary(line: str) -> None:
    ROBUSTNESS.append(f"adversarial: {line}")


class Attacker:
    """A client with no secret. MQTT 5 or 3.1.1; reconnects if the broker threw it out (a
    protocol error of its own making is the attacker's problem, not the door's)."""

    def __init__(self, port: int, protocol: int = mqtt.MQTTv5) -> None:
        self.port, self.protocol = port, protocol
        self.client = self._connect()

    def _connect(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=self.protocol)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client

    def send(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        if not self.client.is_connected():
            time.sleep(0.05)
        if not self.client.is_connected():
            self.close()
            self.client = self._connect()
            time.sleep(0.05)
        with contextlib.suppress(ValueError, RuntimeError):  # paho's own refusals
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if qos:
                with contextlib.suppress(ValueError, RuntimeError):
                    info.wait_for_publish(2)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Door:
    """``facegate run`` in a child process, watched by a subscriber: a camera that shows
    obama and then an empty hall in turn, so a new event comes every second or so."""

    def __init__(self, broker: Broker, tmp: pathlib.Path, sample: Any) -> None:
        self.broker, self.tmp = broker, tmp
        self.log = tmp / "daemon.log"
        self.config = tmp / "config.yaml"
        frames = tmp / "frames"
        frames.mkdir()
        perception = Perception()
        obama = scene(PHOTOS / "obama2.jpg", perception=perception)
        blank = np.full((480, 640, 3), 96, np.uint8)
        for i, image in enumerate([obama] * 4 + [blank] * 4):
            Image.fromarray(image).save(frames / f"{i:02d}.png")
        with Gallery.open(tmp / "gallery.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
            gallery.add("obama", [sample])
        self.raw: dict[str, Any] = {
            "device": {"id": "door1"},
            "camera": {"source": "folder", "path": str(frames), "loop": True, "max_fps": 20},
            "gallery": {"path": str(tmp / "gallery.db")},
            "mqtt": {"port": broker.port, "outbox": str(tmp / "outbox"), "keepalive": 5},
            "decision": {"votes_to_decide": 2, "window": 3, "max_missing": 1},
            "idle": {"motion_threshold": 0},
            "commands": {"enabled": ["verify", "list", "enroll", "remove", "reload"], "secret": SECRET},
            "fleet": {"enabled": True, "signature": "hmac", "hmac_key": FLEET_KEY, "prefix": FLEET},
        }
        self.config.write_text(yaml.safe_dump(self.raw))
        self.watch = Subscriber(broker.port, [f"{BASE}/#"])
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.watch.messages.clear()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facegate", "run", "--config", str(self.config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "a"),  # noqa: SIM115 - the child holds it
        )
        self.starts += 1
        self.watch.wait(
            lambda t, p: t.endswith("/availability") and p == {"schema": 1, "state": "online"}, 1, 90
        )

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # as systemd's watchdog: every stack to the log
            self.process.wait(30)
            raise AssertionError("SIGTERM unheard for 30 s: " + self.log.read_text()[-6000:]) from None
        assert code == 0, self.log.read_text()[-3000:]

    def went_offline(self) -> bool:
        return any(t.endswith("/availability") and p.get("state") == "offline" for t, p, _, _ in self._seen())

    def _seen(self) -> list[tuple[str, Any, Any, float]]:
        return [m for m in list(self.watch.messages) if isinstance(m[1], dict)]

    def signed(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return sign(SECRET, "door1", f"{BASE}/command/{name}", payload)

    def ask(self, name: str, payload: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        """Send a signed command and wait for its reply (sent again while a flood fills the
        daemon's queue: a dropped request gets no answer)."""
        request_id = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while True:
            body = self.signed(name, {**payload, "id": request_id, "reply_to": REPLY})
            self.watch.publish(f"{BASE}/command/{name}", body)
            try:
                found = self.watch.wait(lambda t, p: t == REPLY and p.get("id") == request_id, 1, 3)
                return dict(found[0][1])
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def assert_alive(self, after: str) -> None:
        """Running, never offline, a fresh event, and a signed command answered."""
        assert self.process is not None and self.process.poll() is None, (
            f"daemon ended after {after}: " + self.log.read_text()[-3000:]
        )
        assert not self.went_offline(), f"the daemon's link was cut after {after}"
        since = time.time()
        try:
            self.watch.wait(lambda t, p: t == f"{BASE}/event" and p.get("ts", 0) > since, 1, 30)
        except AssertionError:
            self.process.send_signal(signal.SIGABRT)  # wedged: where every thread is, to the log
            self.process.wait(30)
            log = self.log.read_text()[-6000:]
            raise AssertionError(f"no event for 30 s after {after}: {log}") from None
        events = [b for t, b, at in list(self.watch.raw) if t == f"{BASE}/event" and at > since]
        assert any(verify_published(SECRET, "door1", f"{BASE}/event", b) for b in events), after
        reply = self.ask("list", {})
        assert reply["ok"] is True, (after, reply)
        assert "obama" in [p["name"] for p in reply["result"]["people"]]

    def state(self) -> dict[str, Any]:
        states = [p for t, p, _, _ in self._seen() if t == f"{BASE}/state"]
        return states[-1] if states else {}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.watch.close()


@pytest.fixture(scope="module")
def door(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    sample = Enroller(Perception(), Encoder(INT8_MODEL)).sample(PHOTOS / "obama.jpg")
    d = Door(broker, tmp_path_factory.mktemp("door"), sample)
    d.start()
    yield d
    d.close()
    log = d.log.read_text()
    assert "Traceback" not in log, log[-3000:]  # every failure was a one-line refusal
    refused = ", ".join(f"{n} {what}" for what, n in sorted(TRIED.items()))
    _summary(f"{sum(TRIED.values())} messages tried ({refused}); the daemon never ended, never went offline")


def _verify(claim: str = "obama", **extra: Any) -> bytes:
    return json.dumps({"args": {"claim": claim}, **extra}).encode()


POISON: dict[str, list[tuple[str, bytes]]] = {
    "payloads": [
        ("verify", b"[" * 100_000 + b"]" * 100_000),
        ("verify", b'{"args": ' * 5000 + b"1" + b"}" * 5000),
        ("verify", b'{"args": {"claim": "obama", "timeout_s": NaN}}'),
        ("verify", b'{"args": {"claim": "obama", "timeout_s": 1e999}}'),
        ("verify", b'{"args": {"claim": "obama", "timeout_s": ' + b"9" * 5000 + b"}}"),
        ("verify", b'{"args": {"claim": "obama"}, "args": {"claim": "x"}}'),
        ("verify", b"\xff\xfe\x00garbage"),
        ("verify", b'{"args": {"claim": "\\ud800"}}'),
        ("verify", b'{"args": {"claim": "obama\\n"}}'),
        ("verify", b"x" * (2 << 20)),
        ("verify", b""),
        ("verify", b"null"),
        ("verify", b'"just a string"'),
        ("verify", b'{"args": [1, 2, 3]}'),
        ("verify", b'{"args": {"claim": 7}, "id": {"nested": true}}'),
        ("remove", b'{"args": {"name": "obama"}, "ts": 1e999, "nonce": "x", "hmac": "00"}'),
        ("enroll", b'{"args": {"name": "x", "jpeg": "' + b"A" * 100 + b'"}, "hmac": "' + b"0" * 64 + b'"}'),
        ("unlock", b"{}"),
        ("verify/../remove", b"{}"),
    ],
    "reply topics": [
        ("verify", _verify(reply_to=f"{BASE}/reply/#")),
        ("verify", _verify(reply_to=f"{BASE}/reply/+")),
        ("verify", _verify(reply_to=f"{BASE}/reply/a\u0000b")),
        ("verify", _verify(reply_to=f"{BASE}/reply/\ud800")),
        ("verify", _verify(reply_to=f"{BASE}/reply/" + "x" * 70000)),
        ("verify", _verify(reply_to=f"{BASE}/reply//")),
        ("verify", _verify(reply_to="zigbee2mqtt/front_lock/set")),
        ("verify", _verify(reply_to="$SYS/broker/x")),
        ("verify", _verify(reply_to=7)),
        ("verify", _verify(id="\u0000" * 10)),
    ],
}


@pytest.mark.parametrize("kind", sorted(POISON))
def test_single_poison_messages(door: Door, kind: str) -> None:
    attacker = Attacker(door.broker.port)
    for name, payload in POISON[kind]:
        attacker.send(f"{BASE}/command/{name}", payload)
        TRIED[kind] += 1
    attacker.close()
    door.assert_alive(kind)
    # nothing it was told to reply on outside its own tree got a message
    assert not [t for t, *_ in door.watch.messages if t.startswith(f"{BASE}/reply/") and t != REPLY]


NASTY_TOPICS = [f"{BASE}/reply/#", f"{BASE}/reply/+/x", "lock/front/set", f"{BASE}/reply/" + "y" * 5000, ""]


def test_mqtt5_properties(door: Door) -> None:
    attacker = Attacker(door.broker.port)
    for topic in NASTY_TOPICS:
        props = Properties(PacketTypes.PUBLISH)
        if topic:
            props.ResponseTopic = topic
        props.CorrelationData = os.urandom(60000)
        props.UserProperty = [("k" * 100, "v" * 1000)] * 50
        props.ContentType = "application/json"
        attacker.send(f"{BASE}/command/verify", _verify(), properties=props)
        TRIED["MQTT 5 properties"] += 1
    attacker.close()
    door.assert_alive("MQTT 5 properties")


def test_floods_are_bounded(door: Door) -> None:
    """5,000 unsigned verify requests, 300 Home Assistant "online"s and 2,000 garbage commands,
    as fast as the broker takes them: the door keeps deciding and answering; the excess is
    refused (rate limited, busy) or dropped at the bounded queue, and counted in ``state``."""
    attacker = Attacker(door.broker.port)
    for i in range(5000):
        attacker.send(f"{BASE}/command/verify", _verify(id=f"f{i}"), qos=0)
    for _ in range(300):
        attacker.send("homeassistant/status", b"online", qos=0)
    for _ in range(2000):
        attacker.send(f"{BASE}/command/remove", b"[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]", qos=0)
    TRIED["flood"] += 7300
    attacker.close()
    door.assert_alive("floods")
    mqtt_state = door.state().get("mqtt", {})
    refused = mqtt_state.get("refused", {})
    assert refused.get("rate limited", 0) + refused.get("busy", 0) > 0, mqtt_state
    _summary(f"floods of 7,300 messages: state says refused {refused}, errors {mqtt_state.get('errors')}")


def test_fleet_topics_from_a_stranger(door: Door) -> None:
    attacker = Attacker(door.broker.port)
    stranger = HmacKey(b"not-the-fleet-key-at-all-0123")
    body = {"kind": "person", "name": "mallory", "display_name": "M", "version": 99, "model": "0" * 64}
    forged = sign_message(stranger, f"{FLEET}/people/mallory", {**body, "dim": 128, "embeddings": ""})
    messages = [
        (f"{FLEET}/people/mallory", forged),
        (f"{FLEET}/people/x", b"[" * 200_000),
        (f"{FLEET}/people/x", b'{"schema": 1, "sig": "' + b"A" * 5000 + b'"}'),
        (f"{FLEET}/people/x", b'{"schema": 1e999}'),
        (f"{FLEET}/manifest", b'{"schema": 1, "alg": "hmac-sha256", "sig": "AAAA", "seq": NaN}'),
        (f"{FLEET}/manifest", b"\x00" * 1000),
        (f"{FLEET}/manifest", b"y" * (2 << 20)),
    ]
    for topic, payload in messages:
        attacker.send(topic, payload, retain=True)
        TRIED["fleet"] += 1
    attacker.close()
    door.assert_alive("fleet messages")
    with Gallery.open(door.tmp / "gallery.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        assert "mallory" not in gallery
    refused = door.state().get("fleet", {}).get("refused", {})
    assert refused.get("bad signature", 0) >= 1 and refused.get("malformed", 0) >= 1, refused
    cleaner = Attacker(door.broker.port)
    for topic, _ in messages:
        cleaner.send(topic, b"", retain=True)
    cleaner.close()


GUESSED_CLIENT_IDS = [
    "facegate-door1",
    "door1",
    "facegate",
    "facegate-door1-1",
    "facegate_door1",
    "FACEGATE-DOOR1",
]


def test_a_stranger_taking_a_guessed_client_id(door: Door) -> None:
    """A broker drops a client when another connects with its client id (MQTT's session
    takeover), and it takes no secret to connect with one. The door's id must not be one
    a stranger can guess from its topics: each guess below connects, stays a second, and
    leaves; the door is never thrown off (its log shows no new connection) and stays alive."""
    connects = door.log.read_text().count("connected to MQTT broker")
    for client_id in GUESSED_CLIENT_IDS:
        for protocol in (mqtt.MQTTv5, mqtt.MQTTv311):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
            client.connect("127.0.0.1", door.broker.port)
            client.loop_start()
            time.sleep(1.0)
            client.disconnect()
            client.loop_stop()
            TRIED["client id takeover"] += 1
    door.assert_alive("connections with guessed client ids")
    log = door.log.read_text()
    assert log.count("connected to MQTT broker") == connects, log[-3000:]
    assert "MQTT disconnected" not in log, log[-3000:]


def test_replays_retained_poison_and_restarts(door: Door) -> None:
    """A signed command captured on the wire runs once: replayed at once, retained on the
    broker (re-delivered at every connect), or replayed after a restart, it is refused. A
    retained poison message is there at every start, and every start survives it."""
    jpeg = base64.b64encode((PHOTOS / "biden.jpg").read_bytes()).decode()
    captured = door.signed(
        "enroll", {"id": "cap1", "args": {"name": "biden", "jpeg": jpeg}, "reply_to": REPLY}
    )
    door.watch.publish(f"{BASE}/command/enroll", captured)
    first = door.watch.wait(lambda t, p: t == REPLY and p.get("id") == "cap1", 1, 30)[0][1]
    assert first["ok"] is True, first
    attacker = Attacker(door.broker.port)
    raw = json.dumps(captured).encode()
    attacker.send(f"{BASE}/command/enroll", raw)  # replayed at once
    attacker.send(f"{BASE}/command/enroll", raw, retain=True)  # and left on the broker
    attacker.send(f"{BASE}/command/verify", _verify(reply_to=f"{BASE}/reply/#"), retain=True)
    TRIED["replays and retained"] += 3
    answers = door.watch.wait(lambda t, p: t == REPLY and p.get("id") == "cap1", 3, 30)
    assert [a[1]["ok"] for a in answers] == [True, False, False], [a[1] for a in answers]
    assert {a[1]["error"].split(":")[0] for a in answers[1:]} <= {
        "replayed nonce",
        "retained commands are refused",
    }
    # Another door sharing the secret: the capture does nothing there either.
    attacker.send("facegate/door2/command/enroll", raw)
    for _ in range(2):  # restart twice: retained poison and the retained replay at each start
        door.stop()
        door.start()
        TRIED["restarts with retained poison"] += 1
        door.assert_alive("a restart with retained poison")
    attacker.send(f"{BASE}/command/enroll", raw)  # replayed after the restarts
    TRIED["replays and retained"] += 1
    late = door.watch.wait(lambda t, p: t == REPLY and p.get("id") == "cap1" and not p["ok"], 2, 30)
    assert any("replayed nonce" in m[1]["error"] for m in late), [m[1] for m in late]
    with Gallery.open(door.tmp / "gallery.db", fingerprint(Encoder(INT8_MODEL))) as gallery:
        assert gallery.person("biden").embeddings == 1  # ran exactly once
    for topic in (f"{BASE}/command/enroll", f"{BASE}/command/verify"):
        attacker.send(topic, b"", retain=True)
    attacker.close()
    _summary("a captured signed enroll replayed at once, retained, and after 2 restarts: ran once")


def _messages() -> st.SearchStrategy[dict[str, Any]]:
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="#+/\x00"), max_size=20)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=10,
    )
    command = st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "args": st.fixed_dictionaries({}, optional={"claim": json_values, "name": json_values})
            | json_values,
            "reply_to": st.sampled_from(NASTY_TOPICS) | text,
            "ts": json_values,
            "nonce": json_values,
            "hmac": json_values,
        },
    )
    payloads = st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        command.map(lambda v: json.dumps(v).encode()),
    )
    topics = st.one_of(
        st.sampled_from(["verify", "list", "enroll", "remove", "reload"]).map(
            lambda n: f"{BASE}/command/{n}"
        ),
        text.filter(bool).map(lambda n: f"{BASE}/command/{n}"),
        text.filter(bool).map(lambda n: f"{FLEET}/people/{n}"),
        st.just(f"{FLEET}/manifest"),
        st.just("homeassistant/status"),
    )
    return st.fixed_dictionaries(
        {
            "topic": topics,
            "payload": payloads,
            "qos": st.integers(0, 2),
            "retain": st.booleans(),
            "response_topic": st.none() | st.sampled_from(NASTY_TOPICS) | text,
            "correlation": st.none() | st.binary(max_size=500),
            "protocol": st.sampled_from([mqtt.MQTTv5, mqtt.MQTTv311]),
        }
    )


ATTACKERS: dict[int, Attacker] = {}


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(message=_messages())
def test_fuzzed_mqtt_surface(door: Door, message: dict[str, Any]) -> None:
    attacker = ATTACKERS.get(message["protocol"])
    if attacker is None:
        attacker = ATTACKERS[message["protocol"]] = Attacker(door.broker.port, message["protocol"])
    props = None
    if message["protocol"] == mqtt.MQTTv5 and (message["response_topic"] or message["correlation"]):
        props = Properties(PacketTypes.PUBLISH)
        if message["response_topic"]:
            props.ResponseTopic = message["response_topic"]
        if message["correlation"]:
            props.CorrelationData = message["correlation"]
    attacker.send(message["topic"], message["payload"], message["qos"], message["retain"], props)
    TRIED["fuzzed"] += 1
    assert door.process is not None and door.process.poll() is None, door.log.read_text()[-3000:]


def test_alive_after_fuzzing(door: Door) -> None:
    for attacker in ATTACKERS.values():
        attacker.close()
    cleaner = Attacker(door.broker.port)
    cleaner.client.subscribe([(f"{BASE}/command/#", 0), (f"{FLEET}/#", 0)])
    retained: list[str] = []
    cleaner.client.on_message = lambda c, u, m: retained.append(m.topic) if m.retain else None
    time.sleep(1.0)
    door.assert_alive("fuzzing")
    for topic in set(retained):  # leave the broker clean
        if not topic.startswith(f"{FLEET}/devices/"):
            cleaner.send(topic, b"", retain=True)
    cleaner.close()
    _summary(
        f"hypothesis fuzzed {TRIED['fuzzed']} messages over topics, payloads, MQTT 5 properties, QoS, retain"
    )


def test_sigterm_stops_it_cleanly_at_the_end(door: Door) -> None:
    door.stop()
    assert door.process is not None and door.process.returncode == 0
    # the counts it kept are in its log's last line
    assert "stopped:" in door.log.read_text()


@pytest.fixture
def tmpfs(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A real, tiny file system (a full disk on demand); needs root, as CI is."""
    where = tmp_path / "small"
    where.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_read_only_outbox_and_a_gallery_replaced_under_it(
    broker: Broker, tmp_path: pathlib.Path, tmpfs: pathlib.Path
) -> None:
    """The outbox on a file system that fills up, then made read-only; the gallery file
    rewritten with garbage in place, then replaced by another (valid) gallery: the daemon keeps
    deciding and publishing, says what is wrong in ``state``, and loses nothing committed."""
    from facegate.daemon import Daemon
    from facegate.sources import ArraySource
    from tests.test_daemon import _config, running

    sample = Enroller(Perception(), Encoder(INT8_MODEL)).sample(PHOTOS / "obama.jpg")
    obama = scene(PHOTOS / "obama2.jpg", perception=Perception())
    blank = np.full((480, 640, 3), 96, np.uint8)
    config = _config(
        tmp_path,
        broker.port,
        sample,
        mqtt={"outbox": str(tmpfs / "outbox")},
        decision={"votes_to_decide": 2, "window": 3, "max_missing": 1},
        idle={"motion_threshold": 0},
    )
    sub = Subscriber(broker.port, ["facegate/door1/#"])
    daemon = Daemon(config, ArraySource([obama] * 4 + [blank] * 4, loop=True))

    def new_event() -> dict[str, Any]:
        since = time.time()
        return sub.wait(lambda t, p: t.endswith("/event") and p.get("ts", 0) > since, 1, 30)[-1][1]

    def state_says(key: str, predicate: Any, since: float | None = None) -> dict[str, Any]:
        """The next state (published from ``since``, default now) for which ``predicate(state[key])``
        holds."""
        since = time.time() if since is None else since
        found = sub.wait(
            lambda t, p: t.endswith("/state") and _time(p) > since and predicate(p.get(key)), 1, 30
        )
        return dict(found[-1][1])

    with running(daemon):
        assert new_event()["identity"] == "obama"
        filled_at = time.time()
        filler = os.open(tmpfs / "filler", os.O_CREAT | os.O_WRONLY)
        keep_full = threading.Event()

        def fill() -> None:  # to the last byte, and again whenever an acknowledged event frees some
            while not keep_full.is_set():
                for chunk in (65536, 4096, 256, 1):
                    with contextlib.suppress(OSError):
                        while True:
                            os.write(filler, b"\0" * chunk)
                time.sleep(0.001)

        thread = threading.Thread(target=fill, daemon=True)
        thread.start()
        assert new_event()["identity"] == "obama"  # published from memory
        full = state_says("outbox", lambda v: v and "No space" in v, since=filled_at)
        assert full["camera"] == "ok"
        keep_full.set()
        thread.join(5)
        os.close(filler)
        (tmpfs / "filler").unlink()
        state_says("outbox", lambda v: v == "ok")  # and back once there is room
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
        assert new_event()["identity"] == "obama"
        state_says("outbox", lambda v: v and "Read-only" in v)
        # the gallery rewritten in place with garbage: the last good templates still decide
        gallery = tmp_path / "gallery.db"
        gallery.write_bytes(b"garbage" * 1000)
        assert new_event()["identity"] == "obama"
        state_says("gallery", lambda v: v and v != "ok")
        # replaced (rename) by a valid gallery with another person: reopened
        other = tmp_path / "other.db"
        with Gallery.open(other, fingerprint(Encoder(INT8_MODEL))) as g:
            g.add("obama", [sample])
            g.add("obama2", [sample])
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"gallery.db{suffix}").unlink(missing_ok=True)
        os.replace(other, gallery)
        state_says("gallery", lambda v: v == "ok")
        assert new_event()["identity"] in ("obama", "obama2")
        assert daemon.live.count() == 2
    sub.close()
    _summary(
        "outbox on a full disk, then read-only; gallery rewritten with garbage, then replaced: kept deciding"
    )


def _time(payload: Any) -> float:
    import datetime

    if not isinstance(payload, dict) or not isinstance(payload.get("time"), str):
        return 0.0
    return datetime.datetime.fromisoformat(payload["time"]).timestamp()


def _vector_bytes(sample: Any) -> bytes:
    return np.asarray(sample.vector, "<f4").tobytes()


def _in_files(path: pathlib.Path, needle: bytes) -> bool:
    """Whether the gallery file or its WAL holds ``needle``, read by another process: closing a
    descriptor of the file here would drop the daemon's SQLite locks, which this process holds."""
    read = (
        "import pathlib, sys; needle = bytes.fromhex(sys.argv[1]); "
        "print(any(needle in p.read_bytes() for p in map(pathlib.Path, sys.argv[2:]) if p.exists()))"
    )
    files = [str(path), str(path.with_name(path.name + "-wal"))]
    done = subprocess.run(
        [sys.executable, "-I", "-c", read, needle.hex(), *files], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_a_removal_removes_on_every_path(broker: Broker, tmp_path: pathlib.Path) -> None:
    """Removed from the CLI, by MQTT, and by the fleet: the embedding's bytes (and a kept image)
    are gone from the gallery file and its WAL. A person the fleet gave is not removable
    locally: the command says who owns it."""
    from facegate.daemon import Daemon
    from facegate.sources import ArraySource
    from tests.test_daemon import _config, running

    enroller = Enroller(Perception(), Encoder(INT8_MODEL))
    model = fingerprint(Encoder(INT8_MODEL))
    sample = enroller.sample(PHOTOS / "obama.jpg")
    biden = enroller.sample(PHOTOS / "biden.jpg")
    image = (PHOTOS / "biden.jpg").read_bytes()
    kept = type(biden)(biden.vector, biden.source, biden.quality, image)
    config = _config(
        tmp_path,
        broker.port,
        sample,
        commands={"enabled": ["verify", "list", "remove", "enroll"], "secret": SECRET},
        fleet={"enabled": True, "signature": "hmac", "hmac_key": FLEET_KEY, "prefix": FLEET},
    )
    path = tmp_path / "gallery.db"
    # 1. the CLI
    with Gallery.open(path, model) as gallery:
        gallery.add("cli_person", [kept])
    assert _in_files(path, _vector_bytes(biden)) and _in_files(path, image[1000:1064])
    subprocess.run(
        [sys.executable, "-m", "facegate", "gallery", "remove", "cli_person", "--gallery", str(path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert not _in_files(path, _vector_bytes(biden)) and not _in_files(path, image[1000:1064])
    # 2. MQTT, and 3. the fleet, on a running daemon
    with Gallery.open(path, model) as gallery:
        gallery.add("mqtt_person", [biden])
    fleet_vector = (np.asarray(biden.vector) * -1).astype("<f4")
    key = HmacKey(FLEET_KEY.encode())
    sub = Subscriber(broker.port, [f"{BASE}/#"])
    daemon = Daemon(config, ArraySource([np.full((480, 640, 3), 96, np.uint8)], loop=True))

    def ask(name: str, args: dict[str, Any]) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        body = sign(
            SECRET, "door1", f"{BASE}/command/{name}", {"id": request_id, "args": args, "reply_to": REPLY}
        )
        sub.publish(f"{BASE}/command/{name}", body)
        return dict(sub.wait(lambda t, p: t == REPLY and p.get("id") == request_id, 1, 20)[0][1])

    def fleet(topic: str, body: dict[str, Any]) -> None:
        sub.client.publish(topic, sign_message(key, topic, body), qos=1, retain=True).wait_for_publish(5)

    with running(daemon):
        sub.wait(lambda t, p: t.endswith("/availability") and p.get("state") == "online")
        assert ask("remove", {"name": "mqtt_person"})["ok"] is True
        assert not _in_files(path, _vector_bytes(biden))
        person = {"kind": "person", "name": "fleet_person", "display_name": "F", "version": 1}
        fleet(
            f"{FLEET}/people/fleet_person",
            {**person, "model": model.sha256, "dim": 128, "embeddings": encode_vectors(fleet_vector[None])},
        )
        deadline = time.monotonic() + 10
        while not _in_files(path, fleet_vector.tobytes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _in_files(path, fleet_vector.tobytes())
        refused = ask("remove", {"name": "fleet_person"})
        assert refused["ok"] is False and "fleet authority" in refused["error"]
        # nor renamed out of the fleet's reach: its removal below would then miss the copy
        renamed = subprocess.run(
            [
                sys.executable,
                "-m",
                "facegate",
                "gallery",
                "rename",
                "fleet_person",
                "kept",
                "--gallery",
                str(path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert renamed.returncode != 0 and "fleet authority" in renamed.stderr, renamed.stderr
        # nor added to here: the fleet's next entry for the person would drop those faces unsaid
        photo = base64.b64encode((PHOTOS / "obama.jpg").read_bytes()).decode()
        added = ask("enroll", {"name": "fleet_person", "jpeg": photo})
        assert added["ok"] is False and "enroll it on the fleet authority" in added["error"], added
        with Gallery.open(tmp_path / "other.db", model) as other:
            other.add("fleet_person", [sample])
        transfer = tmp_path / "export.json"
        folders = tmp_path / "people"  # a_local comes first: refused too, as nothing is written
        for folder in ("a_local", "fleet_person"):
            (folders / folder).mkdir(parents=True)
            shutil.copy(PHOTOS / "biden.jpg", folders / folder)
        for args in (
            ["enroll", "fleet_person", str(PHOTOS / "obama.jpg")],
            ["enroll", "--dir", str(folders)],
            ["gallery", "export", str(transfer), "--gallery", str(tmp_path / "other.db")],
            ["gallery", "import", str(transfer), "--replace"],
        ):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "facegate",
                    *args,
                    *(["--gallery", str(path)] if "--gallery" not in args else []),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if args[1] != "export":
                assert done.returncode != 0 and "on the fleet authority" in done.stderr, (args, done.stderr)
        with Gallery.open(path, model) as gallery:
            assert len(gallery.embeddings("fleet_person")) == 1  # the fleet's one face, alone
        fleet(f"{FLEET}/people/fleet_person", {"kind": "tombstone", "name": "fleet_person", "version": 2})
        deadline = time.monotonic() + 10
        while _in_files(path, fleet_vector.tobytes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _in_files(path, fleet_vector.tobytes())
        listed = ask("list", {})
    assert [p["name"] for p in listed["result"]["people"]] == ["obama"]
    with Gallery.open(path, model) as gallery:  # the CLI's view is the MQTT one
        assert [p.name for p in gallery.people()] == ["obama"]
    sub.client.publish(f"{FLEET}/people/fleet_person", b"", retain=True).wait_for_publish(5)
    sub.close()
    _summary("removal by CLI, MQTT and fleet: embedding and image bytes gone from the gallery file and WAL")


def test_the_one_boundary_refuses_what_strict_parsers_refuse() -> None:
    """Everything facegate publishes parses in a strict parser: no NaN or Infinity out."""
    from facegate.decide import Identification
    from facegate.wire import dumps

    lonely = Identification("a", 0.1, "a", None, float("inf"), 0.9, 0.4, 1e-3)
    text = dumps(lonely.as_dict())
    assert (
        "Infinity" not in text and json.loads(text, parse_constant=lambda c: pytest.fail(c))["margin"] is None
    )
