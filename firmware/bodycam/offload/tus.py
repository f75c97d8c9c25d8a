"""A small tus 1.0.0 client (core + creation + termination + sha256 checksum) over ``BackendClient``.

Why not tuspy: the backend authenticates every request with a signature over method, path and a
fresh nonce (backend-api.md 4a). tuspy only sends static headers (``TusClient(url, headers=...)``),
so it could only work with a bearer session token; it also keeps its own URL store, retries with a
fixed delay (no exponential backoff, no Retry-After) and cannot stop between chunks on an Event.
What we need of tus is four requests, so they are written here, each signed by the client.

Resuming is tus's own rule: ``HEAD`` gives the server's durable offset and the next ``PATCH`` starts
there; a ``409`` with the server's offset (a chunk we sent but whose answer we lost) is followed, not
fought. Each chunk carries ``Upload-Checksum: sha256``, so a chunk torn in transit is discarded by
the server (460) and sent again instead of being kept.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from .client import ApiError, BackendClient, OffloadError

TUS_VERSION = "1.0.0"
TUS = {"Tus-Resumable": TUS_VERSION}
ENDPOINT = "/v1/uploads"

Reader = Callable[[int, int], bytes]            # (offset, size) -> bytes at that offset
OnProgress = Callable[[int], None]              # called with the server's offset after each chunk


class UploadGone(OffloadError):
    """The server no longer knows the upload (expired, terminated, never ours): create a new one."""


def encode_metadata(meta: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())


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

    def create(self, length: int, metadata: dict[str, str]) -> str:
        r = self.client.request("POST", self.endpoint, headers={
            **TUS, "Upload-Length": str(length), "Upload-Metadata": encode_metadata(metadata)})
        return self._location(r.headers.get("Location"))

    def create_with(self, length: int, metadata: dict[str, str], first: bytes) -> tuple[str, int]:
        """Create and send the first chunk in one request (creation-with-upload): one round trip and one
        server fsync fewer per segment, which is most of the cost of a segment on a fast dock link.

        Returns (location, the server's offset): a chunk damaged in transit leaves the offset at 0.
        """
        digest = base64.b64encode(hashlib.sha256(first).digest()).decode()
        r = self.client.request("POST", self.endpoint, data=first, headers={
            **TUS, "Upload-Length": str(length), "Upload-Metadata": encode_metadata(metadata),
            "Content-Type": "application/offset+octet-stream", "Upload-Checksum": f"sha256 {digest}"})
        return self._location(r.headers.get("Location")), int(r.headers.get("Upload-Offset", "0"))

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
        digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
        try:
            r = self.client.request("PATCH", location, data=chunk, headers={
                **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": f"sha256 {digest}"})
        except ApiError as e:
            if e.status == 409 and isinstance(e.body.get("offset"), int):
                return e.body["offset"]         # the server has more (or less) than we thought: follow it
            if e.status in (404, 410):
                raise UploadGone(f"upload {location} is gone at the backend ({e.code})") from None
            if e.status == 460:
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
