"""Fleet: one gallery for many devices, carried by the MQTT broker they already share.

An *authority* (``facegate fleet publish``, on a workstation or one device)
publishes each person of its gallery as a retained, signed message on
``{prefix}/people/{name}``, and a retained, signed *manifest* on
``{prefix}/manifest`` listing every person and version. Devices subscribe,
check the signature and the model, and apply each change to their own
SQLite gallery, idempotently by version. A device that joins late, or was
offline, gets the whole state from the retained messages.

Messages (JSON; ``sig`` is over the topic, a newline and the canonical JSON
of every other field, so an entry cannot be moved to another topic):

- person: ``name``, ``display_name``, ``version``, ``model`` (sha256 of the
  encoder that made the embeddings), ``dim``, ``embeddings`` (base64 of
  little-endian float32, one row per enrollment image), ``ts``;
- tombstone (the same topic, when a person is removed): ``name``, ``version``;
- manifest: ``seq`` (the highest version issued), ``people`` {name: version},
  ``removed`` {name: version}.

Versions come from one counter on the authority, so they only grow. A device
refuses an entry whose version is not above what it already holds (a replay),
a bad signature, and embeddings from another model, each with a log line.
The manifest makes deletion impossible to miss: a device drops every person
it got from the fleet that the manifest no longer lists, even if it never saw
the tombstone. Tombstones are cleared from the broker once every device has
reported the manifest that removed the person, or after ``tombstone_days``.

Signatures: Ed25519 by default (``cryptography``). Devices then hold only the
public key, so a stolen device cannot enroll anyone into the fleet. HMAC-SHA256
with a shared key is the alternative where installing ``cryptography`` is not
possible; then every device's key can sign, and it must be guarded as such.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import pathlib
import re
import threading
import time
from collections import Counter
from typing import Any, Protocol

import numpy as np

from facegate.errors import FacegateError
from facegate.files import write_private_json
from facegate.gallery import NAME_PATTERN, Gallery
from facegate.wire import Fields, PayloadError, dumps, parse_object

log = logging.getLogger(__name__)

SCHEMA = 1
PERSON, TOMBSTONE, MANIFEST = "person", "tombstone", "manifest"
MAX_VERSION = 2**53  # versions stay exact in every JSON parser
MAX_PEOPLE = 100_000
SHA256 = re.compile(r"[0-9a-f]{64}")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
DISPLAY_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class FleetError(FacegateError):
    pass


# --- signatures ---------------------------------------------------------------


def signed_bytes(topic: str, body: dict[str, Any]) -> bytes:
    fields = {k: v for k, v in body.items() if k != "sig"}
    return topic.encode() + b"\n" + dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class Signer(Protocol):
    algorithm: str

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    algorithm: str

    def verify(self, data: bytes, signature: bytes) -> bool: ...


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise FleetError(
            "fleet.signature ed25519 needs the `cryptography` package: pip install 'facegate[fleet]' "
            "(or apt install python3-cryptography), or use fleet.signature: hmac"
        ) from None
    return serialization, ed25519


class Ed25519Signer:
    algorithm = "ed25519"

    def __init__(self, private_key_file: str | os.PathLike[str]) -> None:
        serialization, ed25519 = _crypto()
        try:
            key = serialization.load_pem_private_key(pathlib.Path(private_key_file).read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise FleetError(f"{private_key_file}: not a readable Ed25519 private key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise FleetError(f"{private_key_file}: not an Ed25519 private key")
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data))

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self._key.public_key())


class Ed25519Verifier:
    algorithm = "ed25519"

    def __init__(self, key: Any) -> None:
        self._key = key

    @classmethod
    def from_file(cls, public_key_file: str | os.PathLike[str]) -> Ed25519Verifier:
        serialization, ed25519 = _crypto()
        try:
            key = serialization.load_pem_public_key(pathlib.Path(public_key_file).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise FleetError(f"{public_key_file}: not a readable Ed25519 public key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise FleetError(f"{public_key_file}: not an Ed25519 public key")
        return cls(key)

    def verify(self, data: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class HmacKey:
    """Signs and verifies with one shared key (every holder can do both)."""

    algorithm = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise FleetError("the fleet HMAC key must be at least 16 characters")
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def verify(self, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), signature)


def keygen(directory: str | os.PathLike[str], name: str = "fleet") -> tuple[pathlib.Path, pathlib.Path]:
    """A new Ed25519 pair: ``{name}.key`` (0600, the authority's) and ``{name}.pub`` (devices')."""
    serialization, ed25519 = _crypto()
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private, public):
        if path.exists():
            raise FleetError(f"{path} exists; not overwritten (a new key would orphan the fleet's entries)")
    key = ed25519.Ed25519PrivateKey.generate()
    fd = os.open(private, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def verifier_for(config: Any) -> Verifier:
    f = config["fleet"]
    if f["signature"] == "hmac":
        return HmacKey(config.fleet_hmac_key)
    if f["public_key_file"]:
        return Ed25519Verifier.from_file(f["public_key_file"])
    return Ed25519Signer(f["private_key_file"]).verifier()


def signer_for(config: Any) -> Signer:
    f = config["fleet"]
    if f["signature"] == "hmac":
        return HmacKey(config.fleet_hmac_key)
    if not f["private_key_file"]:
        raise FleetError("publishing to the fleet needs fleet.private_key_file (the authority's key)")
    return Ed25519Signer(f["private_key_file"])


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


# --- the device side ------------------------------------------------------------


class Store(Protocol):
    """Where a device keeps what the fleet gave it (its gallery, or memory in the benchmark)."""

    def versions(self) -> dict[str, tuple[int, bool]]: ...  # name -> (version, deleted)

    def put(self, name: str, display_name: str, version: int, vectors: np.ndarray) -> bool: ...

    def delete(self, name: str, version: int) -> bool: ...

    def manifest(self) -> dict[str, Any] | None: ...

    def set_manifest(self, manifest: dict[str, Any]) -> None: ...


class GalleryStore:
    """The device's own gallery file (a connection of its own; the daemon's matcher sees the
    changes through SQLite's data_version)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    def versions(self) -> dict[str, tuple[int, bool]]:
        return self.gallery.fleet_versions()

    def put(self, name: str, display_name: str, version: int, vectors: np.ndarray) -> bool:
        return self.gallery.fleet_put(name, display_name, version, vectors)

    def delete(self, name: str, version: int) -> bool:
        return self.gallery.fleet_delete(name, version)

    def manifest(self) -> dict[str, Any] | None:
        return self.gallery.fleet_manifest()

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        self.gallery.set_fleet_manifest(manifest)

    def close(self) -> None:
        self.gallery.close()


class MemoryStore:
    """A store in memory: the benchmark's simulated devices run the same sync code on it."""

    def __init__(self) -> None:
        self._versions: dict[str, tuple[int, bool]] = {}
        self.people: dict[str, np.ndarray] = {}
        self._manifest: dict[str, Any] | None = None

    def versions(self) -> dict[str, tuple[int, bool]]:
        return dict(self._versions)

    def put(self, name: str, display_name: str, version: int, vectors: np.ndarray) -> bool:
        if self._versions.get(name, (0, False))[0] >= version:
            return False
        self._versions[name] = (version, False)
        self.people[name] = vectors
        return True

    def delete(self, name: str, version: int) -> bool:
        if self._versions.get(name, (0, False))[0] >= version:
            return False
        self._versions[name] = (version, True)
        self.people.pop(name, None)
        return True

    def manifest(self) -> dict[str, Any] | None:
        return self._manifest

    def set_manifest(self, manifest: dict[str, Any]) -> None:
        self._manifest = manifest


class FleetSync:
    """Applies the fleet's messages to a ``Store``. ``handle`` is safe to call with anything
    a broker delivers: every refusal is counted and logged, none raises."""

    def __init__(
        self,
        store: Store,
        verifier: Verifier,
        model_sha256: str,
        dim: int,
        prefix: str,
        max_bytes: int = 1 << 20,
    ) -> None:
        self.store, self.verifier = store, verifier
        self.max_bytes = max_bytes
        self.model, self.dim = model_sha256, dim
        # What the store holds, mirrored here so each message costs O(1), not a scan; and the
        # names that keep the device from having converged on its manifest.
        self._held = store.versions()
        self._live = sum(1 for _, deleted in self._held.values() if not deleted)
        self._manifest_now = store.manifest()
        self._missing: set[str] = set()
        self._extra: set[str] = set()
        self._recheck_all()
        self.topics = FleetTopics(prefix)
        self.refused: Counter[str] = Counter()

    def handle(self, topic: str, payload: bytes) -> str:
        """Returns what was done: ``applied``, ``unchanged``, ``cleared`` or ``refused: why``."""
        if not payload:
            return "cleared"  # a retained topic being cleared: nothing to apply
        try:
            return self._checked(topic, parse_object(payload, self.max_bytes, "fleet message"))
        except PayloadError as exc:
            return self._refuse(topic, "malformed", str(exc))
        except (ValueError, binascii.Error) as exc:
            return self._refuse(topic, "malformed", f"{type(exc).__name__}: {exc}")
        except FacegateError as exc:  # the gallery file could not take it: fetched again later
            return self._refuse(topic, "not stored", str(exc))

    def _refuse(self, topic: str, reason: str, detail: str) -> str:
        self.refused[reason] += 1
        log.warning("fleet: refused %s: %s (%s)", topic, reason, detail)
        return f"refused: {reason}"

    def _checked(self, topic: str, fields: Fields) -> str:
        body = fields.data
        sig = base64.b64decode(str(fields.string("sig", 200, BASE64, "base64")), validate=True)
        if body.get("schema") != SCHEMA:
            shown = str(body.get("schema"))[:20]
            return self._refuse(topic, "schema", f"schema {shown}, this device reads {SCHEMA}")
        if body.get("alg") != self.verifier.algorithm or not self.verifier.verify(
            signed_bytes(topic, body), sig
        ):
            why = f"not signed by this fleet's {self.verifier.algorithm} key"
            return self._refuse(topic, "bad signature", why)
        # Signed by the authority from here on; still checked field by field, as an authority
        # with a bug (or a stolen HMAC key) must not be able to stop a device either.
        kind = fields.string("kind", 16)
        if kind == MANIFEST and topic == self.topics.manifest:
            return self._manifest(topic, fields)
        name = str(fields.string("name", 64, NAME_PATTERN, "a person's name"))
        if topic != self.topics.person(name):
            return self._refuse(topic, "wrong topic", f"entry for {name!r}")
        version = int(fields.integer("version", 1, MAX_VERSION) or 0)
        held = self._held.get(name, (0, False))[0]
        if version <= held:
            if version == held:
                return "unchanged"  # the same entry again (a retained copy on resubscribe)
            return self._refuse(topic, "older version", f"v{version}, this device holds v{held} (a replay?)")
        if kind == TOMBSTONE:
            self._delete(name, version)
            log.info("fleet: removed %s (v%d)", name, version)
            return "applied"
        if kind != PERSON:
            return self._refuse(topic, "malformed", f"unknown kind {kind!r}")
        if fields.string("model", 64, SHA256, "a sha256") != self.model:
            return self._refuse(
                topic,
                "other model",
                f"{name} v{version} was made by model {str(body['model'])[:12]}, this device runs "
                f"{self.model[:12]}; re-publish from an authority with the same model",
            )
        dim = fields.integer("dim", 1, 4096)
        if dim != self.dim:
            return self._refuse(topic, "malformed", f"{dim}-d embeddings, this model makes {self.dim}-d")
        vectors = decode_vectors(str(fields.string("embeddings", self.max_bytes, BASE64, "base64")), self.dim)
        display = fields.string("display_name", 128, DISPLAY_NAME, "1-128 printable characters", False)
        self.store.put(name, display or name, version, vectors)
        self._hold(name, version, deleted=False)
        log.debug("fleet: applied %s v%d (%d embedding(s))", name, version, len(vectors))
        return "applied"

    def _manifest(self, topic: str, fields: Fields) -> str:
        seq = int(fields.integer("seq", 0, MAX_VERSION) or 0)
        people = fields.versions("people", NAME_PATTERN, MAX_PEOPLE, MAX_VERSION)
        removed = (
            fields.versions("removed", NAME_PATTERN, MAX_PEOPLE, MAX_VERSION)
            if "removed" in fields.data
            else {}
        )
        current = self._manifest_now
        if current is not None and seq <= int(current["seq"]):
            if seq == int(current["seq"]):
                return "unchanged"
            return self._refuse(topic, "older version", f"manifest {seq}, this device holds {current['seq']}")
        dropped = []
        # set operations, not a loop over everyone: a 10,000-person manifest costs milliseconds
        for name in sorted((self._held.keys() - people.keys()) | (removed.keys() & self._held.keys())):
            version, deleted = self._held[name]
            if deleted:
                continue
            if name in removed and removed[name] > version:
                self._delete(name, removed[name])
                dropped.append(name)
            elif name not in people and name not in removed and version <= seq:
                self._delete(name, seq)  # its tombstone is gone from the broker; the manifest is not
                dropped.append(name)
        old = current["people"] if current else {}
        self._manifest_now = {"seq": seq, "people": people, "hash": manifest_hash(people)}
        self.store.set_manifest(self._manifest_now)
        if current is None:
            self._recheck_all()
        else:  # only the names whose wanted version changed, and those not settled yet
            changed = {n for n, v in people.items() if old.get(n) != v} | (old.keys() - people.keys())
            for name in changed | self._missing | self._extra:
                self._recheck(name)
        if dropped:
            log.info("fleet: manifest %d removed %s", seq, ", ".join(dropped))
        return "applied"

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def _delete(self, name: str, version: int) -> None:
        self.store.delete(name, version)
        self._hold(name, version, deleted=True)

    def _hold(self, name: str, version: int, deleted: bool) -> None:
        was_live = not self._held.get(name, (0, True))[1]
        self._held[name] = (version, deleted)
        self._live += int(not deleted) - int(was_live)
        self._recheck(name)

    def _recheck(self, name: str) -> None:
        manifest = self._manifest_now
        if manifest is None:
            return
        version, deleted = self._held.get(name, (0, True))
        wanted = manifest["people"].get(name)
        if wanted is not None and (version, deleted) != (wanted, False):
            self._missing.add(name)
        else:
            self._missing.discard(name)
        if wanted is None and not deleted and version <= manifest["seq"]:
            self._extra.add(name)
        else:
            self._extra.discard(name)

    def _recheck_all(self) -> None:
        self._missing.clear()
        self._extra.clear()
        if self._manifest_now is not None:
            for name in set(self._manifest_now["people"]) | set(self._held):
                self._recheck(name)

    def status(self) -> dict[str, Any]:
        """What the device reports: the manifest it holds, and whether it has everything in it."""
        manifest = self._manifest_now
        return {
            "seq": manifest["seq"] if manifest else None,
            "hash": manifest["hash"] if manifest else None,
            "people": self._live,
            "converged": manifest is not None and not self._missing and not self._extra,
            "missing": len(self._missing) if manifest else None,
            "refused": dict(self.refused),
        }


# --- the authority ----------------------------------------------------------------


def _digest(display_name: str, vectors: np.ndarray) -> str:
    return hashlib.sha256(display_name.encode() + np.ascontiguousarray(vectors, "<f4").tobytes()).hexdigest()


class Authority:
    """Turns the authority's gallery into fleet messages. Its versions live in a private state
    file beside the gallery, written (atomically) before anything is published, so a crash
    half-way only means the same messages are published again."""

    def __init__(self, gallery: Gallery, signer: Signer, prefix: str, state_path: pathlib.Path) -> None:
        self.gallery, self.signer = gallery, signer
        self.topics = FleetTopics(prefix)
        self.state_path = state_path
        self.state = self._load()

    def _load(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"seq": 0, "people": {}, "removed": {}}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            state["seq"] = int(state["seq"])
            return state
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FleetError(
                f"{self.state_path}: unreadable fleet state ({exc}); restore it from a backup"
            ) from None

    def _save(self) -> None:
        write_private_json(self.state_path, self.state, durable=True, indent=1, sort_keys=True)

    def plan(self, now: float | None = None, full: bool = False) -> list[tuple[str, bytes]]:
        """The messages that bring the fleet to this gallery: an entry for each new or changed
        person, a tombstone for each one gone, and a new manifest if anything changed. With
        ``full`` (or when the last publish did not finish) every entry, tombstone and the
        manifest again, at the versions they have: applying them twice changes nothing."""
        now = time.time() if now is None else now
        full = full or self.state.get("published_seq") != self.state["seq"]
        people, removed = self.state["people"], self.state["removed"]
        out: list[tuple[str, bytes]] = []
        current = {p.name: p for p in self.gallery.people()}
        model = self.gallery.model
        for name in sorted(current):
            vectors = self.gallery.embeddings(name)
            digest = _digest(current[name].display_name, vectors)
            if people.get(name, {}).get("digest") != digest:
                self.state["seq"] += 1
                people[name] = {"version": self.state["seq"], "digest": digest}
                removed.pop(name, None)
            elif not full:
                continue
            body = {
                "kind": PERSON,
                "name": name,
                "display_name": current[name].display_name,
                "version": people[name]["version"],
                "model": model.sha256,
                "dim": model.embedding_size,
                "embeddings": encode_vectors(vectors),
                "ts": round(now, 3),
            }
            out.append((self.topics.person(name), sign_message(self.signer, self.topics.person(name), body)))
        for name in sorted(set(people) - set(current)):
            self.state["seq"] += 1
            del people[name]
            removed[name] = {"version": self.state["seq"], "since": now}
        for name, r in sorted(removed.items()):
            if full or r["version"] > self.state.get("published_seq", 0):
                body = {"kind": TOMBSTONE, "name": name, "version": r["version"], "ts": round(now, 3)}
                topic = self.topics.person(name)
                out.append((topic, sign_message(self.signer, topic, body)))
        if out or full:
            out.append(self._manifest(now))
        self._save()
        return out

    def published(self) -> None:
        """Every message of the last plan was acknowledged by the broker."""
        self.state["published_seq"] = self.state["seq"]
        self._save()

    def _manifest(self, now: float) -> tuple[str, bytes]:
        body = {
            "kind": MANIFEST,
            "seq": self.state["seq"],
            "people": self.manifest_people(),
            "removed": {n: r["version"] for n, r in sorted(self.state["removed"].items())},
            "ts": round(now, 3),
        }
        return self.topics.manifest, sign_message(self.signer, self.topics.manifest, body)

    def manifest_people(self) -> dict[str, int]:
        return {n: p["version"] for n, p in sorted(self.state["people"].items())}

    def collect(
        self, acknowledged: dict[str, int], ttl_s: float, now: float | None = None
    ) -> list[tuple[str, bytes]]:
        """Clear the retained tombstones every device has acknowledged (reported a manifest at
        or past the removal) or that are older than ``ttl_s``; the manifest keeps no record of
        them after that, and a device that comes back later still drops them (unlisted)."""
        now = time.time() if now is None else now
        done = [
            name
            for name, r in self.state["removed"].items()
            if now - r["since"] > ttl_s or (acknowledged and min(acknowledged.values()) >= r["version"])
        ]
        if not done:
            return []
        for name in done:
            del self.state["removed"][name]
        out: list[tuple[str, bytes]] = [(self.topics.person(n), b"") for n in sorted(done)]
        self.state["seq"] += 1  # a new manifest, so devices see the change
        out.append(self._manifest(now))
        self._save()
        return out


# --- MQTT glue ------------------------------------------------------------------------


class FleetMember:
    """A device in the fleet over MQTT: what to subscribe to, each message applied as it
    arrives (in the MQTT client's thread), and the device's report, retained on
    ``{prefix}/devices/{id}``, so the authority knows what it holds. ``status`` is a plain
    dict the daemon reads for its own state topic."""

    def __init__(
        self, sync: FleetSync, device_id: str, report_every_s: float = 0.5, resync_after_s: float = 30.0
    ) -> None:
        self.sync, self.device_id = sync, device_id
        self.resync_after_s = resync_after_s
        self.resyncs = 0
        self._resync: threading.Timer | None = None
        self._last_message = 0.0
        self.topics = sync.topics
        self.status = sync.status()
        self.report_every_s = report_every_s
        self._reported_at = 0.0
        self._reported: tuple[Any, ...] = ()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def subscriptions(self) -> list[str]:
        return [self.topics.people, self.topics.manifest]

    def owns(self, topic: str) -> bool:
        return topic.startswith(self.topics.prefix + "/people/") or topic == self.topics.manifest

    def handle(self, client: Any, topic: str, payload: bytes) -> str:
        outcome = self.sync.handle(topic, payload)
        if outcome == "applied" or outcome.startswith("refused"):
            was = self.status["converged"]
            self.status = self.sync.status()
            if self.status["converged"] and not was:
                log.info(
                    "fleet: converged on manifest %s (%d people)", self.status["seq"], self.status["people"]
                )
            self.report(client)
        self._arm_resync(client)
        return outcome

    def _arm_resync(self, client: Any) -> None:
        """If the manifest names entries this device lacks and nothing arrives for
        ``resync_after_s`` (a broker that dropped messages from a full queue, say),
        subscribe again: the broker then re-sends every retained entry. One timer at a
        time, pushed back by each message."""
        with self._lock:
            self._last_message = time.monotonic()
            if self._resync is None:
                self._start_resync_timer(client, self.resync_after_s)

    def _start_resync_timer(self, client: Any, delay: float) -> None:
        self._resync = threading.Timer(delay, self._resubscribe, (client,))
        self._resync.daemon = True
        self._resync.start()

    def _resubscribe(self, client: Any) -> None:
        with self._lock:
            quiet = time.monotonic() - self._last_message
            if quiet < self.resync_after_s:
                self._start_resync_timer(client, self.resync_after_s - quiet)
                return
            self._resync = None
        status = self.status
        if status["seq"] is None or status["converged"]:
            return
        self.resyncs += 1
        log.warning(
            "fleet: %s entr(ies) of manifest %s still missing; fetching the retained entries again",
            status.get("missing"),
            status["seq"],
        )
        client.subscribe([(topic, 1) for topic in self.subscriptions()])

    def cancel(self) -> None:
        with self._lock:
            for timer in (self._resync, self._timer):
                if timer is not None:
                    timer.cancel()

    def report(self, client: Any, force: bool = False) -> None:
        """Publish the device's report if it changed: at once when convergence changes, else at
        most every ``report_every_s``, with a last one when the changes stop (never stale)."""
        with self._lock:
            s = self.status
            key = (s["seq"], s["hash"], s["converged"], s["people"], tuple(sorted(s["refused"].items())))
            if key == self._reported and not force:
                return
            wait = self.report_every_s - (time.monotonic() - self._reported_at)
            converging = bool(self._reported) and s["converged"] != self._reported[2]
            if wait > 0 and not force and not converging:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._trailing, (client,))
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._reported_at, self._reported = time.monotonic(), key
            body = {"schema": SCHEMA, "device": self.device_id, **s, "ts": round(time.time(), 3)}
        client.publish(self.topics.device(self.device_id), dumps(body), qos=1, retain=True)

    def _trailing(self, client: Any) -> None:
        with self._lock:
            self._timer = None
        self.report(client)


def member_for(config: Any, model: Any) -> FleetMember:
    """The daemon's fleet membership: its own connection to the gallery file."""
    gallery = Gallery.open(config["gallery"]["path"], model, create=True).fleet_writes()
    prefix = config["fleet"]["prefix"]
    sync = FleetSync(
        GalleryStore(gallery),
        verifier_for(config),
        model.sha256,
        model.embedding_size,
        prefix,
        config["mqtt"]["max_payload"],
    )
    return FleetMember(sync, config["device"]["id"])


class _Reports:
    """A short MQTT session that reads the fleet's retained device reports and manifest."""

    def __init__(self, config: Any, prefix: str) -> None:
        from facegate.mqtt import client_for

        self.topics = FleetTopics(prefix)
        self.devices: dict[str, dict[str, Any]] = {}
        self.manifest: dict[str, Any] | None = None
        self._connected = threading.Event()
        self.client = client_for(config, client_id=f"facegate-authority-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda *a: self._connected.set()
        self.m = config["mqtt"]

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            body = json.loads(message.payload)
            if message.topic == self.topics.manifest:
                self.manifest = body
            else:
                self.devices[str(body["device"])] = body

    def __enter__(self) -> _Reports:
        self.client.connect(self.m["host"], self.m["port"], keepalive=self.m["keepalive"])
        self.client.loop_start()
        if not self._connected.wait(10):
            self.__exit__()
            raise FleetError(f"no answer from the broker at {self.m['host']}:{self.m['port']}")
        self.client.subscribe([(self.topics.devices, 1), (self.topics.manifest, 1)])
        return self

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)  # retained messages arrive at once; a moment for slow links

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def summary(self) -> dict[str, dict[str, Any]]:
        return {
            d: {k: r.get(k) for k in ("seq", "hash", "converged", "people", "refused")}
            for d, r in sorted(self.devices.items())
        }


def publish(config: Any, full: bool = False, wait_s: float = 2.0) -> dict[str, Any]:
    """``facegate fleet publish``: the authority's gallery to the fleet, over the config's
    broker. Reads the devices' reports first, to clear tombstones they have all applied."""
    from facegate.encoder import Encoder
    from facegate.enroll import fingerprint

    model = fingerprint(Encoder(config["models"]["encoder"]))
    gallery = Gallery.open(config["gallery"]["path"], model, create=False)
    path = gallery.path.with_name(gallery.path.name + ".fleet.json")
    try:
        authority = Authority(gallery, signer_for(config), config["fleet"]["prefix"], path)
        with _Reports(config, config["fleet"]["prefix"]) as reports:
            reports.wait(wait_s)
            acknowledged = {d: int(r["seq"]) for d, r in reports.devices.items() if r.get("seq") is not None}
            messages = authority.plan(full=full)
            messages += authority.collect(acknowledged, config["fleet"]["tombstone_days"] * 86400)
            infos = [reports.client.publish(t, payload, qos=1, retain=True) for t, payload in messages]
            for info in infos:
                info.wait_for_publish(30)
            authority.published()
        people = authority.manifest_people()
        return {
            "published": len(messages),
            "seq": authority.state["seq"],
            "people": len(people),
            "manifest_hash": manifest_hash(people),
            "tombstones": len(authority.state["removed"]),
            "devices": reports.summary(),
        }
    finally:
        gallery.close()


def status(config: Any, wait_s: float = 2.0) -> dict[str, Any]:
    """``facegate fleet status``: the manifest on the broker and what each device reports."""
    with _Reports(config, config["fleet"]["prefix"]) as reports:
        reports.wait(wait_s)
    manifest = reports.manifest or {}
    people = manifest.get("people")
    return {
        "seq": manifest.get("seq"),
        "people": len(people) if isinstance(people, dict) else None,
        "manifest_hash": manifest_hash(people) if isinstance(people, dict) else None,
        "devices": reports.summary(),
    }
