"""``facegate demo``: the main job on bundled photos, with no camera or set-up.

1. Stills: one photo enrolls a person (one-shot) into a throw-away gallery;
   the other photos are probes: each is detected, aligned, embedded with the
   shipped int8 encoder, then verified against the claim "obama" and
   identified (1:N, open set) at the model card's calibrated operating point
   (FAR 1e-3).
2. Live: a local MQTT broker (mosquitto if installed, else amqtt in-process:
   ``facegate.demo.broker``),
   the daemon fed a clip generated from the photos, a verify command sent over
   MQTT, and every event and reply printed as a subscriber receives it.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time
from typing import Any

import numpy as np

from facegate.decide import OperatingPoint, identify, verify
from facegate.encoder import Encoder
from facegate.enroll import Enroller, fingerprint
from facegate.errors import FacegateError
from facegate.gallery import Gallery
from facegate.images import load_rgb
from facegate.perception import Perception
from facegate.wire import dumps

PHOTOS = pathlib.Path(__file__).resolve().parent / "photos"  # package data (MIT: LICENSE inside)
ENROLL = {"obama": "obama.jpg"}
PROBES = [
    ("obama2.jpg", "obama"),
    ("obama3.jpg", "obama"),
    ("obama_partial_face.jpg", "obama"),
    ("biden.jpg", None),
]


def run_demo(model: pathlib.Path) -> int:
    encoder = Encoder(model)
    enroller = Enroller(Perception(), encoder)
    op = OperatingPoint.from_card(encoder.card, 1e-3)
    entry = encoder.card.thresholds["far_0.001"]
    print(
        f"model {encoder.card.name} ({encoder.card.sha256[:12]}), threshold {op.threshold:.4f} "
        f"(target FAR {op.target_far:g}, calibrated on {entry['measured_on']})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        wrong = _enroll_and_probe(pathlib.Path(tmp) / "gallery.db", enroller, op)
    total = 2 * len(PROBES)
    print(f"{total - wrong} of {total} decisions right")
    live = run_live_demo(model)
    return 0 if wrong == 0 and live == 0 else 1


def _enroll_and_probe(path: pathlib.Path, enroller: Enroller, op: OperatingPoint) -> int:
    """Enroll, then verify and identify each probe; returns the wrong decisions."""
    with Gallery.open(path, fingerprint(enroller.encoder)) as gallery:
        for name, photo in ENROLL.items():
            enroller.enroll(gallery, name, [PHOTOS / photo])
        print(f"enrolled from one photo each: {', '.join(f'{n} <- {p}' for n, p in ENROLL.items())}")
        templates = gallery.templates()
    print(f"{'probe':<26}{'truth':<10}{'verify obama':>20}  {'identify':<10}")
    wrong = 0
    for photo, truth in PROBES:
        embedding = enroller.sample(PHOTOS / photo).vector
        claim = verify(templates, embedding, "obama", op)
        found = identify(templates, embedding, op)
        wrong += claim.accepted != (truth == "obama")
        wrong += found.name != truth
        decision = f"{'ACCEPT' if claim.accepted else 'reject'} d={claim.distance:.3f}"
        print(f"{photo:<26}{truth or 'stranger':<10}{decision:>20}  {found.name or 'unknown':<10}")
    return wrong


def scene(
    photo: pathlib.Path,
    face_width: float = 110.0,
    centre: tuple[float, float] = (320.0, 220.0),
    size: tuple[int, int] = (640, 480),
    perception: Perception | None = None,
) -> np.ndarray:
    """A camera-like frame: the photo's largest face scaled to ``face_width`` px
    and moved to ``centre`` of a grey ``size`` (width, height) frame."""
    from PIL import Image

    rgb = load_rgb(photo)
    faces = (perception or Perception()).faces(rgb)
    if not faces:
        raise FacegateError(f"{photo}: no face to build a scene from")
    face = max(faces, key=lambda f: f.detection.width)
    left, top, right, bottom = face.detection.box
    scale = face_width / (right - left)
    cx, cy = (left + right) / 2 * scale, (top + bottom) / 2 * scale
    image = Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)))
    canvas = Image.new("RGB", size, (96, 96, 96))
    canvas.paste(image, (round(centre[0] - cx), round(centre[1] - cy)))
    return np.asarray(canvas)


def run_live_demo(model: pathlib.Path) -> int:
    """The daemon on a generated clip, through a local MQTT broker; prints what it publishes."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from facegate.config import validate
    from facegate.daemon import Daemon
    from facegate.demo.broker import start_broker
    from facegate.sources import ArraySource

    port, stop_broker, what, protocol = start_broker()
    print(f"\nlive: broker {what}")
    perception = Perception()
    blank = np.full((480, 640, 3), 96, np.uint8)
    clip = (
        [scene(PHOTOS / "obama2.jpg", perception=perception)] * 8
        + [blank] * 6
        + [scene(PHOTOS / "biden.jpg", perception=perception)] * 8
        + [blank] * 6
        + [
            scene(PHOTOS / "obama3.jpg", centre=(260.0 + 4 * i, 220.0), perception=perception)
            for i in range(9)
        ]
        + [blank] * 4
        + [scene(PHOTOS / "obama_partial_face.jpg", perception=perception)] * 8
        + [blank] * 6
    )
    expected = [
        ("identify", "obama"),
        ("identify", "unknown"),
        ("identify", "obama"),
        ("verify", "obama"),
        ("identify", "obama"),
    ]
    received: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = validate(
            {
                "device": {"id": "demo", "name": "facegate demo"},
                "camera": {"source": "folder", "path": tmp, "max_fps": 15},
                "models": {"encoder": str(model)},
                "gallery": {"path": f"{tmp}/gallery.db"},
                "mqtt": {"host": "127.0.0.1", "port": port, "protocol": protocol, "outbox": f"{tmp}/outbox"},
                "decision": {"votes_to_decide": 3, "window": 5, "max_missing": 2},
            }
        )
        daemon = Daemon(config, ArraySource(clip))
        daemon.gallery.add("obama", [daemon.enroller.sample(PHOTOS / "obama.jpg")])
        print("live: enrolled obama <- obama.jpg; clip: obama, biden (not enrolled), obama walking, obama")
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        base = "facegate/demo"

        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            body = json.loads(message.payload)
            if message.topic.endswith("/event"):
                received.append((body["type"], body["identity"]))
                print(
                    f"  event  {body['type']:<8} {body['event_type']:<16} identity={body['identity']:<8} "
                    f"d={body['distance']} frames={body['frames']} id={body['event_id'][:8]}"
                )
                if len(received) == 3:  # someone claims to be obama for the next person at the door
                    request = {"id": "demo-1", "args": {"claim": "obama"}, "reply_to": f"{base}/reply/demo"}
                    client.publish(f"{base}/command/verify", dumps(request), qos=1)
                    print("  sent   verify claim=obama")
            elif "/reply/" in message.topic:
                result = body.get("result") or {}
                print(f"  reply  id={body['id']} ok={body['ok']} accepted={result.get('accepted')}")

        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe([(f"{base}/event", 1), (f"{base}/reply/#", 1)])
        sub.loop_start()
        time.sleep(0.3)
        daemon.run()
        time.sleep(0.5)
        sub.loop_stop()
        sub.disconnect()
    stop_broker()
    ok = sorted(received) == sorted(expected)
    print(f"live: {len(received)} events, {'as expected' if ok else f'expected {expected}'}")
    return 0 if ok else 1
