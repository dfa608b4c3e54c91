"""Single unsigned poison messages against the `facegate run` of a given checkout.

    git worktree add /tmp/old 75bf4a5      # the commit before issue 15's hardening
    .venv/bin/python scripts/dev/poison_before_after.py /tmp/old
    .venv/bin/python scripts/dev/poison_before_after.py .

Prints, for each message, whether the daemon was still running 3 s after it.
(tests/test_adversarial.py is the full suite; this only shows the before/after.)
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from tests.mqtt_support import Broker

checkout = str(pathlib.Path(sys.argv[1]).resolve())
tmp = pathlib.Path(tempfile.mkdtemp())
broker = Broker(tmp)
frames = tmp / "frames"
frames.mkdir()
Image.fromarray(np.full((480, 640, 3), 96, np.uint8)).save(frames / "a.png")
cfg = {
    "device": {"id": "door1"},
    "camera": {"source": "folder", "path": str(frames), "loop": True, "max_fps": 10},
    "gallery": {"path": str(tmp / "g.db")},
    "mqtt": {"port": broker.port, "outbox": str(tmp / "out")},
}
(tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
env = {**os.environ, "PYTHONPATH": checkout}
attacks = {
    "MQTT 5 response topic with a wildcard": (
        "verify",
        b'{"args": {"claim": "x"}}',
        "facegate/door1/reply/#",
    ),
    "reply_to with a wildcard on a refused command": (
        "unlock",
        b'{"reply_to": "facegate/door1/reply/#"}',
        None,
    ),
    "deeply nested JSON": ("verify", b"[" * 100000 + b"]" * 100000, None),
}
for what, (name, payload, response) in attacks.items():
    log = open(tmp / "d.log", "w")  # noqa: SIM115 - the child writes to it
    p = subprocess.Popen(
        [sys.executable, "-m", "facegate", "run", "--config", str(tmp / "c.yaml")],
        cwd=checkout,
        env=env,
        stderr=log,
        stdout=subprocess.DEVNULL,
    )
    time.sleep(6)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    props = None
    if response:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response
    c.publish(f"facegate/door1/command/{name}", payload, qos=1, properties=props).wait_for_publish(5)
    time.sleep(3)
    alive = p.poll() is None
    print(f"{what}: {'still running' if alive else f'ENDED (exit {p.returncode})'}")
    c.disconnect()
    c.loop_stop()
    if alive:
        p.terminate()
        p.wait(20)
broker.stop()
