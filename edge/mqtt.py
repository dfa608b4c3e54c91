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
  the request's correlation data, else to ``reply_to`` in the payload, if
  that topic is ``reply`` or under ``reply/``; otherwise to ``reply``.

Events are written to an outbox folder before they are published and removed
when the broker acknowledges them (PUBACK). A broker that is down or slow
never blocks the camera loop: paho queues the messages in memory and resends
unacknowledged ones on reconnect, and the outbox resends them after a
restart. The outbox holds at most ``mqtt.outbox_max`` events; beyond that the
oldest are dropped, counted and logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import __version__
from edge.config import Config
from edge.files import write_private_json

if TYPE_CHECKING:
    from edge.fleet import FleetMember

log = logging.getLogger(__name__)

SCHEMA = 1
ONLINE = json.dumps({"schema": SCHEMA, "state": "online"})
OFFLINE = json.dumps({"schema": SCHEMA, "state": "offline"})


def client_for(config: Config, protocol: Any = mqtt.MQTTv311, client_id: str = "") -> mqtt.Client:
    """A paho client with the config's login and TLS (certificates checked unless
    ``mqtt.tls_insecure``): the daemon, ``facegate watch`` and ``doctor`` all use it."""
    m = config["mqtt"]
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if protocol == mqtt.MQTTv5 else True,
    )
    if m["username"]:
        client.username_pw_set(m["username"], config.mqtt_password)
    if m["tls"]:
        client.tls_set(
            ca_certs=m["ca_file"], certfile=m["cert_file"], keyfile=m["key_file"], cert_reqs=ssl.CERT_REQUIRED
        )
        client.tls_insecure_set(m["tls_insecure"])
    return client


@dataclasses.dataclass(frozen=True)
class Topics:
    base: str
    ha_prefix: str
    device: str

    @classmethod
    def from_config(cls, config: Config) -> Topics:
        device = config["device"]["id"]
        return cls(f"{config['mqtt']['prefix']}/{device}", config["homeassistant"]["prefix"], device)

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
    def commands(self) -> str:
        return f"{self.base}/command/+"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def ha_status(self) -> str:
        return f"{self.ha_prefix}/status"


@dataclasses.dataclass(frozen=True)
class Request:
    """A command as received: its name, raw payload and where to reply."""

    name: str
    payload: bytes
    reply_topic: str | None
    correlation: bytes | None


class Link:
    """One MQTT connection for the daemon. ``start`` returns at once; the
    network runs in paho's thread and reconnects with backoff (1 to 60 s)."""

    def __init__(
        self,
        config: Config,
        on_request: Callable[[Request], None],
        model: dict[str, str] | None = None,
        fleet: FleetMember | None = None,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.topics = Topics.from_config(config)
        self.on_request = on_request
        self.model = model or {}
        self.outbox = pathlib.Path(config["mqtt"]["outbox"])
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.outbox_max = config["mqtt"]["outbox_max"]
        self.dropped = 0
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, pathlib.Path] = {}
        self._state: str | None = None
        self._stopping = False
        m = config["mqtt"]
        self.protocol = mqtt.MQTTv5 if m["protocol"] in ("auto", "5") else mqtt.MQTTv311
        self.client = self._make_client()

    # --- connection -----------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        m = self.config["mqtt"]
        client = client_for(self.config, self.protocol, m["client_id"] or f"facegate-{self.topics.device}")
        client.enable_logger(log)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.max_queued_messages_set(0)  # unbounded in memory; the outbox bounds it
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        m = self.config["mqtt"]
        for path in self.outbox.glob("*.tmp"):  # half written when an earlier run was killed
            path.unlink(missing_ok=True)
        for path in sorted(self.outbox.glob("*.json")):  # left by an earlier run
            self._send(path)
        self.client.connect_async(m["host"], m["port"], keepalive=m["keepalive"])
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

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            if (
                self.config["mqtt"]["protocol"] == "auto"
                and self.protocol == mqtt.MQTTv5
                and reason.value in (1, 132)
            ):
                log.warning("broker does not speak MQTT 5; falling back to 3.1.1")
                self.protocol = mqtt.MQTTv311
                threading.Thread(target=self._fall_back, daemon=True).start()
            else:
                log.error("MQTT connection refused: %s", reason)
            return
        log.info("connected to MQTT broker %s:%s", self.config["mqtt"]["host"], self.config["mqtt"]["port"])
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        client.subscribe(self.topics.commands, qos=1)
        if self.config["homeassistant"]["discovery"]:
            client.subscribe(self.topics.ha_status, qos=1)
            self.publish_discovery()
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
            self.client = self._make_client()
        self.start()  # resends everything still in the outbox

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("MQTT disconnected (%s); events are kept until the broker is back", reason)

    # --- events ---------------------------------------------------------------

    def publish_event(self, event: dict[str, Any]) -> None:
        """Write the event to the outbox, then publish it (QoS 1). Never blocks on the network."""
        name = f"{time.time_ns():020d}-{event['event_id']}.json"
        path = self.outbox / name
        write_private_json(path, event)
        self._trim()
        self._send(path)

    def _send(self, path: pathlib.Path) -> None:
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return
        with self._lock:
            info = self.client.publish(self.topics.event, payload, qos=1, retain=False)
            self._inflight[info.mid] = path

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            path = self._inflight.pop(mid, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _trim(self) -> None:
        pending = sorted(self.outbox.glob("*.json"))
        for path in pending[: max(0, len(pending) - self.outbox_max)]:
            path.unlink(missing_ok=True)
            self.dropped += 1
            log.warning("outbox full (%d events): dropped the oldest, %s", self.outbox_max, path.name)

    @property
    def pending(self) -> int:
        return len(list(self.outbox.glob("*.json")))

    def publish_state(self, state: dict[str, Any]) -> None:
        self._state = json.dumps({"schema": SCHEMA, **state})
        if self.connected.is_set():
            self.client.publish(self.topics.state, self._state, qos=1, retain=True)

    # --- commands -------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topics.ha_status:
            if message.payload == b"online":
                self.publish_discovery()
            return
        if self.fleet is not None and self.fleet.owns(message.topic):
            self.fleet.handle(client, message.topic, bytes(message.payload))
            return
        name = message.topic.rsplit("/", 1)[-1]
        props = getattr(message, "properties", None)
        reply_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        self.on_request(Request(name, bytes(message.payload), reply_topic, correlation))

    def reply_topic(self, request: Request, reply_to: str | None = None) -> str:
        """The MQTT 5 response topic, else the payload's ``reply_to``, if it lies under
        ``{prefix}/{device}/reply``; else ``reply`` itself. The device never
        publishes outside its own tree on a requester's say-so (a reply must not
        land on, say, a lock's command topic)."""
        for topic in (request.reply_topic, reply_to):
            if topic and (topic == self.topics.reply or topic.startswith(self.topics.reply + "/")):
                return topic
            if topic:
                log.warning("reply topic %r is outside %s; replying there instead", topic, self.topics.reply)
        return self.topics.reply

    def reply(self, request: Request, body: dict[str, Any], reply_to: str | None = None) -> None:
        topic = self.reply_topic(request, reply_to)
        payload = json.dumps({"schema": SCHEMA, "command": request.name, **body})
        properties = None
        if self.protocol == mqtt.MQTTv5 and request.correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = request.correlation
        self.client.publish(topic, payload, qos=1, retain=False, properties=properties)

    # --- Home Assistant -------------------------------------------------------------

    def publish_discovery(self) -> None:
        """Device + entities for Home Assistant's MQTT discovery (retained)."""
        t = self.topics
        device = {
            "identifiers": [f"facegate_{t.device}"],
            "name": self.config["device"]["name"],
            "manufacturer": "facegate",
            "model": self.model.get("name", "facegate"),
            "sw_version": __version__,
        }
        availability = [{"topic": t.availability, "value_template": "{{ value_json.state }}"}]
        common = {"device": device, "availability": availability}
        entities: dict[str, dict[str, Any]] = {
            f"{t.ha_prefix}/sensor/{t.device}/last_person/config": {
                "name": "Last person",
                "unique_id": f"facegate_{t.device}_last_person",
                "state_topic": t.state,
                "value_template": "{{ value_json.last.identity if value_json.last else 'none' }}",
                "json_attributes_topic": t.state,
                "icon": "mdi:face-recognition",
            },
            f"{t.ha_prefix}/binary_sensor/{t.device}/known_person/config": {
                "name": "Known person present",
                "unique_id": f"facegate_{t.device}_known_person",
                "state_topic": t.state,
                "value_template": "{{ 'ON' if value_json.known_present else 'OFF' }}",
                "device_class": "occupancy",
            },
            f"{t.ha_prefix}/event/{t.device}/recognition/config": {
                "name": "Recognition",
                "unique_id": f"facegate_{t.device}_recognition",
                "state_topic": t.event,
                "event_types": ["known", "unknown", "verify_accepted", "verify_rejected"],
            },
        }
        for topic, body in entities.items():
            self.client.publish(topic, json.dumps({**body, **common}), qos=1, retain=True)
