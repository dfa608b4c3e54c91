"""The fleet's authority: its gallery as signed messages, and the devices' reports."""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import threading
import time
from typing import Any

import numpy as np

from facegate.files import write_private_json
from facegate.fleet.keys import signer_for, verifier_for
from facegate.fleet.messages import (
    MANIFEST,
    MAX_PEOPLE,
    MAX_VERSION,
    PERSON,
    TOMBSTONE,
    FleetError,
    FleetTopics,
    Signer,
    encode_vectors,
    manifest_hash,
    parse_report,
    sign_message,
    signature_refusal,
)
from facegate.gallery import NAME_PATTERN, Gallery
from facegate.wire import PayloadError, parse_object, printable

log = logging.getLogger(__name__)


# --- the authority ----------------------------------------------------------------


def _digest(display_name: str, vectors: np.ndarray) -> str:
    return hashlib.sha256(display_name.encode() + np.ascontiguousarray(vectors, "<f4").tobytes()).hexdigest()


class Authority:
    """Turns the authority's gallery into fleet messages. Its versions live in a private state
    file beside the gallery, written (atomically) before anything is published, so a crash
    half-way only means the same messages are published again."""

    def __init__(self, gallery: Gallery, signer: Signer, prefix: str, state_path: pathlib.Path) -> None:
        self.gallery, self.signer = gallery, signer
        self.topics = FleetTopics(prefix)
        self.state_path = state_path
        self.state = self._load()

    def _load(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"seq": 0, "people": {}, "removed": {}}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            state["seq"] = int(state["seq"])
            return state
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FleetError(
                f"{self.state_path}: unreadable fleet state ({exc}); restore it from a backup"
            ) from None

    def _save(self) -> None:
        try:
            write_private_json(self.state_path, self.state, durable=True, indent=1, sort_keys=True)
        except OSError as exc:  # before anything of it is published
            raise FleetError(f"{self.state_path}: cannot save the fleet state ({exc.strerror})") from None

    def plan(self, now: float | None = None, full: bool = False) -> list[tuple[str, bytes]]:
        """The messages that bring the fleet to this gallery: an entry for each new or changed
        person, a tombstone for each one gone, and a new manifest if anything changed. With
        ``full`` (or when the last publish did not finish) every entry, tombstone and the
        manifest again, at the versions they have: applying them twice changes nothing."""
        now = time.time() if now is None else now
        full = full or self.state.get("published_seq") != self.state["seq"]
        people, removed = self.state["people"], self.state["removed"]
        out: list[tuple[str, bytes]] = []
        current = {p.name: p for p in self.gallery.people()}
        model = self.gallery.model
        for name in sorted(current):
            vectors = self.gallery.embeddings(name)
            digest = _digest(current[name].display_name, vectors)
            if people.get(name, {}).get("digest") != digest:
                self.state["seq"] += 1
                people[name] = {"version": self.state["seq"], "digest": digest}
                removed.pop(name, None)
            elif not full:
                continue
            body = {
                "kind": PERSON,
                "name": name,
                "display_name": current[name].display_name,
                "version": people[name]["version"],
                "model": model.sha256,
                "dim": model.embedding_size,
                "embeddings": encode_vectors(vectors),
                "ts": round(now, 3),
            }
            out.append((self.topics.person(name), sign_message(self.signer, self.topics.person(name), body)))
        for name in sorted(set(people) - set(current)):
            self.state["seq"] += 1
            del people[name]
            removed[name] = {"version": self.state["seq"], "since": now}
        for name, r in sorted(removed.items()):
            if full or r["version"] > self.state.get("published_seq", 0):
                body = {"kind": TOMBSTONE, "name": name, "version": r["version"], "ts": round(now, 3)}
                topic = self.topics.person(name)
                out.append((topic, sign_message(self.signer, topic, body)))
        if out or full:
            out.append(self._manifest(now))
        self._save()
        return out

    def published(self) -> None:
        """Every message of the last plan was acknowledged by the broker."""
        self.state["published_seq"] = self.state["seq"]
        self._save()

    def _manifest(self, now: float) -> tuple[str, bytes]:
        body = {
            "kind": MANIFEST,
            "seq": self.state["seq"],
            "people": self.manifest_people(),
            "removed": {n: r["version"] for n, r in sorted(self.state["removed"].items())},
            "ts": round(now, 3),
        }
        return self.topics.manifest, sign_message(self.signer, self.topics.manifest, body)

    def manifest_people(self) -> dict[str, int]:
        return {n: p["version"] for n, p in sorted(self.state["people"].items())}

    def collect(
        self, acknowledged: dict[str, int], ttl_s: float, now: float | None = None
    ) -> list[tuple[str, bytes]]:
        """Clear the retained tombstones every device has acknowledged (reported a manifest at
        or past the removal) or that are older than ``ttl_s``; the manifest keeps no record of
        them after that, and a device that comes back later still drops them (unlisted)."""
        now = time.time() if now is None else now
        done = [
            name
            for name, r in self.state["removed"].items()
            if now - r["since"] > ttl_s or (acknowledged and min(acknowledged.values()) >= r["version"])
        ]
        if not done:
            return []
        for name in done:
            del self.state["removed"][name]
        out: list[tuple[str, bytes]] = [(self.topics.person(n), b"") for n in sorted(done)]
        self.state["seq"] += 1  # a new manifest, so devices see the change
        out.append(self._manifest(now))
        self._save()
        return out


class _Reports:
    """A short MQTT session that reads the fleet's retained device reports and manifest."""

    def __init__(self, config: Any, prefix: str) -> None:
        from facegate.mqtt import client_for, private_client_id

        self.topics = FleetTopics(prefix)
        self.devices: dict[str, dict[str, Any]] = {}  # device -> its report, checked
        self.ignored: dict[str, str] = {}  # topic -> why what is retained there is no report
        self.manifest: bytes | None = None  # as retained: status checks its signature
        self._connected = threading.Event()
        self._refused: str | None = None
        self.client = client_for(config, client_id=private_client_id("facegate-authority"))
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.m = config.mqtt

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:  # a wrong login, say: nothing may be published as if it went out
            self._refused = str(reason)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic, payload = str(message.topic), bytes(message.payload)
        if topic == self.topics.manifest:
            self.manifest = payload or None
            return
        if not payload:
            return  # a report being cleared
        try:
            report = parse_report(topic, payload, self.topics)
        except PayloadError as exc:
            self.ignored[topic] = str(exc)
            log.warning("fleet: ignored %s: not a device's report (%s)", printable(topic[:200]), exc)
            return
        self.devices[report.pop("device")] = report

    def __enter__(self) -> _Reports:
        from facegate.mqtt import refused, unreachable

        try:
            self.client.connect(self.m.host, self.m.port, keepalive=self.m.keepalive)
        except (OSError, ValueError) as exc:
            raise FleetError(unreachable(self.m.host, self.m.port, exc)) from None
        self.client.loop_start()
        if not self._connected.wait(10):
            self.__exit__()
            raise FleetError(f"no answer from the broker at {self.m.host}:{self.m.port}")
        if self._refused is not None:
            self.__exit__()
            raise FleetError(refused(self.m.host, self.m.port, self._refused))
        self.client.subscribe([(self.topics.devices, 1), (self.topics.manifest, 1)])
        return self

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)  # retained messages arrive at once; a moment for slow links

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def summary(self) -> dict[str, dict[str, Any]]:
        return dict(sorted(self.devices.items()))


def _check_sizes(messages: list[tuple[str, bytes]], limit: int) -> None:
    """Refuse to publish a message the devices would refuse: over ``mqtt.max_payload`` a
    device drops it as malformed, and an MQTT 5 broker does not even deliver it."""
    for topic, payload in messages:
        if len(payload) > limit:
            raise FleetError(
                f"{topic} would be {len(payload)} bytes, over mqtt.max_payload ({limit}), the most a "
                f"device takes; nothing was published. Raise mqtt.max_payload to at least "
                f"{len(payload)} here and on every device, and the broker's message_size_limit"
            )


def publish(config: Any, full: bool = False, wait_s: float = 2.0) -> dict[str, Any]:
    """``facegate fleet publish``: the authority's gallery to the fleet, over the config's
    broker. Reads the devices' reports first, to clear tombstones they have all applied."""
    from facegate.encoder import Encoder
    from facegate.enroll import fingerprint

    model = fingerprint(Encoder(config.models.encoder))
    gallery = Gallery.open(config.gallery.path, model, create=False)
    path = gallery.path.with_name(gallery.path.name + ".fleet.json")
    try:
        authority = Authority(gallery, signer_for(config), config.fleet.prefix, path)
        with _Reports(config, config.fleet.prefix) as reports:
            reports.wait(wait_s)
            acknowledged = {d: r["seq"] for d, r in reports.devices.items() if r["seq"] is not None}
            messages = authority.plan(full=full)
            messages += authority.collect(acknowledged, config.fleet.tombstone_days * 86400)
            _check_sizes(messages, config.mqtt.max_payload)  # nothing sent; the next try is whole
            infos = [reports.client.publish(t, payload, qos=1, retain=True) for t, payload in messages]
            for info in infos:
                info.wait_for_publish(30)
            authority.published()
        people = authority.manifest_people()
        return {
            "published": len(messages),
            "seq": authority.state["seq"],
            "people": len(people),
            "manifest_hash": manifest_hash(people),
            "tombstones": len(authority.state["removed"]),
            "devices": reports.summary(),
            "ignored_reports": len(reports.ignored),
        }
    finally:
        gallery.close()


def status(config: Any, wait_s: float = 2.0) -> dict[str, Any]:
    """``facegate fleet status``: the manifest on the broker and what each device reports."""
    with _Reports(config, config.fleet.prefix) as reports:
        reports.wait(wait_s)
    seq, people, refused = None, None, None
    if reports.manifest is not None:
        try:
            fields = parse_object(reports.manifest, config.mqtt.max_payload, "manifest")
            refusal = signature_refusal(reports.topics.manifest, fields, verifier_for(config))
            if refusal is None:
                seq = fields.integer("seq", 0, MAX_VERSION)
                people = fields.versions("people", NAME_PATTERN, MAX_PEOPLE, MAX_VERSION)
            else:
                refused = f"{refusal[0]}: {refusal[1]}"
        except (PayloadError, ValueError) as exc:  # ValueError: a sig that is not base64
            refused = f"malformed: {exc}"
    return {
        "seq": seq,
        "people": len(people) if people is not None else None,
        "manifest_hash": manifest_hash(people) if people is not None else None,
        "manifest_refused": refused,  # what is retained there is not this fleet's manifest
        "devices": reports.summary(),
        "ignored_reports": len(reports.ignored),
    }
