"""A local MQTT broker for the demo and the benchmarks, on a free loopback port.

mosquitto where it is installed (what a device runs); else amqtt, a maintained
pure-Python broker, in this process (``pip install 'facegate[demo]'``), so the
demo needs neither root nor apt. amqtt speaks MQTT 3.1.1 only: it answers a
plain MQTT 5 CONNECT with "unsupported protocol version", but drops one that
carries a Last Will without an answer, so ``start_broker`` says which protocol
to use. ``FACEGATE_DEMO_BROKER=amqtt`` picks amqtt even where mosquitto is
installed (the tests use it to cover this path).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from facegate.errors import FacegateError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_exe() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if pathlib.Path(p).exists()), None
    )


def start_mosquitto(exe: str, extra: str = "persistence false\n") -> tuple[subprocess.Popen[bytes], int]:
    """mosquitto on a free loopback port, anonymous, with ``extra`` config lines; returns once
    it accepts connections."""
    port = free_port()
    conf = pathlib.Path(tempfile.mkdtemp()) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{extra}")
    process = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_listening(port):
        process.kill()
        raise FacegateError(f"mosquitto ({exe}) did not start listening on port {port}")
    return process, port


class AmqttBroker:
    """amqtt's broker in a thread of its own (its own asyncio loop), anonymous, loopback only."""

    def __init__(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise FacegateError(
                "no MQTT broker for the demo: install mosquitto (sudo apt install mosquitto) or the "
                "embedded one (pip install 'facegate[demo]')"
            ) from None
        self._broker_class = Broker
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._failed: BaseException | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._serve, name="amqtt", daemon=True).start()
        if not self._ready.wait(15) or self._failed is not None or not wait_listening(self.port):
            raise FacegateError(f"amqtt did not start on port {self.port}: {self._failed}")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}}

        async def start() -> None:
            self._broker = self._broker_class(config)  # made inside the loop, as amqtt wants
            await self._broker.start()

        try:
            self._loop.run_until_complete(start())
        except Exception as exc:  # reported by __init__
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)


def start_broker() -> tuple[int, Callable[[], None], str, str]:
    """A broker on a free loopback port: (port, stop, what it is, the ``mqtt.protocol`` to use:
    amqtt drops an MQTT 5 CONNECT that carries a Last Will without answering, so the daemon
    is told to speak 3.1.1 to it rather than left to find out)."""
    exe = mosquitto_exe()
    if exe is None or os.environ.get("FACEGATE_DEMO_BROKER") == "amqtt":
        embedded = AmqttBroker()
        why = "FACEGATE_DEMO_BROKER=amqtt" if exe else "mosquitto is not installed"
        what = f"amqtt in this process (MQTT 3.1.1; {why}) on 127.0.0.1:{embedded.port}"
        return embedded.port, embedded.stop, what, "3.1.1"
    process, port = start_mosquitto(exe)

    def stop() -> None:
        process.terminate()
        process.wait(10)

    return port, stop, f"mosquitto ({exe}) on 127.0.0.1:{port}", "auto"
