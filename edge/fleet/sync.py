"""A device applying the fleet's messages to a ``Store``, idempotently by version."""

from __future__ import annotations

import binascii
import logging
from collections import Counter
from typing import Any, Protocol

import numpy as np

from facegate.errors import FacegateError
from facegate.fleet.messages import (
    BASE64,
    MANIFEST,
    MAX_PEOPLE,
    MAX_VERSION,
    PERSON,
    SHA256,
    TOMBSTONE,
    FleetTopics,
    Verifier,
    decode_vectors,
    manifest_hash,
    signature_refusal,
)
from facegate.gallery import NAME_PATTERN, printable_display_name
from facegate.ratelimit import LogLimiter
from facegate.wire import Fields, PayloadError, parse_object

log = logging.getLogger(__name__)


# --- the device side ------------------------------------------------------------


class Store(Protocol):
    """Where a device keeps what the fleet gave it (its gallery, or memory in the benchmark)."""

    def versions(self) -> dict[str, tuple[int, bool]]: ...  # name -> (version, deleted)

    def put(self, name: str, display_name: str, version: int, vectors: np.ndarray) -> bool: ...

    def delete(self, name: str, version: int) -> bool: ...

    def manifest(self) -> dict[str, Any] | None: ...

    def set_manifest(self, manifest: dict[str, Any]) -> None: ...


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
        self._refusal_log = LogLimiter(log, per_s=1.0, burst=10)  # anyone can publish here

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
        self._refusal_log.warning("fleet: refused %s: %s (%s)", topic[:200], reason, detail)
        return f"refused: {reason}"

    def _checked(self, topic: str, fields: Fields) -> str:
        body = fields.data
        refusal = signature_refusal(topic, fields, self.verifier)
        if refusal is not None:
            return self._refuse(topic, *refusal)
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
        display = fields.string(
            "display_name", 128, None, "1-128 printable characters", False, printable_display_name
        )
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
