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

from bodycam.evidence.signer import verify_signature
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .db import Database, now_ns
from .errors import ApiError
from .parsing import is_decimal, loads

REQUEST_PREFIX = "bodycam-request/1"
SESSION_PREFIX = "bcd1"
ROLES = ("admin", "reviewer")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def string_to_sign(method: str, path: str, key_id: str, timestamp: str, nonce: str) -> bytes:
    return "\n".join((REQUEST_PREFIX, method.upper(), path, key_id, timestamp, nonce)).encode()


def sign_headers(signer: Any, method: str, path: str, *, now: float | None = None) -> dict[str, str]:
    """Headers for a signed device request (used by tests, the bench, and usable by the device)."""
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(18)
    sig = signer.sign(string_to_sign(method, path, signer.key_id, ts, nonce))
    return {
        "Bodycam-Key-Id": signer.key_id,
        "Bodycam-Timestamp": ts,
        "Bodycam-Nonce": nonce,
        "Bodycam-Signature": base64.b64encode(sig).decode(),
    }


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class DeviceIdentity:
    serial: str
    key_id: str


@dataclass(frozen=True)
class Person:
    name: str
    role: str

    def require(self, role: str) -> None:
        if role == "admin" and self.role != "admin":
            raise ApiError(
                403, "forbidden", f"{self.name} ({self.role}) may not do this; it needs role admin"
            )


class NonceCache:
    """Nonces seen within the skew window; per process (a fleet would share it, e.g. in Redis)."""

    def __init__(self, window_s: int) -> None:
        self.window_ns = window_s * 2 * 1_000_000_000
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, nonce: str) -> bool:
        t = time.monotonic_ns()
        with self._lock:
            if len(self._seen) > 10000:
                self._seen = {n: e for n, e in self._seen.items() if e > t}
            exp = self._seen.get(nonce)
            if exp is not None and exp > t:
                return False
            self._seen[nonce] = t + self.window_ns
            return True


class Authenticator:
    def __init__(self, db: Database, *, max_skew_s: int, session_secret: bytes, session_s: int) -> None:
        self.db = db
        self.max_skew_s = max_skew_s
        self.session_secret = session_secret
        self.session_s = session_s
        self.nonces = NonceCache(max_skew_s)
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey, int]] = {}
        self._lock = threading.Lock()

    # -- devices --

    def _device_key(self, key_id: str) -> tuple[str, ec.EllipticCurvePublicKey]:
        """The enrolled key, refusing unknown keys, revoked devices and expired certificates."""
        row = self.db.certificate(key_id)
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

    def device(self, method: str, path: str, headers: Any) -> DeviceIdentity:
        authz = headers.get("authorization", "")
        if authz.lower().startswith("bearer "):
            return self._session(authz[7:].strip())
        key_id = headers.get("bodycam-key-id", "")
        ts, nonce, sig_b64 = (
            headers.get(h, "") for h in ("bodycam-timestamp", "bodycam-nonce", "bodycam-signature")
        )
        if not (key_id or sig_b64):
            raise ApiError(
                401,
                "unauthenticated",
                "device request without credentials: sign it "
                "(Bodycam-Key-Id/-Timestamp/-Nonce/-Signature) or send a device session token",
                headers={"WWW-Authenticate": 'Bodycam-Signature realm="bodycam"'},
            )
        if not _HEX64.match(key_id) or not is_decimal(ts, max_digits=12) or not _NONCE.match(nonce):
            raise ApiError(401, "unauthenticated", "malformed Bodycam-Key-Id, -Timestamp or -Nonce header")
        try:
            sig = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(401, "unauthenticated", "Bodycam-Signature is not base64") from None
        server = time.time()
        if abs(int(ts) - server) > self.max_skew_s:
            raise ApiError(
                401,
                "clock_skew",
                f"Bodycam-Timestamp is {int(ts) - server:+.0f} s off server time "
                f"(limit {self.max_skew_s} s); set the clock from GET /v1/time",
                server_utc_ns=time.time_ns(),
            )
        serial, pub = self._device_key(key_id)
        if not verify_signature(pub, sig, string_to_sign(method, path, key_id, ts, nonce)):
            raise ApiError(401, "unauthenticated", "device signature does not verify for this request")
        if not self.nonces.add(nonce):
            raise ApiError(401, "replayed", "Bodycam-Nonce already used: this request was replayed")
        return DeviceIdentity(serial, key_id)

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
        row = self.db.one(
            "SELECT name, role, disabled FROM people WHERE token_sha256=?", (token_sha256(token),)
        )
        if row is None or row["disabled"]:
            raise ApiError(401, "unauthenticated", "unknown or disabled account token")
        return Person(row["name"], row["role"])


def create_person(db: Database, name: str, role: str) -> str:
    """A new account token for a person; printed once, only its hash is kept."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = "bcp_" + secrets.token_urlsafe(32)
    with db.transaction() as c:
        if c.execute("SELECT 1 FROM people WHERE name=?", (name,)).fetchone():
            raise ValueError(f"an account named {name!r} exists already")
        c.execute(
            "INSERT INTO people(name, role, token_sha256, created_ns) VALUES(?,?,?,?)",
            (name, role, token_sha256(token), now_ns()),
        )
    return token
