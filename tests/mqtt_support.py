"""A real mosquitto on loopback, a subscriber, a cuttable TCP proxy, a frame feed."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facegate.demo.broker import free_port, wait_listening
from facegate.sources import Frame


def wait_port(port: int, timeout: float = 10.0) -> None:
    if not wait_listening(port, timeout):
        raise TimeoutError(f"nothing listens on port {port}")


class Broker:
    """A mosquitto on a free loopback port. With ``persistence`` it saves its state on every
    change, so it can be killed with SIGKILL and started again on the same port; ``extra``
    is appended to its config (a bridge, say)."""

    def __init__(self, workdir: pathlib.Path, persistence: bool = False, extra: str = "") -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
        )
        if exe is None:
            pytest.skip("mosquitto is not installed (`.ci/run` installs it with apt)")
        self.exe, self.workdir = exe, workdir
        self.port = free_port()
        saving = (
            # as root (CI), mosquitto would drop to the user `mosquitto`, who cannot write here
            ("user root\n" if os.geteuid() == 0 else "")
            + f"persistence true\npersistence_location {workdir}/\n"
            "autosave_on_changes true\nautosave_interval 1\n"
            if persistence
            else "persistence false\n"
        )
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{saving}{extra}")
        self.log = open(workdir / "mosquitto.log", "a")  # noqa: SIM115 - closed in stop()
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_port(self.port)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, no save on the way out."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


def locked_broker(workdir: pathlib.Path, user: str = "door", password: str = "right") -> Broker:
    """A mosquitto that refuses a login with the wrong password (``mosquitto_passwd``)."""
    workdir.mkdir(exist_ok=True)
    passwords = workdir / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), user, password], check=True)
    as_root = "user root\n" if os.geteuid() == 0 else ""  # else mosquitto drops to a user who cannot read it
    return Broker(workdir, extra=f"{as_root}password_file {passwords}\n")


class Subscriber:
    """Collects messages (topic, JSON or raw payload, properties, arrival time)."""

    def __init__(self, port: int, topics: list[str], session: str | None = None) -> None:
        """``session``: a client id whose session (subscriptions, queued QoS 1 messages) the
        broker keeps while this subscriber is away; paho reconnects it by itself."""
        self.messages: list[tuple[str, Any, Any, float]] = []
        self.raw: list[tuple[str, bytes, float]] = []  # the same messages' bytes as they came
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session or "", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        if session:
            keep = Properties(PacketTypes.CONNECT)
            keep.SessionExpiryInterval = 3600
            self.client.connect("127.0.0.1", port, clean_start=False, properties=keep)
            self.client.reconnect_delay_set(0.1, 1)
        else:
            self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload: Any = json.loads(message.payload)
        except (ValueError, RecursionError):  # the adversarial tests publish poison where it listens
            payload = message.payload
        with self._cond:
            now = time.time()
            self.messages.append((message.topic, payload, message.properties, now))
            self.raw.append((message.topic, bytes(message.payload), now))
            self._cond.notify_all()

    def wait(
        self, predicate: Callable[[str, Any], bool], count: int = 1, timeout: float = 20.0
    ) -> list[tuple[str, Any, Any, float]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if predicate(m[0], m[1])]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m[0], str(m[1])[:120]) for m in self.messages[-10:]]
                    raise AssertionError(f"waited {timeout}s for {count} message(s); last seen: {seen}")
                self._cond.wait(left)

    def publish(self, topic: str, payload: Any, **kw: Any) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1, **kw).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Proxy:
    """A TCP relay to the broker that can be cut (``down``) and restored (``up``)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.server.settimeout(0.1)
        self.is_up = threading.Event()
        self.is_up.set()
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            if not self.is_up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        self.is_up.clear()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def up(self) -> None:
        self.is_up.set()

    def close(self) -> None:
        self.closed = True
        self.down()
        self.server.close()


class FeedSource:
    """Frames the test hands over one by one; ``frames()`` ends on ``close``."""

    def __init__(self) -> None:
        self.queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self.index = 0

    def put(self, image: np.ndarray, times: int = 1) -> None:
        for _ in range(times):
            self.queue.put(image)

    def frames(self) -> Iterator[Frame]:
        while True:
            image = self.queue.get()
            if image is None:
                return
            yield Frame(image, "RGB", self.index, time.time())
            self.index += 1

    def drained(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.queue.put(None)


class Stage:
    """A camera that shows whatever scene the test puts in front of it, ~30 frames a second."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.stopped = threading.Event()

    def frames(self) -> Iterator[Frame]:
        index = 0
        while not self.stopped.is_set():
            yield Frame(self.image, "RGB", index, time.time())
            index += 1
            time.sleep(0.03)

    def close(self) -> None:
        self.stopped.set()


def until(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``condition`` every 50 ms until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value
