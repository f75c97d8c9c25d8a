"""HTTP to the evidence backend, every device request signed with the device key (backend-api.md 4a:
RFC 9421 HTTP Message Signatures over the method, path, query, the tus headers and the body's
Content-Digest; ``httpsig`` builds them).

Signing goes through the ``Signer`` seam, never the key file, so a TPM or secure element works the
same. The timestamp in each signature is *server* time (device clock + the offset measured from
``/v1/time``), so a camera whose clock is wrong still authenticates; a ``401 clock_skew`` carries the
server's time, from which the offset is corrected once and the request re-signed (fresh nonce).

Errors are sorted for the uploader: ``Retryable`` (the network, 5xx, 503 busy with its Retry-After,
423) means wait and try again; ``Refused`` (unknown key, revoked device) means stop until a human
acts; any other ``ApiError`` carries the backend's stable ``code`` for the caller to decide.
"""

from __future__ import annotations

import secrets
from typing import Any

import requests

from ..clock import Clock, SystemClock
from ..errors import BodycamError
from ..evidence.signer import Signer
from . import httpsig

USER_AGENT = "bodycam-device"


class OffloadError(BodycamError, RuntimeError):
    """Anything that stops an upload; the message says what happened and, if a person can, what to do."""


class ApiError(OffloadError):
    """The backend answered with an error body (backend-api.md section 1)."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"backend said {status} {code}: {message}" if status else message)
        self.message = message
        self.status = status
        self.code = code
        self.body = body or {}


class Retryable(ApiError):
    """Worth trying again after a wait: unreachable, busy (503), a server error, a locked upload."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(status, code, message, body)
        self.retry_after = retry_after


class Unreachable(Retryable, ConnectionError):
    """No HTTP answer (connection refused, reset, timeout): the dock's network or the backend is down."""

    def __init__(self, url: str, error: Exception) -> None:
        super().__init__(0, "unreachable", f"backend {url} unreachable ({type(error).__name__})")


class Refused(ApiError, PermissionError):
    """The backend will not talk to this device (not enrolled, revoked, certificate expired)."""


def _retry_after(r: requests.Response, body: dict[str, Any]) -> float | None:
    raw = r.headers.get("Retry-After", body.get("retry_after"))
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except (TypeError, ValueError):
        return None         # an HTTP-date: the caller's own backoff applies


def error_from(r: requests.Response) -> ApiError:
    """The backend's error body as the right exception class."""
    try:
        body = r.json()
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        body = {}
    code = str(body.get("error") or f"http_{r.status_code}")
    message = str(body.get("message") or r.reason or "no message")
    if r.status_code >= 500 or r.status_code == 423 or code in ("replayed", "clock_skew", "digest_mismatch"):
        return Retryable(r.status_code, code, message, body, retry_after=_retry_after(r, body))
    if r.status_code == 403 and code in ("device_revoked", "forbidden") or (
            r.status_code == 401 and code == "unauthenticated"):
        return Refused(r.status_code, code, message, body)
    return ApiError(r.status_code, code, message, body)


class BackendClient:
    """One backend, one device identity; ``offset_ns`` is server time minus device time."""

    def __init__(self, base_url: str, signer: Signer, *, clock: Clock | None = None, timeout: float = 30.0,
                 verify: bool | str = True, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.verify = verify
        self.session.headers["User-Agent"] = USER_AGENT
        self.offset_ns = 0

    def server_time_ns(self) -> int:
        return self.clock.utc_ns() + self.offset_ns

    def sign(self, request: requests.PreparedRequest, *, body_sha256: bytes | None = None) -> None:
        """Sign a prepared request in place, exactly as it will be sent: a fresh nonce every time.
        ``body_sha256``: the body's SHA-256 if the caller has just computed it (see httpsig)."""
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        if body is not None and not isinstance(body, bytes):
            raise OffloadError(f"cannot sign a streamed body for {request.method} {request.url}; pass bytes")
        request.headers.update(httpsig.sign_headers(
            self.signer, str(request.method), str(request.url), request.headers, body,
            created=self.server_time_ns() // 1_000_000_000, nonce=secrets.token_urlsafe(24),
            body_sha256=body_sha256))

    def request(self, method: str, path: str, *, signed: bool = True, headers: dict[str, str] | None = None,
                data: bytes | None = None, json: Any = None, body_sha256: bytes | None = None) -> requests.Response:
        """A 2xx response, or raises (Unreachable, Retryable, Refused, ApiError)."""
        for attempt in (1, 2):
            prepared = self.session.prepare_request(requests.Request(
                method, self.base_url + path, headers=headers, data=data, json=json))
            if signed:
                self.sign(prepared, body_sha256=body_sha256)
            settings = self.session.merge_environment_settings(prepared.url, {}, None, self.session.verify, None)
            try:
                r = self.session.send(prepared, timeout=self.timeout, allow_redirects=False, **settings)
            except requests.RequestException as e:
                raise Unreachable(self.base_url, e) from None
            if r.status_code < 300:
                return r
            err = error_from(r)
            server_ns = err.body.get("server_utc_ns")
            if err.code == "clock_skew" and attempt == 1 and isinstance(server_ns, int):
                self.offset_ns = server_ns - self.clock.utc_ns()     # then re-sign with server time
                continue
            raise err
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, path: str, *, signed: bool = True) -> dict[str, Any]:
        r = self.request("GET", path, signed=signed)
        try:
            doc = r.json()
        except ValueError:
            raise Retryable(r.status_code, "bad_response", f"GET {path} did not return JSON") from None
        if not isinstance(doc, dict):
            raise Retryable(r.status_code, "bad_response", f"GET {path} did not return a JSON object")
        return doc

    def healthy(self) -> bool:
        """Reachability, the second half of dock detection (the first is the dock-sense pin)."""
        try:
            # verify= given here, as request() does: REQUESTS_CA_BUNDLE in the environment would otherwise
            # replace the configured [offload] ca_file and the dock would never see the backend.
            return self.session.get(self.base_url + "/healthz", timeout=min(self.timeout, 5.0),
                                    verify=self.session.verify).ok
        except requests.RequestException:
            return False

    def close(self) -> None:
        self.session.close()
