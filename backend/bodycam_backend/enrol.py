"""Enrolment: a one-time token (issued by an admin for a serial) plus proof of the device key buys an
X.509 device certificate from the agency CA. docs/backend-api.md section 3."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import Any

from bodycam.evidence.signer import key_id_of, verify_signature
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .auth import token_sha256
from .ca import AgencyCA
from .data import Database, devices, now_ns
from .errors import ApiError

SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENROL_PREFIX = "bodycam-enrol/1"


def check_serial(serial: str) -> str:
    if not isinstance(serial, str) or not SERIAL.match(serial):
        raise ValueError(f"serial {serial!r}: use 1-64 letters, digits, '-' and '_'")
    return serial


def proof_message(serial: str, token: str) -> bytes:
    return f"{ENROL_PREFIX}\n{serial}\n{token}".encode()


def issue_token(db: Database, serial: str, *, ttl_hours: float, created_by: str) -> tuple[str, int]:
    """A one-time enrolment token for ``serial``; a revoked serial is reinstated by a new token."""
    check_serial(serial)
    token = "bce_" + secrets.token_urlsafe(24)
    expires = now_ns() + int(ttl_hours * 3600e9)
    with db.transaction() as c:
        devices.add_token(c, token_sha256=token_sha256(token), serial=serial, expires_ns=expires, created_by=created_by)
        devices.add_pending(c, serial, now_ns())
    return token, expires


def _device_public_key(body: dict[str, Any], serial: str, token: str) -> ec.EllipticCurvePublicKey:
    if isinstance(body.get("csr_pem"), str):
        try:
            csr = x509.load_pem_x509_csr(body["csr_pem"].encode())
        except ValueError:
            raise ApiError(400, "bad_request", "csr_pem is not a PEM certificate request") from None
        if not csr.is_signature_valid:
            raise ApiError(400, "bad_request", "the CSR's signature does not verify (not signed by its key)")
        pub = csr.public_key()
    elif isinstance(body.get("public_key_pem"), str) and isinstance(body.get("proof"), str):
        try:
            pub = serialization.load_pem_public_key(body["public_key_pem"].encode())
            proof = base64.b64decode(body["proof"], validate=True)
        except (ValueError, binascii.Error):
            raise ApiError(400, "bad_request", "public_key_pem or proof is malformed") from None
        if not isinstance(pub, ec.EllipticCurvePublicKey) or not verify_signature(
            pub, proof, proof_message(serial, token)
        ):
            raise ApiError(
                400,
                "bad_request",
                f"proof is not the device key's signature over '{ENROL_PREFIX}\\n<serial>\\n<token>'",
            )
    else:
        raise ApiError(400, "bad_request", "give csr_pem, or public_key_pem and proof")
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
        raise ApiError(400, "bad_request", "device keys must be ECDSA P-256")
    return pub


def enrol(db: Database, ca: AgencyCA, body: dict[str, Any], *, certificate_days: int) -> dict[str, Any]:
    serial, token = body.get("serial"), body.get("token")
    if not isinstance(serial, str) or not SERIAL.match(serial) or not isinstance(token, str) or not token:
        raise ApiError(400, "bad_request", "serial (letters, digits, '-', '_') and token are required")
    pub = _device_public_key(body, serial, token)  # before spending the token: a typo keeps it usable
    with db.transaction() as c:
        row = devices.token(c, token_sha256(token))
        if row is None or row["serial"] != serial:
            raise ApiError(
                403,
                "enrol_token_invalid",
                f"no enrolment token like that for {serial}; ask an admin "
                "for one ('bodycam backend enrol-token SERIAL')",
            )
        if row["used_ns"] is not None:
            raise ApiError(
                403, "enrol_token_used", "this enrolment token was already used; tokens are one-time"
            )
        if row["expires_ns"] < now_ns():
            raise ApiError(
                403, "enrol_token_expired", "this enrolment token expired; ask an admin for a new one"
            )
        key_id = key_id_of(pub)
        other = devices.key_owner(c, key_id)
        if other is not None and other != serial:
            raise ApiError(409, "conflict", f"this key is enrolled for device {other}")
        cert = ca.issue(serial, pub, days=certificate_days)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        t = now_ns()
        if not devices.use_token(c, token_sha256(token), t):
            raise ApiError(403, "enrol_token_used", "this enrolment token was already used; tokens are one-time")
        devices.put_certificate(c, key_id=key_id, serial=serial, pem=pem,
                                not_after_ns=int(cert.not_valid_after_utc.timestamp() * 1e9), issued_ns=t)
        devices.activate(c, serial, t)
    return {
        "serial": serial,
        "key_id": key_id,
        "certificate_pem": pem,
        "ca_certificate_pem": ca.cert_pem,
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
    }


def revoke(db: Database, serial: str) -> bool:
    """Refuse the device from now on; its stored evidence and certificates stay for verification."""
    with db.transaction() as c:
        changed = devices.revoke(c, serial, now_ns())
        devices.void_tokens(c, serial, now_ns())
    return changed
