"""Backend-signed receipts: the device frees a segment only after verifying one.

A receipt is compact JSON text with sorted keys, signed (ECDSA P-256, DER) by the backend key over
its exact UTF-8 bytes, so it can be checked with ``openssl dgst -sha256 -verify`` as well as here.
Receipts are stored with the segment and returned byte-identical on every duplicate.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from bodycam.clock import iso_utc
from bodycam.evidence.signer import Signer, load_public_key, verify_signature

from .db import now_ns

RECEIPT_FORMAT = "bodycam.receipt/1"


@dataclass(frozen=True)
class SignedReceipt:
    text: str
    signature: str  # base64 DER

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.text)

    def response(self, *, duplicate: bool, **extra: Any) -> dict[str, Any]:
        return {
            "receipt": self.text,
            "signature": self.signature,
            "backend_key_id": self.doc["backend_key_id"],
            "duplicate": duplicate,
            **extra,
        }


class ReceiptSigner:
    def __init__(self, signer: Signer, storage: str) -> None:
        self.signer = signer
        self.storage = storage

    def sign(self, kind: str, **facts: Any) -> SignedReceipt:
        t = now_ns()
        doc = {
            "format": RECEIPT_FORMAT,
            "kind": kind,
            "stored_utc": iso_utc(t),
            "stored_utc_ns": t,
            "storage": self.storage,
            "backend_key_id": self.signer.key_id,
            "receipt_id": secrets.token_hex(16),
            **facts,
        }
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        return SignedReceipt(text, base64.b64encode(self.signer.sign(text.encode())).decode())


def verify_receipt(text: str, signature_b64: str, backend_public_key_pem: bytes) -> dict[str, Any]:
    """The receipt's facts if the backend signed exactly this text; ValueError otherwise."""
    sig = base64.b64decode(signature_b64, validate=True)
    if not verify_signature(load_public_key(backend_public_key_pem), sig, text.encode()):
        raise ValueError("receipt signature invalid")
    doc = json.loads(text)
    if doc.get("format") != RECEIPT_FORMAT:
        raise ValueError(f"receipt format {doc.get('format')!r}")
    return doc
