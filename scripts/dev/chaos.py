"""A real daemon under everything at once, then the invariants checked. Needs mosquitto.

    .venv/bin/python scripts/dev/chaos.py mixed --seconds 60
    .venv/bin/python scripts/dev/chaos.py kill --seconds 90

Both run ``facegate run`` (a folder of the bundled photos as its camera, review on, signed
commands enabled) against a mosquitto of their own, in a temporary folder.

- ``mixed``: beside it, ``facegate`` commands in a loop (enroll, list, backup, rename, remove,
  enroll again), signed MQTT commands (verify, list, enroll, remove, reload) with garbage
  between them, SIGHUP now and then, and the broker stopped for 2 s every 12 s. Then: is the
  daemon alive and still holding its locks, does the gallery pass ``integrity_check``, how
  many events and replies came, and what the log says (tracebacks, errors by kind).
- ``kill``: the daemon is killed with SIGKILL every 3-8 s and started again, while signed
  MQTT enrolls (a new name each) and ``facegate enroll`` (a new name each) go on. Then:
  every enroll the daemon acknowledged, and every one the CLI said it did, must be in the
  gallery, and the gallery must pass ``integrity_check``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import pathlib
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from facegate.commands import sign
from facegate.demo import PHOTOS

SECRET = "chaos-secret-0123456789"
FACEGATE = [sys.executable, "-m", "facegate"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Door:
    """A folder with a config, a broker, and the daemon's command line."""

    def __init__(self, work: pathlib.Path, commands: str) -> None:
        self.work, self.port = work, _port()
        frames = work / "frames"
        frames.mkdir()
        for i, name in enumerate(["obama.jpg", "obama2.jpg", "biden.jpg", "obama3.jpg"]):
            shutil.copy(PHOTOS / name, frames / f"{i}.jpg")
        self.config = work / "config.yaml"
        self.config.write_text(
            "device: {id: door}\n"
            "camera: {source: folder, path: frames, loop: true, max_fps: 10}\n"
            "gallery: {path: state/gallery.db}\n"
            f"mqtt: {{port: {self.port}, outbox: state/outbox}}\n"
            f"commands: {{enabled: [{commands}], secret: {SECRET}, rate_per_minute: 6000}}\n"
            "review: {enabled: true}\n"
        )
        self.gallery = ["--gallery", str(work / "state" / "gallery.db")]
        self.log = (work / "daemon.log").open("w")
        self.broker = self.start_broker()
        cli = subprocess.run([*FACEGATE, *self.gallery, "enroll", "obama", str(PHOTOS / "obama.jpg")])
        assert cli.returncode == 0

    def start_broker(self) -> subprocess.Popen[bytes]:
        broker = subprocess.Popen(
            ["mosquitto", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)
        return broker

    def daemon(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*FACEGATE, "run", "--config", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )

    def client(self, on_message: Any) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.connect("127.0.0.1", self.port)
        client.subscribe("facegate/door/#", qos=1)
        client.loop_start()
        return client

    def send(self, client: mqtt.Client, name: str, payload: dict[str, Any]) -> None:
        topic = f"facegate/door/command/{name}"
        client.publish(topic, json.dumps(sign(SECRET, "door", topic, payload)), qos=1)

    def report(self) -> None:
        db = sqlite3.connect(self.work / "state" / "gallery.db")
        print("integrity:", db.execute("PRAGMA integrity_check").fetchone()[0])
        people = db.execute("SELECT count(*) FROM people").fetchone()[0]
        embeddings = db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        print(f"gallery: {people} people, {embeddings} embeddings")
        text = (self.work / "daemon.log").read_text()
        kinds = collections.Counter(
            " ".join(line.split()[:2]) + " " + line.split(":", 1)[-1].strip()[:50]
            for line in text.splitlines()
            if line.startswith(("ERROR", "CRITICAL"))
        )
        print(f"log: {text.count('Traceback')} tracebacks; errors by kind: {dict(kinds)}")


def mixed(door: Door, seconds: float) -> None:
    events: list[dict[str, Any]] = []
    replies: list[dict[str, Any]] = []

    def received(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/event"):
            events.append(json.loads(message.payload))
        elif "/reply" in message.topic:
            replies.append(json.loads(message.payload))

    daemon = door.daemon()
    time.sleep(4)
    client = door.client(received)
    stop = time.monotonic() + seconds
    failures: list[Any] = []

    def cli() -> None:
        while time.monotonic() < stop:
            for argv in (
                ["enroll", "biden", str(PHOTOS / "biden.jpg")],
                ["gallery", "list"],
                ["gallery", "backup", str(door.work / "backup.db")],
                ["gallery", "rename", "biden", "joe"],
                ["gallery", "remove", "joe"],
                ["enroll", "obama", str(PHOTOS / "obama2.jpg")],
            ):
                done = subprocess.run([*FACEGATE, *door.gallery, *argv], capture_output=True, text=True)
                if done.returncode not in (0, 1) or "Traceback" in done.stderr:
                    failures.append((argv, done.returncode, done.stderr[-500:]))

    def commands() -> None:
        jpeg = base64.b64encode((PHOTOS / "biden.jpg").read_bytes()).decode()
        i = 0
        while time.monotonic() < stop:
            i += 1
            door.send(client, "verify", {"id": f"v{i}", "args": {"claim": "obama", "timeout_s": 2}})
            door.send(client, "list", {"id": f"l{i}"})
            door.send(client, "enroll", {"id": f"e{i}", "args": {"name": "mqtt", "jpeg": jpeg}})
            door.send(client, "remove", {"id": f"r{i}", "args": {"name": "mqtt"}})
            client.publish("facegate/door/command/enroll", random.randbytes(random.randint(0, 5000)), qos=1)
            if i % 5 == 0:
                door.send(client, "reload", {"id": f"reload{i}"})
            if i % 7 == 0:
                daemon.send_signal(signal.SIGHUP)
            time.sleep(0.3)

    def broker() -> None:
        while time.monotonic() < stop - 10:
            time.sleep(12)
            door.broker.terminate()
            door.broker.wait()
            time.sleep(2)
            door.broker = door.start_broker()

    _together(cli, commands, broker)
    time.sleep(5)
    alive = daemon.poll() is None
    locks = pathlib.Path("/proc/locks").read_text().count(f" {daemon.pid} ")
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(20)
    refused = collections.Counter(str(r.get("error", ""))[:40] for r in replies if not r.get("ok"))
    print(f"daemon alive at the end: {alive}, locks it held: {locks}, exit status after SIGTERM: {code}")
    print(f"events: {len(events)}; replies: {len(replies)}, refusals by kind: {dict(refused)}")
    print(f"facegate commands that failed: {len(failures)} {failures[:3]}")
    door.report()


def kill(door: Door, seconds: float) -> None:
    acknowledged: set[str] = set()
    enrolled: set[str] = set()

    def received(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if "/reply" in message.topic:
            reply = json.loads(message.payload)
            if reply.get("ok") and str(reply.get("id", "")).startswith("m"):
                acknowledged.add(reply["id"])

    client = door.client(received)
    stop = time.monotonic() + seconds
    running: list[subprocess.Popen[bytes]] = []
    kills = 0

    def daemons() -> None:
        nonlocal kills
        while time.monotonic() < stop:
            running.append(door.daemon())
            time.sleep(random.uniform(3, 8))
            running[-1].send_signal(signal.SIGKILL)
            running[-1].wait()
            kills += 1
        running.append(door.daemon())

    def commands() -> None:
        jpeg = base64.b64encode((PHOTOS / "biden.jpg").read_bytes()).decode()
        i = 0
        while time.monotonic() < stop:
            i += 1
            door.send(client, "enroll", {"id": f"m{i}", "args": {"name": f"m{i}", "jpeg": jpeg}})
            time.sleep(0.2)

    def cli() -> None:
        k = 0
        while time.monotonic() < stop:
            k += 1
            argv = [*FACEGATE, *door.gallery, "enroll", f"c{k}", str(PHOTOS / "obama3.jpg")]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode == 0:
                enrolled.add(f"c{k}")
            elif "Traceback" in done.stderr:
                print("facegate enroll:", done.stderr[-800:])

    _together(daemons, commands, cli)
    time.sleep(6)
    running[-1].send_signal(signal.SIGTERM)
    running[-1].wait(20)
    db = sqlite3.connect(door.work / "state" / "gallery.db")
    names = {row[0] for row in db.execute("SELECT name FROM people")}
    print(f"SIGKILLs: {kills}")
    lost = sorted(acknowledged - names)
    print(f"MQTT enrolls acknowledged: {len(acknowledged)}, missing from the gallery: {lost}")
    print(f"CLI enrolls that said so: {len(enrolled)}, missing from the gallery: {sorted(enrolled - names)}")
    door.report()


def _together(*jobs: Any) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("mixed", "kill"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if shutil.which("mosquitto") is None:
        raise SystemExit("needs mosquitto (apt install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="facegate-chaos-") as tmp:
        commands = "verify, list, enroll, remove, reload" if args.mode == "mixed" else "verify, enroll"
        door = Door(pathlib.Path(tmp), commands)
        try:
            (mixed if args.mode == "mixed" else kill)(door, args.seconds)
        finally:
            door.broker.terminate()


if __name__ == "__main__":
    main()
