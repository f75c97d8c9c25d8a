"""Device request signatures: HTTP Message Signatures (RFC 9421), ecdsa-p256-sha256, with the body bound
by Content-Digest (RFC 9530, sha-256). One implementation for the camera (``BackendClient``) and the
backend (``bodycam_backend.auth``), so the two cannot drift apart. docs/backend-api.md section 4a.

Why a standard and not our own string to sign: what the backend acts on (the query, the tus
``Upload-*`` headers carrying the sequence, SHA-256 and offset, and the body) must be covered, and a
third party must be able to check a request without our code. The signature base, the
Structured Field encoding and ECDSA's raw ``r || s`` signature come from the maintained
``http-message-signatures`` library (pyauth), which also reproduces RFC 9421 appendix B.2.4; this
module only fixes the policy: which components are covered, which parameters are required, and how
the device key (DER signatures behind the ``Signer`` seam) plugs in.

``@path`` and ``@query`` rather than ``@target-uri``: the backend may sit behind a TLS-terminating
proxy that changes the scheme and authority it sees, never the path and query.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import http_sf
from cryptography.hazmat.primitives.asymmetric import ec
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
)
from http_message_signatures.algorithms import ECDSA_P256_SHA256

from ..evidence.signer import Signer

LABEL = "bodycam"
ALG = ECDSA_P256_SHA256.algorithm_id            # "ecdsa-p256-sha256"
ALWAYS = ("@method", "@path", "@query")
# Every request header the backend acts on; each one present must be covered by the signature.
ACTED_ON = ("content-digest", "content-type", "tus-resumable", "upload-length", "upload-offset",
            "upload-metadata", "upload-checksum", "upload-defer-length")
REQUIRED_PARAMS = ("created", "keyid", "nonce", "alg")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class SignatureError(ValueError):
    """A request signature that cannot be accepted; the message says what is wrong with it."""


def content_digest(body: bytes) -> str:
    """The Content-Digest field value of ``body``: ``sha-256=:<base64>:``."""
    return digest_field(hashlib.sha256(body).digest())


def digest_field(sha256: bytes) -> str:
    """The Content-Digest field value for a body whose SHA-256 is ``sha256``."""
    return "sha-256=:" + base64.b64encode(sha256).decode() + ":"


def digest_sha256(value: str) -> bytes:
    """The sha-256 member of a Content-Digest field (32 bytes); other algorithms are not accepted."""
    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SignatureError("Content-Digest is not a Structured Field dictionary") from None
    member = parsed.get("sha-256") if isinstance(parsed, dict) else None
    if not (isinstance(member, tuple) and isinstance(member[0], bytes) and len(member[0]) == 32):
        raise SignatureError("Content-Digest must carry a sha-256 member: sha-256=:<base64 of 32 bytes>:")
    return member[0]


@dataclass
class _Request:
    """The view of a request the library resolves components from (method, absolute URL, fields)."""

    method: str
    url: str
    headers: Any


def sign_headers(signer: Signer, method: str, url: str, headers: Mapping[str, str] | None = None,
                 body: bytes | None = None, *, created: int, nonce: str,
                 body_sha256: bytes | None = None) -> dict[str, str]:
    """The headers to add to a request so that it is signed: ``Content-Digest`` (when there is a body,
    even an empty one), ``Signature-Input`` and ``Signature``.

    ``url`` is the absolute URL as sent (encoded); ``headers`` are the request's other headers: every
    one of ``ACTED_ON`` among them is covered. ``created`` is server time in Unix seconds.
    ``body_sha256``: the body's SHA-256 when the caller has it already (a tus chunk's Upload-Checksum,
    a whole segment's manifest sha256), so the camera does not hash the bytes again. The backend
    checks it against what it receives either way.
    """
    fields = {k: v for k, v in (headers or {}).items()
              if k.lower() not in ("content-digest", "signature", "signature-input")}
    if body is not None:
        fields["Content-Digest"] = content_digest(body) if body_sha256 is None else digest_field(body_sha256)
    present = {k.lower() for k in fields}
    covered = [*ALWAYS, *(h for h in ACTED_ON if h in present)]
    msg = _Request(method.upper(), url, fields)
    hms = HTTPMessageSigner(signature_algorithm=ECDSA_P256_SHA256)
    try:
        prepared = hms.prepare(msg, key_id=signer.key_id, nonce=nonce, label=LABEL, covered_component_ids=covered,
                               use_existing_digest=body is not None,
                               created=datetime.datetime.fromtimestamp(created, tz=datetime.UTC))
        raw = ECDSA_P256_SHA256.signature_from_der(signer.sign(prepared.signature_base))
        hms.apply(msg, prepared, raw)
    except HTTPMessageSignaturesException as e:
        raise SignatureError(f"cannot sign {method} {url}: {e}") from None
    added = {"Signature-Input": fields["Signature-Input"], "Signature": fields["Signature"]}
    if body is not None:
        added["Content-Digest"] = fields["Content-Digest"]
    return added


@dataclass(frozen=True)
class SignatureInput:
    """What a request claims before its signature is checked: enough to find the key and refuse a
    stale or replayed request cheaply (``keyid``, ``created``, ``nonce``) and to check coverage."""

    key_id: str
    created: int
    nonce: str
    alg: str
    covered: tuple[str, ...]


def _field(headers: Any, name: str) -> str | None:
    values = [v for k, v in headers.items() if k.lower() == name]
    return ", ".join(values) if values else None


def parse_input(headers: Any) -> SignatureInput:
    """The one signature's parameters from ``Signature-Input``; raises SignatureError naming what is wrong."""
    raw = _field(headers, "signature-input")
    if raw is None or _field(headers, "signature") is None:
        raise SignatureError("request is not signed: send Signature-Input and Signature (RFC 9421)")
    try:
        parsed = http_sf.parse(raw.encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SignatureError("Signature-Input is not a Structured Field dictionary") from None
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise SignatureError("send exactly one signature in Signature-Input")
    (members, params), = parsed.values()
    if not isinstance(members, list) or not all(isinstance(m[0], str) and not m[1] for m in members):
        raise SignatureError("Signature-Input must be an inner list of plain component names")
    missing = [p for p in REQUIRED_PARAMS if p not in params]
    if missing:
        raise SignatureError(f"Signature-Input lacks the parameter(s) {', '.join(missing)}")
    key_id, created, nonce, alg = (params[p] for p in ("keyid", "created", "nonce", "alg"))
    if type(created) is not int or not isinstance(key_id, str) or not isinstance(nonce, str):
        raise SignatureError("Signature-Input: created must be an integer, keyid and nonce strings")
    if alg != ALG:
        raise SignatureError(f"Signature-Input alg must be {ALG!r}, not {alg!r}")
    if not _NONCE.match(nonce):
        raise SignatureError("Signature-Input nonce must be 16-64 characters of [A-Za-z0-9_-]")
    return SignatureInput(key_id, created, nonce, alg, tuple(m[0] for m in members))


def check_coverage(covered: Iterable[str], headers: Any, *, has_body: bool) -> None:
    """Refuse a signature that leaves out anything the backend acts on."""
    have = set(covered)
    present = {k.lower() for k, _ in headers.items()}
    need = [*ALWAYS, *(h for h in ACTED_ON if h in present)]
    if has_body and "content-digest" not in present:
        raise SignatureError("a request with a body must send Content-Digest (sha-256) and sign it")
    missing = [n for n in need if n not in have]
    if missing:
        raise SignatureError(f"the signature does not cover {', '.join(missing)}; sign every one of them")


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: ec.EllipticCurvePublicKey) -> None:
        self.key_id, self.key = key_id, key

    def resolve_public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        return self.key if key_id == self.key_id else None

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError(key_id)


def verify(method: str, url: str, headers: Any, claimed: SignatureInput, key: ec.EllipticCurvePublicKey, *,
           max_skew_s: int, has_body: bool) -> bytes | None:
    """Check the signature of a request with ``key``; returns the signed sha-256 of the body (from
    Content-Digest), which the caller must compare with the bytes it receives, or None without one.

    ``url`` is absolute, with the path and query exactly as received. Raises SignatureError.
    """
    check_coverage(claimed.covered, headers, has_body=has_body)
    verifier = HTTPMessageVerifier(signature_algorithm=ECDSA_P256_SHA256, key_resolver=_OneKey(claimed.key_id, key))
    verifier.max_clock_skew = datetime.timedelta(seconds=max_skew_s)
    try:
        verifier.verify(_Request(method.upper(), url, headers), max_age=datetime.timedelta(0),
                        require_components=[*ALWAYS])
    except HTTPMessageSignaturesException as e:
        why = str(e) or ("a covered component (method, path, query, a tus header or Content-Digest) is not "
                         "what was signed, or another key signed it")
        raise SignatureError(f"signature does not verify for this request: {why}") from None
    digest = _field(headers, "content-digest")
    return digest_sha256(digest) if digest is not None else None
