"""The daemon's MQTT side (paho-mqtt 2.x, callback API version 2).

Topic tree, under ``{prefix}/{device}/`` (every payload is JSON with a
``schema`` number; see docs/MQTT.md):

- ``availability`` retained ``{"state": "online"}``; the Last Will sets
  ``offline``, so a crash reads as offline.
- ``event`` one message per decided track or verify request, QoS 1, never
  retained. Each has an ``event_id`` (consumers de-duplicate on it) and a
  ``time`` (consumers reject stale ones).
- ``state`` retained summary for dashboards.
- ``command/{name}`` requests; replies go to the MQTT 5 response topic with
  the request's correlation data, else to ``reply_to`` in the payload, when
  that topic passes ``facegate.wire.check_reply_topic`` (``reply`` or a plain
  topic under ``reply/``); otherwise to ``reply``.

Nothing a message carries can stop this link: every callback runs behind
``facegate.wire.guarded`` (an exception is logged, counted in ``errors`` and
dropped), requests wait on a bounded queue (a flood is dropped and counted,
never queued without end), and with MQTT 5 the broker is told the largest
packet this client takes (``mqtt.max_payload``), so it never sends a larger one.

Events go to an outbox folder (``facegate.outbox``) before they are published.
A broker that is down or slow never blocks the camera loop: paho queues the
messages in memory and resends unacknowledged ones on reconnect, and the
outbox resends them after a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import secrets
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facegate.commands import sign_published
from facegate.config import Config
from facegate.events import SCHEMA
from facegate.homeassistant import discovery, person_topic, retired_topics
from facegate.outbox import Outbox
from facegate.wire import PayloadError, check_correlation, check_reply_topic, dumps, guarded, parse_object

log = logging.getLogger(__name__)
paho_log = logging.getLogger(__name__ + ".paho")  # paho's own messages


class _QuietRetries(logging.Filter):
    """paho logs "Client is not connected" as an ERROR at each retry while the broker is down
    (every 1 to 60 s, for as long as it is down): that filled the journal with one line a
    minute. ``Link._on_connect_fail`` says why once per cause; those lines are DEBUG. A link
    cut under it (a broker or router restarted, Wi-Fi lost) paho logs as an ERROR too, though
    it is routine and the link reconnects by itself: that line names the socket's error, so it
    stays, as the WARNING it is (``Link._on_disconnect`` follows it)."""

    ROUTINE = ("failed to receive on socket", "timeout on socket")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.levelno > logging.DEBUG and message.startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return paho_log.isEnabledFor(logging.DEBUG)
        if record.levelno > logging.WARNING and message.startswith(self.ROUTINE):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


paho_log.addFilter(_QuietRetries())

ONLINE = dumps({"schema": SCHEMA, "state": "online"})
OFFLINE = dumps({"schema": SCHEMA, "state": "offline"})
DISCOVERY_EVERY_S = 10.0  # Home Assistant's "online" re-sends discovery at most this often
PACKET_OVERHEAD = 64 * 1024  # topic and properties on top of the payload
ACKED_KEPT_S = 10.0  # how long an acknowledgement waits for its publish() to return


def private_client_id(stem: str) -> str:
    """``stem`` and 64 random bits. A broker drops a client when another connects with its
    client id (MQTT's session takeover), and connecting takes no secret on many brokers: an
    id that could be guessed from the device's topics would let a stranger cut the door off
    at will. facegate keeps no broker session between connections, so nothing needs the id
    to stay the same across starts."""
    return f"{stem}-{secrets.token_hex(8)}"


def client_for(config: Config, protocol: Any = mqtt.MQTTv311, client_id: str = "") -> mqtt.Client:
    """A paho client with the config's login and TLS (certificates checked unless
    ``mqtt.tls_insecure``): the daemon, ``facegate watch`` and ``doctor`` all use it."""
    m = config.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if protocol == mqtt.MQTTv5 else True,
    )
    if m.username:
        client.username_pw_set(m.username, config.mqtt_password)
    if m.tls:
        client.tls_set(
            ca_certs=m.ca_file, certfile=m.cert_file, keyfile=m.key_file, cert_reqs=ssl.CERT_REQUIRED
        )
        client.tls_insecure_set(m.tls_insecure)
    return client


def unreachable(host: str, port: int, exc: BaseException) -> str:
    """What to tell someone whose command could not open a connection to the broker."""
    why = getattr(exc, "strerror", None) or exc
    return (
        f"cannot reach the MQTT broker at {host}:{port} ({why}); is it running, and are mqtt.host "
        "and mqtt.port right? (`facegate doctor` checks)"
    )


def refused(host: str, port: int, reason: str) -> str:
    """What to tell someone whose connection the broker refused (a wrong login, say)."""
    return (
        f"the MQTT broker at {host}:{port} refused the connection: {reason} "
        "(check mqtt.username and mqtt.password)"
    )


@dataclasses.dataclass(frozen=True)
class Topics:
    base: str
    ha_prefix: str
    device: str

    @classmethod
    def from_config(cls, config: Config) -> Topics:
        device = config.device.id
        return cls(f"{config.mqtt.prefix}/{device}", config.homeassistant.prefix, device)

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def unknown_face(self) -> str:
        return f"{self.base}/unknown_face"

    @property
    def commands(self) -> str:
        return f"{self.base}/command/+"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def ha_status(self) -> str:
        return f"{self.ha_prefix}/status"


class Member(Protocol):
    """Topics a component shares with this link (the fleet: ``facegate.fleet.FleetMember``):
    what to subscribe to on every connect, which incoming topics are its own, and what to
    publish once connected. The link knows nothing more of it, and imports nothing of it."""

    def subscriptions(self) -> list[str]: ...

    def owns(self, topic: str) -> bool: ...

    def handle(self, client: Any, topic: str, payload: bytes) -> str: ...

    def report(self, client: Any, force: bool = False) -> None: ...


@dataclasses.dataclass(frozen=True)
class Request:
    """A command as received, unchecked: its topic, raw payload, whether the broker held it
    retained, and the MQTT 5 response topic and correlation data as they came (each
    checked by ``facegate.commands.Authority`` before use)."""

    topic: str
    payload: bytes
    retained: bool = False
    reply_topic: object = None
    correlation: object = None

    @property
    def name(self) -> str:
        return self.topic.rsplit("/", 1)[-1][:64]


class Link:
    """One MQTT connection for the daemon. ``start`` returns at once; the
    network runs in paho's thread and reconnects with backoff (1 to 60 s)."""

    def __init__(
        self,
        config: Config,
        on_request: Callable[[Request], bool],
        model: dict[str, str] | None = None,
        fleet: Member | None = None,
    ) -> None:
        """``on_request`` queues a request for the daemon's thread; False when its queue is
        full (the request is then dropped and counted)."""
        self.config = config
        self.fleet = fleet
        self.topics = Topics.from_config(config)
        self.on_request = on_request
        self.model = model or {}
        self.outbox = Outbox(config.mqtt.outbox, config.mqtt.outbox_max)
        self._secret = config.command_secret  # read once, as the command check reads it
        self.errors: Counter[str] = Counter()  # what went wrong at the boundary, by kind
        self._discovery_at = -DISCOVERY_EVERY_S
        self._last_fail: str | None = None
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, pathlib.Path] = {}  # event mid -> its outbox file
        self._acked: dict[int, float] = {}  # mids acknowledged before _publish recorded them
        self._state: str | None = None
        self._people: tuple[str, ...] = ()  # whose presence entities are announced
        self._gone: set[str] = set()  # whose entities are still to be withdrawn
        self._stopping = False
        m = config.mqtt
        self.protocol = mqtt.MQTTv5 if m.protocol in ("auto", "5") else mqtt.MQTTv311
        self.client_id = m.client_id or private_client_id(f"facegate-{self.topics.device}")
        self.client = self._make_client()

    # --- connection -----------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = client_for(self.config, self.protocol, self.client_id)
        client.enable_logger(paho_log)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.max_queued_messages_set(0)  # unbounded in memory; the outbox bounds it
        boundary = guarded(self._callback_failed)
        client.on_connect = boundary(self._on_connect)
        client.on_connect_fail = boundary(self._on_connect_fail)
        client.on_disconnect = boundary(self._on_disconnect)
        client.on_publish = boundary(self._on_publish)
        client.on_message = boundary(self._on_message)
        return client

    def _callback_failed(self, callback: str, exc: BaseException) -> None:
        self.errors[f"{callback}: {type(exc).__name__}"] += 1
        log.error("MQTT %s failed and was skipped: %s: %s", callback, type(exc).__name__, str(exc)[:200])

    def _connect_properties(self) -> Properties | None:
        if self.protocol != mqtt.MQTTv5:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = self.config.mqtt.max_payload + PACKET_OVERHEAD
        return props

    def start(self) -> None:
        m = self.config.mqtt
        for warning in self.config.warnings:
            log.warning("%s", warning)
        for path in self.outbox.leftovers():
            self._send(path)
        self.client.connect_async(
            m.host, m.port, keepalive=m.keepalive, properties=self._connect_properties()
        )
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), wait briefly for pending events, disconnect."""
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
            deadline = time.monotonic() + timeout
            while self._inflight and time.monotonic() < deadline:
                time.sleep(0.05)
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """paho calls this from inside its ``except OSError``: the exception is the cause (a
        certificate that does not verify, a refused port, a name that does not resolve)."""
        exc = sys.exc_info()[1]
        m = self.config.mqtt
        cause = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown cause"
        if isinstance(exc, ssl.SSLCertVerificationError):
            cause += " (check mqtt.ca_file and that mqtt.host matches the broker's certificate)"
        elif isinstance(exc, ssl.SSLError):
            cause += " (a TLS problem: is the port a TLS listener, and the client certificate right?)"
        if cause != self._last_fail:  # once per cause, not at every retry
            log.error("cannot connect to MQTT broker %s:%s: %s; retrying", m.host, m.port, cause)
            self._last_fail = cause
        self.errors["connect failed"] += 1

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            if (
                self.config.mqtt.protocol == "auto"
                and self.protocol == mqtt.MQTTv5
                and reason.value in (1, 132)
            ):
                log.warning("broker does not speak MQTT 5; falling back to 3.1.1")
                self.protocol = mqtt.MQTTv311
                threading.Thread(target=self._fall_back, daemon=True).start()
            else:
                log.error("MQTT connection refused: %s", reason)
            return
        self._last_fail = None
        log.info("connected to MQTT broker %s:%s", self.config.mqtt.host, self.config.mqtt.port)
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        client.subscribe(self.topics.commands, qos=1)
        if self.config.homeassistant.discovery:
            client.subscribe(self.topics.ha_status, qos=1)
            self.publish_discovery(force=True)
        if self._state is not None:
            client.publish(self.topics.state, self._state, qos=1, retain=True)
        if self.fleet is not None:
            client.subscribe([(topic, 1) for topic in self.fleet.subscriptions()])
            self.fleet.report(client, force=True)
        self.connected.set()

    def _fall_back(self) -> None:
        self.client.loop_stop()
        with self._lock:  # the new client numbers its messages from 1 again
            self._inflight.clear()
            self._acked.clear()
            self.client = self._make_client()
        self.start()  # resends everything still in the outbox

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("MQTT disconnected (%s); events are kept until the broker is back", reason)

    # --- events ---------------------------------------------------------------

    def publish_event(self, event: dict[str, Any]) -> None:
        """Write the event to the outbox, then publish it (QoS 1). Never blocks on the network;
        an outbox that cannot be written does not stop it (``facegate.outbox``)."""
        payload = self._signed(self.topics.event, dumps(event).encode())
        self._publish(payload, self.outbox.write(str(event["event_id"]), payload))

    def _signed(self, topic: str, body: bytes) -> bytes:
        """``body`` as published: with its ``hmac`` when the device holds a command secret (a
        consumer holding it can tell the device's events and replies from anyone else's)."""
        if self._secret is None:
            return body
        return sign_published(self._secret, self.topics.device, topic, body)

    @property
    def outbox_error(self) -> str | None:
        return self.outbox.error

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    @property
    def pending(self) -> int:
        return self.outbox.pending

    def _send(self, path: pathlib.Path) -> None:
        """An event an earlier run left in the outbox. Its file is written without an fsync (one
        per event would stall the frame loop on an SD card), so a power cut can leave it empty
        or cut short: such a file is removed and logged, never published as an event."""
        try:
            payload = path.read_bytes()
        except OSError:
            return
        try:
            parse_object(payload, self.config.mqtt.max_payload, "event")
        except PayloadError as exc:
            log.warning("outbox %s: not a whole event (%s), removed unsent", path.name, exc)
            self.outbox.done(path)
            return
        self._publish(payload, path)

    def _publish(self, payload: bytes, path: pathlib.Path | None) -> None:
        # Not under self._lock: paho calls _on_publish holding its lock on the messages in
        # flight, which publish() takes too, so holding ours across publish() let each thread
        # wait for the other for ever (a daemon wedged after a few thousand events). The
        # acknowledgement may then come before the mid is recorded: _on_publish keeps it.
        client = self.client
        info = client.publish(self.topics.event, payload, qos=1, retain=False)
        if path is None:
            return
        with self._lock:
            if client is not self.client:
                return  # replaced meanwhile (protocol fallback): start() sends the outbox again
            acked = self._acked.pop(info.mid, None) is not None
            if not acked:
                self._inflight[info.mid] = path
        if acked:
            self.outbox.done(path)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            path = self._inflight.pop(mid, None)
            if path is None and client is self.client:
                # an event's acknowledgement that beat _publish, or a reply's, state's, ...: kept
                # ACKED_KEPT_S (the same mid comes round again only after 65,535 publishes)
                now = time.monotonic()
                self._acked.pop(mid, None)
                self._acked[mid] = now
                while now - next(iter(self._acked.values())) > ACKED_KEPT_S:
                    del self._acked[next(iter(self._acked))]
        if path is not None:
            self.outbox.done(path)

    def publish_state(self, state: dict[str, Any]) -> None:
        self._state = dumps(state)  # facegate.events.State.as_dict(), schema included
        if self.connected.is_set():
            self.client.publish(self.topics.state, self._state, qos=1, retain=True)

    # --- commands -------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic  # paho decodes it; the broker only passes valid UTF-8
        if topic == self.topics.ha_status:
            if message.payload == b"online":
                self.publish_discovery()
            return
        if self.fleet is not None and self.fleet.owns(topic):
            self.fleet.handle(client, topic, bytes(message.payload))
            return
        if not topic.startswith(self.topics.base + "/command/"):
            self.errors["unexpected topic"] += 1
            return
        props = getattr(message, "properties", None)
        request = Request(
            topic,
            bytes(message.payload),
            bool(message.retain),
            getattr(props, "ResponseTopic", None) if props else None,
            getattr(props, "CorrelationData", None) if props else None,
        )
        if not self.on_request(request):
            self.errors["requests dropped (queue full)"] += 1

    def reply_topic(self, request: Request, reply_to: str | None = None) -> str:
        """The MQTT 5 response topic, else the payload's ``reply_to``, when it passes
        ``check_reply_topic`` (``reply`` or a plain topic under ``reply/``); else
        ``reply`` itself. The device never publishes outside its own tree on a
        requester's say-so (a reply must not land on, say, a lock's command topic)."""
        for topic in (request.reply_topic, reply_to):
            if topic is not None:
                try:
                    return check_reply_topic(topic, self.topics.reply)
                except PayloadError:
                    break  # refused by the command check already; the answer goes to `reply`
        return self.topics.reply

    def reply(self, request: Request, body: dict[str, Any], reply_to: str | None = None) -> None:
        """Publish ``body`` (``facegate.events.reply``) as the answer to a request. Never raises:
        a reply that cannot be sent is logged and counted."""
        topic = self.reply_topic(request, reply_to)
        payload = self._signed(topic, dumps(body).encode())
        properties = None
        try:
            correlation = check_correlation(request.correlation)
        except PayloadError:
            correlation = None
        if self.protocol == mqtt.MQTTv5 and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        try:
            self.client.publish(topic, payload, qos=1, retain=False, properties=properties)
        except (ValueError, TypeError, OSError) as exc:
            self.errors["reply failed"] += 1
            log.error("reply to %s not sent: %s", topic, exc)

    # --- Home Assistant -------------------------------------------------------------

    def publish_discovery(self, force: bool = False) -> None:
        """Device + entities for Home Assistant's MQTT discovery (retained); on Home Assistant's
        "online", at most every ``DISCOVERY_EVERY_S`` (anyone can publish that word)."""
        if not force:
            now = time.monotonic()
            if now - self._discovery_at < DISCOVERY_EVERY_S:
                self.errors["home assistant status ignored (too often)"] += 1
                return
            self._discovery_at = now
        h = self.config.homeassistant
        for name in sorted(self._gone):
            self.client.publish(person_topic(self.topics, name), b"", qos=1, retain=True)
        self._gone.clear()
        for topic in retired_topics(self.topics, self._people):
            self.client.publish(topic, b"", qos=1, retain=True)
        web = self.config.web
        entities = discovery(
            self.topics,
            self.config.device.name,
            self.model,
            self._people,
            h.unknown_face_image,
            web.url if web.enabled else None,
        )
        for topic, payload in entities.items():
            self.client.publish(topic, dumps(payload), qos=1, retain=True)

    def set_people(self, people: tuple[str, ...]) -> None:
        """The enrolled people, for their presence entities (``homeassistant.person_entities``):
        a new person's entity is announced, a removed person's is withdrawn (an empty retained
        config, which Home Assistant takes as a deletion)."""
        h = self.config.homeassistant
        if not (h.discovery and h.person_entities) or people == self._people:
            return
        self._gone = (self._gone | set(self._people)) - set(people)
        self._people = people
        if self.connected.is_set():  # else at the next connect
            self.publish_discovery(force=True)

    def publish_unknown_face(self, image: bytes) -> None:
        """The last unknown face, for Home Assistant's image entity (opt-in; not retained)."""
        h = self.config.homeassistant
        if h.discovery and h.unknown_face_image and self.connected.is_set():
            self.client.publish(self.topics.unknown_face, image, qos=1, retain=False)
