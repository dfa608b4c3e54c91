"""Home Assistant MQTT discovery: the device and its entities, as retained config messages.

Home Assistant's core removed its face integrations; an MQTT device is what its users
have. ``discovery`` returns topic -> payload; ``facegate.mqtt.Link`` publishes them
(retained) at every connect and when Home Assistant says it is ``online``.
"""

from __future__ import annotations

import hashlib
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

    @property
    def unknown_face(self) -> str: ...


def object_id(name: str) -> str:
    """A person's object id in discovery: the name itself where it is one. A gallery name may
    hold '.', which an object id may not: '_' stands for it, and 8 hex digits of the name's
    hash follow, so that ``j.doe`` and ``j_doe`` stay two entities (they were one)."""
    if "." not in name:
        return name
    return f"{name.replace('.', '_')}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def person_topic(t: DeviceTopics, name: str) -> str:
    """The discovery topic of ``name``'s presence entity."""
    return f"{t.ha_prefix}/binary_sensor/{t.device}/person_{object_id(name)}/config"


def retired_topics(t: DeviceTopics, people: tuple[str, ...]) -> list[str]:
    """Topics of the presence entities that names with '.' had before ``object_id`` gave them a
    suffix (``person_j_doe``), to be cleared, unless a person of that very name has it now."""
    names = set(people)
    old = {name.replace(".", "_") for name in people if "." in name}
    return [f"{t.ha_prefix}/binary_sensor/{t.device}/person_{o}/config" for o in sorted(old - names)]


def discovery(
    t: DeviceTopics,
    device_name: str,
    model: dict[str, str],
    people: tuple[str, ...] = (),
    unknown_face_image: bool = False,
    configuration_url: str | None = None,
) -> dict[str, dict[str, Any]]:
    """One device and its entities, each following the device's availability: last person,
    known person present, recognition events; a presence entity for each of ``people`` (opt-in:
    it tells the broker who is enrolled); the last unknown face as an image (opt-in). With
    ``configuration_url`` (``web.url``) the device links to the review page."""
    device = {
        "identifiers": [f"facegate_{t.device}"],
        "name": device_name,
        "manufacturer": "facegate",
        "model": model.get("name", "facegate"),
        "sw_version": __version__,
    }
    if configuration_url:  # the review page: Home Assistant's "Visit" on the device's card
        device["configuration_url"] = configuration_url
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
    for name in people:  # gallery names: letters, digits, '_', '.', '-' (safe in a template)
        entities[person_topic(t, name)] = {
            "name": f"{name} present",
            "unique_id": f"facegate_{t.device}_person_{object_id(name)}",
            "state_topic": t.state,
            "value_template": f"{{{{ 'ON' if '{name}' in value_json.present else 'OFF' }}}}",
            "device_class": "presence",
        }
    if unknown_face_image:
        entities[f"{t.ha_prefix}/image/{t.device}/unknown_face/config"] = {
            "name": "Last unknown face",
            "unique_id": f"facegate_{t.device}_unknown_face",
            "image_topic": t.unknown_face,
            "content_type": "image/jpeg",
        }
    return {topic: {**body, **common} for topic, body in entities.items()}
