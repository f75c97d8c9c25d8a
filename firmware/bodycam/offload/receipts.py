"""Checking the backend's signed receipt before anything is freed (backend-api.md section 7).

The receipt is the only thing that lets the camera forget a segment, so it is checked against what
the camera itself knows, never against what the same response says: the signature with the backend
key pinned at enrolment, the manifest hash against the manifest file on disk, the media hash and
size against that manifest, and serial, sequence and kind against what was uploaded. A receipt that
fails any check is refused and the segment stays.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ..evidence.signer import key_id_of, load_public_key, verify_signature
from .client import OffloadError

RECEIPT_FORMAT = "bodycam.receipt/1"


class ReceiptError(OffloadError, ValueError):
    """A receipt that does not prove the backend stored exactly this segment; nothing is freed."""


@dataclass(frozen=True)
class BackendPins:
    """The backend key (signs receipts) and agency CA, as received at enrolment and kept on the device."""

    public_key: ec.EllipticCurvePublicKey
    key_id: str
    public_key_pem: bytes
    ca_pem: bytes

    @classmethod
    def from_pem(cls, public_key_pem: bytes, ca_pem: bytes = b"") -> BackendPins:
        key = load_public_key(public_key_pem)
        return cls(key, key_id_of(key), public_key_pem, ca_pem)

    @classmethod
    def load(cls, key_path: Path, ca_path: Path | None = None) -> BackendPins:
        ca = ca_path.read_bytes() if ca_path is not None and ca_path.exists() else b""
        return cls.from_pem(key_path.read_bytes(), ca)


def receipt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _signed_doc(body: dict[str, Any], pins: BackendPins) -> dict[str, Any]:
    text, sig_b64 = body.get("receipt"), body.get("signature")
    if not isinstance(text, str) or not isinstance(sig_b64, str):
        raise ReceiptError("finalize answered without a receipt and signature")
    claimed = body.get("backend_key_id")
    if claimed is not None and claimed != pins.key_id:
        raise ReceiptError(f"receipt claims backend key {str(claimed)[:16]}..., but this camera was enrolled "
                           f"with {pins.key_id[:16]}...; re-enrol if the backend key really changed")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError("receipt signature is not base64") from None
    if not verify_signature(pins.public_key, sig, text.encode()):
        raise ReceiptError("receipt signature does not verify with the pinned backend key "
                           "(forged or altered)")
    try:
        doc = json.loads(text)
    except ValueError:
        raise ReceiptError("receipt text is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != RECEIPT_FORMAT:
        raise ReceiptError(f"receipt format is not {RECEIPT_FORMAT!r}")
    if doc.get("backend_key_id") != pins.key_id:
        raise ReceiptError("receipt names another backend key than the one that signed it")
    return doc


def _expect(doc: dict[str, Any], **want: Any) -> None:
    for field, value in want.items():
        if doc.get(field) != value:
            raise ReceiptError(f"receipt {field} is {doc.get(field)!r}, expected {value!r}")


def verify_segment_receipt(body: dict[str, Any], *, pins: BackendPins, serial: str, sequence: int,
                           manifest: bytes) -> dict[str, Any]:
    """The receipt's facts if it proves that the backend holds this manifest and its media."""
    doc = _signed_doc(body, pins)
    try:
        m = json.loads(manifest)
        media = m["media"]
    except (ValueError, KeyError, TypeError):
        raise ReceiptError(f"local manifest of sequence {sequence} is unreadable; cannot check the receipt") \
            from None
    _expect(doc, kind="segment", device_serial=serial, sequence=sequence,
            manifest_sha256=hashlib.sha256(manifest).hexdigest(), media_sha256=media.get("sha256"),
            media_size=media.get("size"), key_id=m.get("key_id"))
    return doc


def verify_audit_receipt(body: dict[str, Any], *, pins: BackendPins, serial: str, sha256: str,
                         first_seq: int, last_seq: int) -> dict[str, Any]:
    doc = _signed_doc(body, pins)
    _expect(doc, kind="audit", device_serial=serial, sha256=sha256, first_seq=first_seq, last_seq=last_seq)
    return doc
