"""Who is calling: a device (signed by its enrolled key, or a session token that key obtained) or a
person (bearer token with a role). docs/backend-api.md sections 4 and 8.

Revocation is checked on every request against the database, so a lost camera is refused at once,
even mid-upload and even with a session token issued before the revocation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from bodycam.offload import httpsig
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .data import Database, devices, nonces, now_ns, people
from .errors import ApiError
from .parsing import loads
from .permissions import API_ROLE, ROLES, require

SESSION_PREFIX = "bcd1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class DeviceIdentity:
    """A device the request came from. ``body_sha256`` is the SHA-256 of the body its signature covers
    (Content-Digest): whoever reads the body must compare it with the bytes received (``check_body``)
    before acting on them. None for a session token or a signed request without a body."""

    serial: str
    key_id: str
    body_sha256: bytes | None = None

    def check_body(self, got: bytes) -> None:
        """Refuse a body that is not the one the device signed (401 digest_mismatch)."""
        if self.body_sha256 is not None and not hmac.compare_digest(got, self.body_sha256):
            raise ApiError(401, "digest_mismatch", "the request body does not match its signed Content-Digest; "
                           "it was discarded, send it again")


@dataclass(frozen=True)
class Person:
    name: str
    role: str

    def require(self, role: str) -> None:
        """The API's requirement ``role`` (reviewer or admin), checked by the permissions module."""
        require(self.name, self.role, API_ROLE.get(role, role))

    def may(self, action: str) -> None:
        require(self.name, self.role, action)


class NonceStore:
    """Signature nonces seen, in the database: a request replayed to any instance (or after a restart)
    is refused. A nonce is kept for twice the skew window (a signature is accepted up to that far from
    its ``created``), then purged, at most once a minute per instance. The insert is a relaxed write
    (no fsync): a power cut can only forget nonces whose requests were never answered."""

    PURGE_EVERY_S = 60.0

    def __init__(self, db: Database, window_s: int) -> None:
        self.db = db
        self.window_ns = window_s * 2 * 1_000_000_000
        self._next_purge = 0.0

    def add(self, nonce: str) -> bool:
        """True the first time ``nonce`` is seen (within its window), False for a replay."""
        t = now_ns()
        fresh = nonces.add(self.db.relaxed_writes, nonce, now_ns=t, expires_ns=t + self.window_ns)
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.PURGE_EVERY_S
            nonces.purge(self.db.relaxed_writes, t)
        return fresh


class Authenticator:
    def __init__(self, db: Database, *, max_skew_s: int, session_secret: bytes, session_s: int) -> None:
        self.db = db
        self.max_skew_s = max_skew_s
        self.session_secret = session_secret
        self.session_s = session_s
        self.nonces = NonceStore(db, max_skew_s)
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey, int]] = {}
        self._lock = threading.Lock()

    # -- devices --

    def _device_key(self, key_id: str) -> tuple[str, ec.EllipticCurvePublicKey]:
        """The enrolled key, refusing unknown keys, revoked devices and expired certificates."""
        row = devices.certificate(self.db, key_id)
        if row is None:
            raise ApiError(401, "unauthenticated", "unknown device key: enrol the device first")
        if row["status"] != "active":
            raise ApiError(403, "device_revoked", f"device {row['serial']} is revoked; uploads are refused")
        if row["not_after_ns"] < now_ns():
            raise ApiError(
                401, "unauthenticated", f"certificate of device {row['serial']} expired; re-enrol it"
            )
        with self._lock:
            cached = self._keys.get(key_id)
            if cached is None:
                pub = x509.load_pem_x509_certificate(row["pem"].encode()).public_key()
                assert isinstance(pub, ec.EllipticCurvePublicKey)
                cached = self._keys[key_id] = (row["serial"], pub, row["not_after_ns"])
        return cached[0], cached[1]

    def device(self, method: str, target: str, headers: Any) -> DeviceIdentity:
        """Who sent this request: a device session token, or an RFC 9421 signature by an enrolled key
        (docs/backend-api.md 4a). ``target`` is the path and query exactly as received."""
        authz = headers.get("authorization", "")
        if authz.lower().startswith("bearer "):
            return self._session(authz[7:].strip())
        if "signature-input" not in headers and "signature" not in headers:
            raise ApiError(
                401,
                "unauthenticated",
                "device request without credentials: sign it (Signature-Input, Signature and "
                "Content-Digest, RFC 9421) or send a device session token",
                headers={"WWW-Authenticate": 'Signature realm="bodycam"'},
            )
        try:
            claimed = httpsig.parse_input(headers)
        except httpsig.SignatureError as e:
            raise ApiError(401, "unauthenticated", str(e)) from None
        if not _HEX64.match(claimed.key_id):
            raise ApiError(401, "unauthenticated", "Signature-Input keyid must be the device key_id (64 hex)")
        server = time.time()
        if abs(claimed.created - server) > self.max_skew_s:
            raise ApiError(
                401,
                "clock_skew",
                f"signature created {claimed.created - server:+.0f} s off server time "
                f"(limit {self.max_skew_s} s); set the clock from GET /v1/time",
                server_utc_ns=time.time_ns(),
            )
        serial, pub = self._device_key(claimed.key_id)
        has_body = bool(headers.get("transfer-encoding")) or headers.get("content-length", "0") not in ("", "0")
        try:
            digest = httpsig.verify(method, "http://backend" + target, headers, claimed, pub,
                                    max_skew_s=self.max_skew_s, has_body=has_body)
        except httpsig.SignatureError as e:
            raise ApiError(401, "unauthenticated", str(e)) from None
        if not self.nonces.add(claimed.nonce):
            raise ApiError(401, "replayed", "signature nonce already used: this request was replayed")
        return DeviceIdentity(serial, claimed.key_id, digest)

    def issue_session(self, who: DeviceIdentity) -> dict[str, Any]:
        exp = now_ns() + self.session_s * 1_000_000_000
        payload = (
            base64.urlsafe_b64encode(
                json.dumps({"k": who.key_id, "s": who.serial, "e": exp}, separators=(",", ":")).encode()
            )
            .decode()
            .rstrip("=")
        )
        mac = hmac.new(self.session_secret, f"{SESSION_PREFIX}.{payload}".encode(), "sha256").digest()
        token = f"{SESSION_PREFIX}.{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
        return {"token": token, "expires_utc_ns": exp, "serial": who.serial, "key_id": who.key_id}

    def _session(self, token: str) -> DeviceIdentity:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != SESSION_PREFIX:
            raise ApiError(401, "unauthenticated", "not a device session token")
        mac = hmac.new(self.session_secret, f"{parts[0]}.{parts[1]}".encode(), "sha256").digest()
        try:
            given = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (binascii.Error, ValueError):
            raise ApiError(401, "unauthenticated", "device session token is damaged") from None
        if not hmac.compare_digest(mac, given):  # before parsing: only our own claims are ever parsed
            raise ApiError(401, "unauthenticated", "device session token signature invalid")
        try:
            claims = loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (binascii.Error, ValueError):
            raise ApiError(401, "unauthenticated", "device session token is damaged") from None
        if claims.get("e", 0) < now_ns():
            raise ApiError(401, "unauthenticated", "device session token expired; get a new one")
        serial, _ = self._device_key(claims["k"])  # revocation checked on every request
        return DeviceIdentity(serial, claims["k"])

    # -- people --

    def person(self, headers: Any) -> Person:
        authz = headers.get("authorization", "")
        if not authz.lower().startswith("bearer "):
            raise ApiError(
                401,
                "unauthenticated",
                "this API needs an account: send Authorization: Bearer "
                "<token> (create one with 'bodycam backend token create NAME --role reviewer')",
                headers={"WWW-Authenticate": 'Bearer realm="bodycam"'},
            )
        token = authz[7:].strip()
        row = people.by_token(self.db, token_sha256(token))
        if row is None or row["disabled"]:
            raise ApiError(401, "unauthenticated", "unknown or disabled account token")
        return Person(row["name"], row["role"])


def create_person(db: Database, name: str, role: str) -> str:
    """A new account token for a person; printed once, only its hash is kept."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = "bcp_" + secrets.token_urlsafe(32)
    with db.transaction() as c:
        if people.exists(c, name):
            raise ValueError(f"an account named {name!r} exists already")
        people.add(c, name=name, role=role, token_sha256=token_sha256(token), t=now_ns())
    return token
