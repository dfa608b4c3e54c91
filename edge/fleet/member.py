"""A device in the fleet over MQTT: subscriptions, messages applied, reports."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from facegate.fleet.keys import verifier_for
from facegate.fleet.messages import SCHEMA
from facegate.fleet.store import GalleryStore
from facegate.fleet.sync import FleetSync
from facegate.gallery import Gallery
from facegate.wire import dumps

log = logging.getLogger(__name__)


# --- MQTT glue ------------------------------------------------------------------------


class FleetMember:
    """A device in the fleet over MQTT: what to subscribe to, each message applied as it
    arrives (in the MQTT client's thread), and the device's report, retained on
    ``{prefix}/devices/{id}``, so the authority knows what it holds. ``status`` is a plain
    dict the daemon reads for its own state topic."""

    def __init__(
        self, sync: FleetSync, device_id: str, report_every_s: float = 0.5, resync_after_s: float = 30.0
    ) -> None:
        self.sync, self.device_id = sync, device_id
        self.resync_after_s = resync_after_s
        self.resyncs = 0
        self._resync: threading.Timer | None = None
        self._last_message = 0.0
        self.topics = sync.topics
        self.status = sync.status()
        self.report_every_s = report_every_s
        self._reported_at = 0.0
        self._reported: tuple[Any, ...] = ()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def subscriptions(self) -> list[str]:
        return [self.topics.people, self.topics.manifest]

    def owns(self, topic: str) -> bool:
        return topic.startswith(self.topics.prefix + "/people/") or topic == self.topics.manifest

    def handle(self, client: Any, topic: str, payload: bytes) -> str:
        outcome = self.sync.handle(topic, payload)
        if outcome == "applied" or outcome.startswith("refused"):
            was = self.status["converged"]
            self.status = self.sync.status()
            if self.status["converged"] and not was:
                log.info(
                    "fleet: converged on manifest %s (%d people)", self.status["seq"], self.status["people"]
                )
            self.report(client)
        self._arm_resync(client)
        return outcome

    def _arm_resync(self, client: Any) -> None:
        """If the manifest names entries this device lacks and nothing arrives for
        ``resync_after_s`` (a broker that dropped messages from a full queue, say),
        subscribe again: the broker then re-sends every retained entry. One timer at a
        time, pushed back by each message."""
        with self._lock:
            self._last_message = time.monotonic()
            if self._resync is None:
                self._start_resync_timer(client, self.resync_after_s)

    def _start_resync_timer(self, client: Any, delay: float) -> None:
        self._resync = threading.Timer(delay, self._resubscribe, (client,))
        self._resync.daemon = True
        self._resync.start()

    def _resubscribe(self, client: Any) -> None:
        with self._lock:
            quiet = time.monotonic() - self._last_message
            if quiet < self.resync_after_s:
                self._start_resync_timer(client, self.resync_after_s - quiet)
                return
            self._resync = None
        status = self.status
        if status["seq"] is None or status["converged"]:
            return
        self.resyncs += 1
        log.warning(
            "fleet: %s entr(ies) of manifest %s still missing; fetching the retained entries again",
            status.get("missing"),
            status["seq"],
        )
        client.subscribe([(topic, 1) for topic in self.subscriptions()])

    def cancel(self) -> None:
        with self._lock:
            for timer in (self._resync, self._timer):
                if timer is not None:
                    timer.cancel()

    def report(self, client: Any, force: bool = False) -> None:
        """Publish the device's report if it changed: at once when convergence changes, else at
        most every ``report_every_s``, with a last one when the changes stop (never stale)."""
        with self._lock:
            s = self.status
            key = (s["seq"], s["hash"], s["converged"], s["people"], tuple(sorted(s["refused"].items())))
            if key == self._reported and not force:
                return
            wait = self.report_every_s - (time.monotonic() - self._reported_at)
            converging = bool(self._reported) and s["converged"] != self._reported[2]
            if wait > 0 and not force and not converging:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._trailing, (client,))
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._reported_at, self._reported = time.monotonic(), key
            body = {"schema": SCHEMA, "device": self.device_id, **s, "ts": round(time.time(), 3)}
        client.publish(self.topics.device(self.device_id), dumps(body), qos=1, retain=True)

    def _trailing(self, client: Any) -> None:
        with self._lock:
            self._timer = None
        self.report(client)


def member_for(config: Any, model: Any) -> FleetMember:
    """The daemon's fleet membership: its own connection to the gallery file."""
    gallery = Gallery.open(config.gallery.path, model, create=True)
    prefix = config.fleet.prefix
    sync = FleetSync(
        GalleryStore(gallery),
        verifier_for(config),
        model.sha256,
        model.embedding_size,
        prefix,
        config.mqtt.max_payload,
    )
    return FleetMember(sync, config.device.id)
