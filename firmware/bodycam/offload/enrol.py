"""Enrolment: the one-time token plus the device key buy a certificate, and the backend gets pinned.

``provision.ensure`` (first boot) already made the key, public key and CSR; this sends the CSR and the
token (backend-api.md section 3) and keeps three answers on the device:

    <data_dir>/device/device.cert.pem            the device certificate (beside the key: provision.cert_path;
                                                 bodycam-enrol.service and `bodycam doctor` check it)
    <data_dir>/device/backend/backend.pub.pem    the key that signs receipts: pinned, never re-fetched
    <data_dir>/device/backend/agency-ca.pem      the agency CA that issued the certificate
    <data_dir>/device/backend/enrolment.json     what was enrolled where and when

The backend's material sits in a subdirectory so that ``bodycam verify DATA_DIR``, which takes keys
from ``device/*.pem``, never mistakes the backend key for a device key. The certificate is written
last: its presence means "enrolled", and a power cut before it leaves a device that simply enrols
again (with a new token). A key that has no certificate yet (re-keyed device) is not enrolled; the
old certificate is kept beside it so old footage on the device still verifies.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from .. import provision
from ..clock import iso_utc
from ..config import Config
from ..evidence.signer import FileKeySigner, Signer, key_id_of
from ..provision import cert_path
from ..storage.durable import atomic_write
from .client import ApiError, BackendClient, OffloadError
from .receipts import BackendPins


class EnrolError(OffloadError):
    """Enrolment refused or impossible; the message says what to do (new token, backend URL...)."""


@dataclass(frozen=True)
class EnrolPaths:
    cert: Path              # provision.cert_path(key): where bodycam-enrol.service and doctor look
    backend_dir: Path

    @property
    def device_dir(self) -> Path:
        return self.cert.parent

    @property
    def backend_key(self) -> Path:
        return self.backend_dir / "backend.pub.pem"

    @property
    def ca(self) -> Path:
        return self.backend_dir / "agency-ca.pem"

    @property
    def info(self) -> Path:
        return self.backend_dir / "enrolment.json"

    @classmethod
    def of(cls, cfg: Config) -> EnrolPaths:
        return cls(cert_path(cfg.key_path), cfg.data_dir / "device" / "backend")


@dataclass(frozen=True)
class Enrolment:
    """What the device knows about its enrolment: enough to authenticate and to check receipts."""

    serial: str
    key_id: str
    certificate: x509.Certificate
    pins: BackendPins
    backend_url: str


def _cert_key_id(cert: x509.Certificate) -> str:
    return key_id_of(cert.public_key())  # type: ignore[arg-type]


def load(paths: EnrolPaths, signer: Signer) -> Enrolment | None:
    """The enrolment of the *current* key, or None (not enrolled, or enrolled with an older key)."""
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        pins = BackendPins.load(paths.backend_key, paths.ca)
        info = json.loads(paths.info.read_text()) if paths.info.exists() else {}
    except (OSError, ValueError):
        return None
    if _cert_key_id(cert) != signer.key_id:
        return None
    return Enrolment(serial=str(info.get("serial", "")), key_id=signer.key_id, certificate=cert, pins=pins,
                     backend_url=str(info.get("backend_url", "")))


def _csr(cfg: Config, signer: Signer) -> str | None:
    """provision.py's CSR for a key file; None for keys behind another Signer (then key + proof)."""
    if not isinstance(signer, FileKeySigner) or not cfg.key_path.exists():
        return None
    return provision.ensure(cfg).csr.read_text()


def _check_answer(doc: dict[str, Any], *, serial: str,
                  signer: Signer) -> tuple[x509.Certificate, BackendPins]:
    try:
        cert = x509.load_pem_x509_certificate(doc["certificate_pem"].encode())
        ca = x509.load_pem_x509_certificate(doc["ca_certificate_pem"].encode())
        pins = BackendPins.from_pem(doc["backend_public_key_pem"].encode(),
                                    doc["ca_certificate_pem"].encode())
    except (KeyError, ValueError, AttributeError) as e:
        raise EnrolError(f"the backend's enrolment answer is incomplete or malformed ({e})") from None
    if _cert_key_id(cert) != signer.key_id:
        raise EnrolError("the backend issued a certificate for another key; refusing it")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise EnrolError(f"the device certificate is not signed by the agency CA sent with it ({e})") \
            from None
    if doc.get("backend_key_id") not in (None, pins.key_id):
        raise EnrolError("backend_key_id does not match backend_public_key_pem; refusing to pin it")
    if doc.get("serial") not in (None, serial):
        raise EnrolError(f"the backend enrolled serial {doc.get('serial')!r}, not {serial!r}")
    return cert, pins


def _keep_old_cert(paths: EnrolPaths) -> None:
    """A certificate for an earlier key stays as device-<key id>.cert.pem (verify finds it there)."""
    try:
        old = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    except (OSError, ValueError):
        return
    keep = paths.device_dir / f"device-{_cert_key_id(old)[:16]}.cert.pem"
    if not keep.exists():
        atomic_write(keep, paths.cert.read_bytes(), mode=0o644)


def enrol(cfg: Config, signer: Signer, *, url: str, token: str, session: requests.Session | None = None
          ) -> Enrolment:
    """POST /v1/enrol with the CSR (or key + proof) and keep the answer; raises EnrolError."""
    serial = cfg.device.serial
    if not token:
        raise EnrolError("no enrolment token: pass --token TOKEN or set [offload] enrol_token (an admin "
                         f"issues one with 'bodycam backend enrol-token {serial}')")
    body: dict[str, Any] = {"serial": serial, "token": token}
    csr = _csr(cfg, signer)
    if csr is not None:
        body["csr_pem"] = csr
    else:
        proof = signer.sign(f"bodycam-enrol/1\n{serial}\n{token}".encode())
        body.update(public_key_pem=signer.public_key_pem().decode(), proof=base64.b64encode(proof).decode())
    verify = cfg.offload.ca_file or cfg.offload.verify_tls
    client = BackendClient(url, signer, timeout=cfg.offload.timeout_seconds, verify=verify, session=session)
    try:
        doc = client.request("POST", "/v1/enrol", signed=False, json=body).json()
    except ApiError as e:
        hint = {"enrol_token_used": "; ask an admin for a new token",
                "enrol_token_expired": "; ask an admin for a new token",
                "enrol_token_invalid": f"; check the token was issued for serial {serial}",
                "unreachable": "; is the camera docked and the backend URL right?"}.get(e.code, "")
        raise EnrolError(f"enrolment refused: {e}{hint}") from None
    finally:
        client.close()
    cert, pins = _check_answer(doc, serial=serial, signer=signer)
    paths = EnrolPaths.of(cfg)
    paths.backend_dir.mkdir(parents=True, exist_ok=True)
    _keep_old_cert(paths)
    atomic_write(paths.backend_key, pins.public_key_pem, mode=0o644)
    atomic_write(paths.ca, pins.ca_pem, mode=0o644)
    info = {"serial": serial, "key_id": signer.key_id, "backend_url": url, "backend_key_id": pins.key_id,
            "certificate_not_after": doc.get("not_after"), "enrolled_utc": iso_utc(client.clock.utc_ns())}
    atomic_write(paths.info, (json.dumps(info, indent=2) + "\n").encode(), mode=0o644)
    atomic_write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return Enrolment(serial, signer.key_id, cert, pins, url)
