"""Fleet signatures: Ed25519 (devices hold only the public key) or a shared HMAC key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pathlib
from typing import Any

from facegate.errors import not_importable
from facegate.fleet.messages import FleetError, Signer, Verifier

log = logging.getLogger(__name__)


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except Exception as exc:  # ImportError, or its compiled part failing to load
        raise FleetError(
            f"fleet.signature ed25519 needs the `cryptography` package, which "
            f"{not_importable(exc, 'cryptography')}: pip install 'facegate[fleet]' "
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
    f = config.fleet
    if f.signature == "hmac":
        return HmacKey(config.fleet_hmac_key)
    if f.public_key_file:
        return Ed25519Verifier.from_file(f.public_key_file)
    return Ed25519Signer(f.private_key_file).verifier()


def signer_for(config: Any) -> Signer:
    f = config.fleet
    if f.signature == "hmac":
        return HmacKey(config.fleet_hmac_key)
    if not f.private_key_file:
        raise FleetError("publishing to the fleet needs fleet.private_key_file (the authority's key)")
    return Ed25519Signer(f.private_key_file)
