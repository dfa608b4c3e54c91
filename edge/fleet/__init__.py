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

from facegate.fleet.authority import Authority, publish, status
from facegate.fleet.keys import Ed25519Signer, Ed25519Verifier, HmacKey, keygen, signer_for, verifier_for
from facegate.fleet.member import FleetMember, member_for
from facegate.fleet.messages import (
    MANIFEST,
    PERSON,
    SCHEMA,
    TOMBSTONE,
    FleetError,
    FleetTopics,
    Signer,
    Verifier,
    decode_vectors,
    encode_vectors,
    manifest_hash,
    sign_message,
    signed_bytes,
)
from facegate.fleet.store import GalleryStore
from facegate.fleet.sync import FleetSync, MemoryStore, Store

__all__ = [
    "MANIFEST",
    "PERSON",
    "SCHEMA",
    "TOMBSTONE",
    "Authority",
    "Ed25519Signer",
    "Ed25519Verifier",
    "FleetError",
    "FleetMember",
    "FleetSync",
    "FleetTopics",
    "GalleryStore",
    "HmacKey",
    "MemoryStore",
    "Signer",
    "Store",
    "Verifier",
    "decode_vectors",
    "encode_vectors",
    "keygen",
    "manifest_hash",
    "member_for",
    "publish",
    "sign_message",
    "signed_bytes",
    "signer_for",
    "status",
    "verifier_for",
]
