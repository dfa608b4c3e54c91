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

from facegate.errors import FacegateError
from facegate.wire import dumps

log = logging.getLogger(__name__)


SCHEMA = 1
PERSON, TOMBSTONE, MANIFEST = "person", "tombstone", "manifest"
MAX_VERSION = 2**53  # versions stay exact in every JSON parser
MAX_PEOPLE = 100_000
SHA256 = re.compile(r"[0-9a-f]{64}")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


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
