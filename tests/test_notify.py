"""systemd's notify protocol against a real datagram socket, and the watchdog."""

from __future__ import annotations

import os
import pathlib
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest

from facegate.notify import Notifier
from tests.mqtt_support import Broker, FeedSource
from tests.test_daemon import _config, running


class Listener:
    """A bound AF_UNIX datagram socket collecting what is sent to it."""

    def __init__(self, path: pathlib.Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, m in self.messages for line in m.split("\n")]

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def test_off_systemd_it_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.send("READY=1") is False
    notifier.watchdog()  # no socket, no interval: nothing to do


def test_messages_reach_the_socket(tmp_path: pathlib.Path) -> None:
    listener = Listener(tmp_path / "notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
    assert notifier.interval == pytest.approx(0.1)
    notifier.ready("watching")
    notifier.watchdog(now=100.0)
    notifier.watchdog(now=100.05)  # too soon: half the interval has not passed
    notifier.watchdog(now=100.11)
    notifier.stopping()
    time.sleep(0.3)
    listener.close()
    assert listener.lines() == ["READY=1", "STATUS=watching", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


def test_watchdog_for_another_pid_is_ignored() -> None:
    other = str(os.getpid() + 1)
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": other})
    assert notifier.interval is None


def test_daemon_is_ready_pings_and_stops_pinging_when_the_loop_hangs(
    broker: Broker,
    tmp_path: pathlib.Path,
    frames: dict[str, np.ndarray],
    obama_sample: Any,
) -> None:
    from facegate.daemon import Daemon

    listener = Listener(tmp_path / "notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"})
    config = _config(tmp_path, broker.port, obama_sample)
    feed = FeedSource()
    with running(Daemon(config, feed, notifier)):
        for _ in range(30):  # a live camera: a frame every 20 ms for 0.6 s
            feed.put(frames["blank"])
            time.sleep(0.02)
        feed.drained()
        time.sleep(0.1)
        hung_at = time.monotonic()
        time.sleep(1.0)  # the camera delivers nothing: the loop is stuck waiting for a frame
        during_hang = [line for t, m in listener.messages if t > hung_at + 0.05 for line in m.split("\n")]
    time.sleep(0.2)
    listener.close()
    lines = listener.lines()
    assert lines[0] == "READY=1" and lines[1].startswith("STATUS=watching folder; broker connected")
    pings = [i for i, line in enumerate(lines) if line == "WATCHDOG=1"]
    assert len(pings) >= 4 and pings[0] > 0  # pinged while frames flowed, after READY
    assert "WATCHDOG=1" not in during_hang  # a hung loop stops feeding the watchdog
    assert lines[-1] == "STOPPING=1"
