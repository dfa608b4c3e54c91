"""A tiny MQTT 3.1.1 broker for ``facegate demo`` where mosquitto is not installed.

Loopback only, no authentication, no persistence: CONNECT (with Last Will),
PUBLISH at QoS 0/1 (retained messages kept), SUBSCRIBE/UNSUBSCRIBE with
``+``/``#`` wildcards, PINGREQ, DISCONNECT. An MQTT 5 client is answered
"unacceptable protocol version", which is how a 3.1.1-only broker says it, so
the daemon's fallback to 3.1.1 is exercised too. Not for production: use
mosquitto.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import struct
import threading

log = logging.getLogger(__name__)


def topic_matches(pattern: str, topic: str) -> bool:
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", data, at)
    return data[at + 2 : at + 2 + n], at + 2 + n


def _encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _encode_length(len(body)) + body


def _publish_packet(topic: str, payload: bytes, qos: int, retain: bool, mid: int) -> bytes:
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", mid)
    return _packet(0x30 | (qos << 1) | int(retain), body + payload)


class _Session:
    def __init__(self, broker: MiniBroker, sock: socket.socket) -> None:
        self.broker, self.sock = broker, sock
        self.subscriptions: dict[str, int] = {}
        self.will: tuple[str, bytes, int, bool] | None = None
        self.lock = threading.Lock()
        self.mid = 0

    def send(self, data: bytes) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        for pattern, granted in self.subscriptions.items():
            if topic_matches(pattern, topic):
                q = min(qos, granted)
                self.mid = self.mid % 65535 + 1
                self.send(_publish_packet(topic, payload, q, retain, self.mid))
                return

    def read_packet(self) -> tuple[int, bytes] | None:
        head = self._exactly(1)
        if head is None:
            return None
        length, shift = 0, 0
        while True:
            b = self._exactly(1)
            if b is None:
                return None
            length |= (b[0] & 0x7F) << shift
            shift += 7
            if not b[0] & 0x80:
                break
        body = self._exactly(length) if length else b""
        return (head[0], body) if body is not None else None

    def _exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        broker = self.server.broker
        session = _Session(broker, self.request)
        clean_exit = False
        try:
            first = session.read_packet()
            if first is None or first[0] >> 4 != 1:
                return
            if not self._connect(session, first[1]):
                return
            broker.sessions.add(session)
            while (packet := session.read_packet()) is not None:
                kind, flags, body = packet[0] >> 4, packet[0] & 0x0F, packet[1]
                if kind == 3:
                    self._publish(session, flags, body)
                elif kind == 8:
                    self._subscribe(session, body)
                elif kind == 10:
                    (mid,) = struct.unpack_from("!H", body)
                    at = 2
                    while at < len(body):
                        topic, at = _string(body, at)
                        session.subscriptions.pop(topic.decode(), None)
                    session.send(_packet(0xB0, struct.pack("!H", mid)))
                elif kind == 12:
                    session.send(b"\xd0\x00")
                elif kind == 14:
                    clean_exit = True
                    break
        except (OSError, struct.error, UnicodeDecodeError):
            pass
        finally:
            broker.sessions.discard(session)
            if not clean_exit and session.will is not None:
                broker.route(*session.will)

    def _connect(self, session: _Session, body: bytes) -> bool:
        _name, at = _string(body, 0)
        level, flags = body[at], body[at + 1]
        if level != 4:
            session.send(b"\x20\x02\x00\x01")  # unacceptable protocol version
            return False
        at += 4
        _client_id, at = _string(body, at)
        if flags & 0x04:
            topic, at = _string(body, at)
            message, at = _string(body, at)
            session.will = (topic.decode(), message, (flags >> 3) & 3, bool(flags & 0x20))
        session.send(b"\x20\x02\x00\x00")
        return True

    def _publish(self, session: _Session, flags: int, body: bytes) -> None:
        qos, retain = (flags >> 1) & 3, bool(flags & 1)
        topic, at = _string(body, 0)
        if qos:
            (mid,) = struct.unpack_from("!H", body, at)
            at += 2
            session.send(_packet(0x40, struct.pack("!H", mid)))
        self.server.broker.route(topic.decode(), body[at:], qos, retain)

    def _subscribe(self, session: _Session, body: bytes) -> None:
        (mid,) = struct.unpack_from("!H", body)
        at, granted = 2, []
        while at < len(body):
            pattern, at = _string(body, at)
            qos = min(body[at], 1)
            at += 1
            session.subscriptions[pattern.decode()] = qos
            granted.append(qos)
        session.send(_packet(0x90, struct.pack("!H", mid) + bytes(granted)))
        for topic, payload in list(self.server.broker.retained.items()):
            if any(topic_matches(p, topic) for p in session.subscriptions):
                session.deliver(topic, payload, 1, retain=True)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    broker: MiniBroker


class MiniBroker:
    def __init__(self, port: int = 0) -> None:
        self.sessions: set[_Session] = set()
        self.retained: dict[str, bytes] = {}
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.broker = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> MiniBroker:
        self._thread.start()
        return self

    def route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        for session in list(self.sessions):
            session.deliver(topic, payload, qos)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
