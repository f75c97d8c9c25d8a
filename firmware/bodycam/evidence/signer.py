"""The device key behind a ``Signer`` seam, so a TPM or secure element can replace the key file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import DeviceKeyError
from ..storage.durable import atomic_write, create_once


class Signer(Protocol):
    """Signs bytes with the device key: ECDSA P-256 over SHA-256, DER-encoded (what openssl dgst emits)."""

    @property
    def key_id(self) -> str: ...

    def public_key_pem(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo: `openssl pkey -pubin -outform DER | sha256sum` gives it too."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class FileKeySigner:
    """A PEM private key in a 0600 file on the data partition."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise DeviceKeyError("device key is not ECDSA P-256; create one with 'bodycam keygen'")
        self._key = private_key
        self._key_id = key_id_of(private_key.public_key())

    @classmethod
    def load(cls, path: Path) -> FileKeySigner:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DeviceKeyError(f"no device key at {path}; create one with 'bodycam keygen'") from None
        except PermissionError:
            raise DeviceKeyError(f"cannot read device key {path}: permission denied") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            raise DeviceKeyError(f"{path} is not a PEM private key; restore it or re-provision the device") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DeviceKeyError(f"{path} is not an EC key; create one with 'bodycam keygen'")
        return cls(key)

    @property
    def key_id(self) -> str:
        return self._key_id

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def public_key_path(key_path: Path) -> Path:
    return key_path.with_name("device.pub.pem")


def create_key_file(key_path: Path) -> bool:
    """Create a P-256 device key (0600, in a 0700 folder); False if one exists: it is never replaced."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(key_path.parent, 0o700)
    if key_path.exists():
        return False
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return create_once(key_path, pem, mode=0o600)


def generate_key(key_path: Path) -> FileKeySigner:
    """Create the device key and its public half; refuses to replace an existing key."""
    if not create_key_file(key_path):
        raise DeviceKeyError(f"a device key already exists at {key_path}; refusing to overwrite it "
                             "(footage signed with it would become unverifiable)")
    signer = FileKeySigner.load(key_path)
    atomic_write(public_key_path(key_path), signer.public_key_pem(), mode=0o644)
    return signer


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise DeviceKeyError("public key is not an EC key")
    return key


def verify_signature(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
