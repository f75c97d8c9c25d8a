"""The agency CA (issues device certificates) and the backend's own receipt-signing key.

Both are ECDSA P-256, like device keys, so one verifier and `openssl` handle everything. Private keys
are 0600 files in ``<data_dir>/keys``; created once by ``init`` and never replaced (replacing the CA
would orphan every enrolled camera, replacing the receipt key would orphan every receipt).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from bodycam.evidence.signer import FileKeySigner, key_id_of
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import BackendError

CA_KEY, CA_CERT, BACKEND_KEY, BACKEND_PUB = "ca.key.pem", "ca.cert.pem", "backend.key.pem", "backend.pub.pem"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, pem


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise BackendError(f"{path} missing; run 'bodycam backend init --config FILE'") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BackendError(f"{path} is not an EC private key")
    return key


def init_keys(keys_dir: Path, *, agency: str, ca_days: int) -> bool:
    """Create the CA and the receipt key if absent; returns True if anything was created."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    created = False
    if not (keys_dir / CA_KEY).exists():
        key, pem = _new_key()
        now = dt.datetime.now(dt.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, agency),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{agency} bodycam CA"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=ca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        (keys_dir / CA_CERT).unlink(missing_ok=True)
        _write_new(keys_dir / CA_KEY, pem, 0o600)
        _write_new(keys_dir / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        created = True
    if not (keys_dir / BACKEND_KEY).exists():
        key, pem = _new_key()
        (keys_dir / BACKEND_PUB).unlink(missing_ok=True)
        _write_new(keys_dir / BACKEND_KEY, pem, 0o600)
        _write_new(keys_dir / BACKEND_PUB, FileKeySigner(key).public_key_pem(), 0o644)
        created = True
    return created


@dataclass
class AgencyCA:
    """Issues device certificates; the subject comes from the enrolled serial, never from the CSR."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    agency: str

    @classmethod
    def load(cls, keys_dir: Path, agency: str) -> AgencyCA:
        cert_path = keys_dir / CA_CERT
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except FileNotFoundError:
            raise BackendError(f"{cert_path} missing; run 'bodycam backend init --config FILE'") from None
        return cls(_load_key(keys_dir / CA_KEY), cert, agency)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, serial: str, public_key: ec.EllipticCurvePublicKey, *, days: int) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.agency),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
                x509.NameAttribute(NameOID.COMMON_NAME, serial),
            ]
        )
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(aki, critical=False)
            .sign(self.key, hashes.SHA256())
        )


def load_backend_signer(keys_dir: Path) -> FileKeySigner:
    """The receipt and audit-trail key, behind the same Signer seam as device keys."""
    return FileKeySigner(_load_key(keys_dir / BACKEND_KEY))


def cert_key_id(cert: x509.Certificate) -> str:
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise ValueError("certificate key is not EC")
    return key_id_of(pub)
