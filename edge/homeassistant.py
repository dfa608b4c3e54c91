"""Home Assistant MQTT discovery: the device and its entities, as retained config messages.

Home Assistant's core removed its face integrations; an MQTT device is what its users
have. ``discovery`` returns topic -> payload; ``facegate.mqtt.Link`` publishes them
(retained) at every connect and when Home Assistant says it is ``online``.
"""

from __future__ import annotations

from typing import Any, Protocol

from facegate import __version__


class DeviceTopics(Protocol):
    """The device's topics (``facegate.mqtt.Topics``)."""

    @property
    def device(self) -> str: ...

    @property
    def ha_prefix(self) -> str: ...

    @property
    def availability(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def event(self) -> str: ...


def discovery(t: DeviceTopics, device_name: str, model: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One device and three entities (last person, known person present, recognition
    events), each following the device's availability."""
    device = {
        "identifiers": [f"facegate_{t.device}"],
        "name": device_name,
        "manufacturer": "facegate",
        "model": model.get("name", "facegate"),
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
    return {topic: {**body, **common} for topic, body in entities.items()}
