"""Device identity files for enrolment: the key (created here, on the camera), its public half, a CSR.

``ensure()`` is what first boot runs (as the bodycam user, via ``bodycam provision``). Every file is
written so that a power cut leaves it either absent or complete: the private key is written to a temp
file, fsynced and then hard-linked into place (link fails if a key already exists, so a key is never
replaced), the public key and CSR by atomic rename. Running it again only fills in what is missing.

The CSR (PKCS#10, ECDSA P-256/SHA-256) is what ``POST /v1/enrol`` takes (docs/backend-api.md
section 3); its subject, CN and serialNumber = the device serial, is informative only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .config import Config
from .evidence.signer import FileKeySigner, create_key_file, public_key_path
from .storage.durable import atomic_write


def csr_path(key_path: Path) -> Path:
    return key_path.with_name("device.csr.pem")


def cert_path(key_path: Path) -> Path:
    """Where enrolment stores the certificate the agency CA issued (bodycam-enrol.service checks it)."""
    return key_path.with_name("device.cert.pem")


@dataclass(frozen=True)
class Provisioned:
    key: Path
    public_key: Path
    csr: Path
    key_id: str
    created_key: bool


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    FileKeySigner.load(path)  # the same checks and messages as the daemon
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def build_csr(key: ec.EllipticCurvePrivateKey, serial: str) -> bytes:
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, serial), x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _csr_matches(path: Path, public_der: bytes, serial: str) -> bool:
    try:
        csr = x509.load_pem_x509_csr(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    der = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return der == public_der and csr.is_signature_valid and bool(cns) and cns[0].value == serial


def ensure(cfg: Config) -> Provisioned:
    """Key, public key and CSR for this device, creating only what is missing or stale."""
    key_path = cfg.key_path
    created = create_key_file(key_path)
    key = _load_private(key_path)
    signer = FileKeySigner(key)
    pub = public_key_path(key_path)
    pem = signer.public_key_pem()
    if not pub.exists() or pub.read_bytes() != pem:
        atomic_write(pub, pem, mode=0o644)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    csr = csr_path(key_path)
    if not _csr_matches(csr, der, cfg.device.serial):
        atomic_write(csr, build_csr(key, cfg.device.serial), mode=0o644)
    return Provisioned(key=key_path, public_key=pub, csr=csr, key_id=signer.key_id, created_key=created)
