"""A small tus 1.0.0 client (core + creation + termination + sha256 checksum) over ``BackendClient``.

Why not tuspy: the backend authenticates every request with a signature over the method, path, query,
tus headers, body digest and a fresh nonce (backend-api.md 4a). tuspy only sends static headers
(``TusClient(url, headers=...)``), so it could only work with a bearer session token; it also keeps
its own URL store, retries with a fixed delay (no exponential backoff, no Retry-After) and cannot stop
between chunks on an Event.
What we need of tus is four requests, so they are written here, each signed by the client.

Resuming is tus's own rule: ``HEAD`` gives the server's durable offset and the next ``PATCH`` starts
there; a ``409`` with the server's offset (a chunk we sent but whose answer we lost) is followed, not
fought. Each chunk carries ``Upload-Checksum: sha256``, so a chunk torn in transit is discarded by
the server (460) and sent again instead of being kept. A segment that fits in one chunk goes up in
one request with its signed manifest (creation-with-upload, finalized by the backend on the spot);
there the manifest's declared sha256 does the checksum's job.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .client import ApiError, BackendClient, OffloadError, Retryable

TUS_VERSION = "1.0.0"
TUS = {"Tus-Resumable": TUS_VERSION}
ENDPOINT = "/v1/uploads"
MAX_METADATA_CHARS = 8192   # the backend takes 12 KiB of Upload-Metadata; a bigger manifest goes in finalize

Reader = Callable[[int, int], bytes]            # (offset, size) -> bytes at that offset
OnProgress = Callable[[int], None]              # called with the server's offset after each chunk


class UploadGone(OffloadError):
    """The server no longer knows the upload (expired, terminated, never ours): create a new one."""


def encode_metadata(meta: dict[str, str | bytes]) -> str:
    return ",".join(f"{k} {base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()}"
                    for k, v in meta.items())


@dataclass
class Created:
    location: str
    offset: int                         # the server's offset: 0 if the bytes sent along were not kept
    receipt: dict[str, Any] | None      # the finalize answer, when the creation carried the whole segment


class TusClient:
    def __init__(self, client: BackendClient, endpoint: str = ENDPOINT) -> None:
        self.client = client
        self.endpoint = endpoint

    def _location(self, raw: str | None) -> str:
        """The upload's path; anything outside our endpoint is refused (we sign what we request)."""
        path = urlsplit(raw or "").path
        if not path.startswith(self.endpoint + "/") or "/" in path[len(self.endpoint) + 1:]:
            raise OffloadError(f"backend gave an unexpected upload Location {raw!r}")
        return path

    def create_with(self, length: int, metadata: dict[str, str | bytes], first: bytes, *,
                    checksum: bool = True, known_sha256: bytes | None = None) -> Created:
        """Create and send the first chunk in one request (creation-with-upload): one round trip and one
        server fsync fewer per segment, which is most of the cost of a segment on a fast dock link.

        If ``first`` is the whole segment and ``metadata`` carries its ``sha256``, signed ``manifest``
        and ``signature``, the backend verifies and stores it at once and ``receipt`` holds its answer:
        one request per segment. The declared sha256 then guards the bytes, so ``checksum`` (a sha256
        of ``first`` computed here) can be left off, and ``known_sha256`` (that declared sha256, hashed
        as the segment was written) can stand for the signed Content-Digest: the segment is not hashed
        again on the camera. If the backend finds the bytes are not those (401 digest_mismatch: torn
        in transit, or damaged on the device), they go again with a digest of the bytes read, so a
        segment damaged on the device still reaches finalize, which rejects and flags it.
        """
        headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": encode_metadata(metadata),
                   "Content-Type": "application/offset+octet-stream"}
        digest = known_sha256 if known_sha256 is not None and not checksum else hashlib.sha256(first).digest()
        if checksum:
            headers["Upload-Checksum"] = "sha256 " + base64.b64encode(digest).decode()
        try:
            r = self.client.request("POST", self.endpoint, data=first, headers=headers, body_sha256=digest)
        except ApiError as e:
            if e.code == "digest_mismatch" and known_sha256 is not None:
                return self.create_with(length, metadata, first, checksum=checksum)
            if e.status == 460 or e.code == "digest_mismatch":   # damaged in transit: nothing was created
                raise Retryable(e.status, e.code, e.message, e.body) from None
            raise
        receipt = None
        if r.headers.get("Content-Type", "").startswith("application/json"):
            try:
                receipt = r.json()
            except ValueError:
                raise Retryable(r.status_code, "bad_response", "creation answer is not valid JSON") from None
        return Created(self._location(r.headers.get("Location")), int(r.headers.get("Upload-Offset", "0")),
                       receipt)

    def offset(self, location: str) -> int:
        try:
            r = self.client.request("HEAD", location, headers=dict(TUS))
        except ApiError as e:
            if e.status in (404, 410):
                raise UploadGone(f"upload {location} is gone at the backend ({e.code})") from None
            raise
        return int(r.headers["Upload-Offset"])

    def patch(self, location: str, offset: int, chunk: bytes) -> int:
        """Append ``chunk`` at ``offset``; returns the server's new offset (even after a 409)."""
        digest = hashlib.sha256(chunk).digest()     # one hash for Upload-Checksum and the signed Content-Digest
        try:
            r = self.client.request("PATCH", location, data=chunk, body_sha256=digest, headers={
                **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": f"sha256 {base64.b64encode(digest).decode()}"})
        except ApiError as e:
            if e.status == 409 and isinstance(e.body.get("offset"), int):
                return e.body["offset"]         # the server has more (or less) than we thought: follow it
            if e.status in (404, 410):
                raise UploadGone(f"upload {location} is gone at the backend ({e.code})") from None
            if e.status == 460 or e.code == "digest_mismatch":
                return offset                   # chunk damaged in transit and discarded: send it again
            raise
        return int(r.headers["Upload-Offset"])

    def terminate(self, location: str) -> None:
        try:
            self.client.request("DELETE", location, headers=dict(TUS))
        except ApiError as e:
            if e.status not in (404, 409, 410):
                raise

    def send(self, location: str, read: Reader, *, offset: int, length: int, chunk_bytes: int,
             stop: threading.Event, on_progress: OnProgress | None = None) -> int:
        """PATCH from ``offset`` until ``length`` or until ``stop`` is set (checked between chunks).

        Returns the server's offset; equal to ``length`` when the upload is complete.
        """
        stalls = 0
        while offset < length:
            if stop.is_set():
                return offset
            chunk = read(offset, min(chunk_bytes, length - offset))
            if not chunk:
                raise OffloadError(f"the local file ended at {offset} of {length} bytes (changed on disk?)")
            new = self.patch(location, offset, chunk)
            stalls = stalls + 1 if new == offset else 0
            if stalls >= 5:
                raise OffloadError(f"upload {location} makes no progress at offset {offset}")
            offset = new
            if on_progress is not None:
                on_progress(offset)
        return offset
