"""Fleet messages: topics, the signed bytes, embeddings as base64, the manifest hash."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import re
from typing import Any, Protocol

import numpy as np

from facegate.config import ID_PATTERN
from facegate.errors import FacegateError
from facegate.wire import Fields, PayloadError, dumps, parse_object

log = logging.getLogger(__name__)


SCHEMA = 1
PERSON, TOMBSTONE, MANIFEST = "person", "tombstone", "manifest"
MAX_VERSION = 2**53  # versions stay exact in every JSON parser
MAX_PEOPLE = 100_000
SHA256 = re.compile(r"[0-9a-f]{64}")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
MAX_REPORT_BYTES = 64 << 10  # a device's report is a few hundred bytes
REASON = re.compile(r"[a-z][a-z ]{0,39}")  # a refusal's reason, as FleetSync counts them
MAX_REASONS = 32


class Signer(Protocol):
    algorithm: str

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    algorithm: str

    def verify(self, data: bytes, signature: bytes) -> bool: ...


class FleetError(FacegateError):
    pass


def signed_bytes(topic: str, body: dict[str, Any]) -> bytes:
    fields = {k: v for k, v in body.items() if k != "sig"}
    return topic.encode() + b"\n" + dumps(fields, sort_keys=True, separators=(",", ":")).encode()


# --- messages -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FleetTopics:
    prefix: str

    def person(self, name: str) -> str:
        return f"{self.prefix}/people/{name}"

    @property
    def people(self) -> str:
        return f"{self.prefix}/people/+"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}/manifest"

    def device(self, device_id: str) -> str:
        return f"{self.prefix}/devices/{device_id}"

    @property
    def devices(self) -> str:
        return f"{self.prefix}/devices/+"


def encode_vectors(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, "<f4").tobytes()).decode()


def decode_vectors(text: str, dim: int) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    if not raw or len(raw) % (4 * dim):
        raise ValueError(f"embeddings are {len(raw)} bytes, not a whole number of {dim}-d float32 rows")
    vectors = np.frombuffer(raw, "<f4").reshape(-1, dim)
    if not np.all(np.isfinite(vectors)):
        raise ValueError("embeddings hold non-finite numbers")
    return vectors


def sign_message(signer: Signer, topic: str, body: dict[str, Any]) -> bytes:
    body = {"schema": SCHEMA, "alg": signer.algorithm, **body}
    body["sig"] = base64.b64encode(signer.sign(signed_bytes(topic, body))).decode()
    return dumps(body, separators=(",", ":")).encode()


def manifest_hash(people: dict[str, int]) -> str:
    return hashlib.sha256(json.dumps(people, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def signature_refusal(topic: str, fields: Fields, verifier: Verifier) -> tuple[str, str] | None:
    """None when a fleet message is this fleet's, signed for ``topic``; else why not, as
    (reason, detail). PayloadError when its ``sig`` is not base64."""
    body = fields.data
    sig = base64.b64decode(str(fields.string("sig", 200, BASE64, "base64")), validate=True)
    if body.get("schema") != SCHEMA or isinstance(body.get("schema"), bool):
        return "schema", f"schema {repr(body.get('schema'))[:40]}, this version reads {SCHEMA}"
    if body.get("alg") != verifier.algorithm or not verifier.verify(signed_bytes(topic, body), sig):
        return "bad signature", f"not signed by this fleet's {verifier.algorithm} key"
    return None


def parse_report(topic: str, payload: bytes, topics: FleetTopics) -> dict[str, Any]:
    """A device's report (``FleetMember.report``) as the authority reads it: the fields a
    device publishes, each checked, from the device its topic names. Anyone on the broker can
    write there, so anything else raises PayloadError: it is not a device's report."""
    fields = parse_object(payload, MAX_REPORT_BYTES, "device report")
    device = str(fields.string("device", 64, ID_PATTERN, "a device id"))
    if topic != topics.device(device):
        raise PayloadError("wrong topic", f"a report from {device!r} on {topic[:200]!r}")
    fields.integer("schema", SCHEMA, SCHEMA)  # this version's, or PayloadError
    reasons = fields.object("refused", required=False)
    if len(reasons.data) > MAX_REASONS or not all(REASON.fullmatch(r) for r in reasons.data):
        raise PayloadError("bad field", f"refused must map at most {MAX_REASONS} reasons to counts")
    return {
        "device": device,
        "seq": fields.integer("seq", 0, MAX_VERSION, required=False),
        "hash": fields.string("hash", 64, SHA256, "a sha256", required=False),
        "people": fields.integer("people", 0, MAX_PEOPLE),
        "converged": fields.boolean("converged"),
        "refused": {r: reasons.integer(r, 0, MAX_VERSION) for r in reasons.data},
    }
