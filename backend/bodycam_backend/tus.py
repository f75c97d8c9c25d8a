"""tus 1.0.0 server: core + creation (+ creation-with-upload) + termination (incomplete uploads only) +
checksum (sha1, sha256).

Bytes are staged in ``<[storage] staging_dir>/<server id>.part``; the id is random hex made here, so
no client-supplied name reaches the filesystem. The offset in the database is the durable truth: it
only moves after the bytes up to it are fsynced, and a PATCH first cuts the file back to it, so a crash
mid-PATCH loses at most that PATCH's unacknowledged bytes and ``HEAD`` tells the client where to
resume. The media SHA-256 is computed while the bytes stream in (re-read from disk after a restart, or
when another instance wrote some of them), so finalizing a large segment does not wait for a second pass.

Several instances: a PATCH leases its upload row (a conditional UPDATE at the expected offset, renewed
while it writes), so of two PATCHes at one offset on two instances exactly one writes; the other gets
409 or 423 with the current offset. The staging directory is then one shared filesystem (NFS), and the
file is closed after every PATCH so the next instance to open it sees every byte (close-to-open). Why
not S3 multipart uploads instead: staged bytes are hashed and checked against the device's signed
manifest *before* anything enters the write-once store, while completing a multipart upload would
commit unverified bytes into COMPLIANCE retention, where nothing could ever remove them.

No staged-file work runs on the event loop: bodies are written and hashed by worker threads
(``BodyWriter``), and opening, truncating, fsyncing, closing and removing staged files go through threads
too, so a slow disk stalls only the upload it belongs to, never the loop that serves every other request.
Nor does any database statement (``offloop.db_call``): a row read, a lease, an offset commit waits in a
thread, so another device's commit (SQLite) or a round trip (PostgreSQL) holds up only its own request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from bodycam.storage.durable import fsync_dir
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from .admission import Admission
from .auth import DeviceIdentity
from .bodywriter import BodyWriter, EarlyBody, IdleWatch, ReadAheadBudget
from .data import Database, now_ns, uploads
from .errors import ApiError
from .offloop import db_call, db_call_shielded
from .parsing import INT64_MAX, decimal, is_decimal

log = logging.getLogger("bodycam.backend.tus")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
KINDS = ("segment", "audit")
_META_KEY = re.compile(r"^[^\s,]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_METADATA_HEADER = 12288  # room for a signed manifest (finalize on creation), inside h11's 16 KiB
# A new upload's first body bytes read into memory while it is authenticated and admitted (a worker-thread
# hop of about 2 ms): up to this much per upload, and READ_AHEAD_TOTAL for all of them at once; none while
# the admission limit is turning uploads away.
READ_AHEAD_BYTES = 1 << 20
READ_AHEAD_TOTAL = 64 << 20
IO_THREADS = 8  # staged writes in flight at once, one per upload at most (each upload's writes are in order)


def tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, **extra}


def parse_metadata(header: str) -> dict[str, bytes]:
    """``key base64value,key2 base64value2`` -> raw values. Raises ApiError 400 bad_metadata."""
    if len(header) > MAX_METADATA_HEADER:
        raise ApiError(400, "bad_metadata", f"Upload-Metadata longer than {MAX_METADATA_HEADER} characters")
    out: dict[str, bytes] = {}
    for item in filter(None, (p.strip() for p in header.split(","))):
        parts = item.split(" ")
        if len(parts) > 2 or not _META_KEY.match(parts[0]) or parts[0] in out:
            raise ApiError(
                400, "bad_metadata", f"Upload-Metadata item {item[:40]!r} is not 'key base64value'"
            )
        try:
            out[parts[0]] = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
        except (binascii.Error, ValueError):
            raise ApiError(400, "bad_metadata", f"Upload-Metadata value of {parts[0]!r} is not base64") from None
    return out


def metadata_text(meta: dict[str, bytes], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "bad_metadata", f"Upload-Metadata value of {key!r} is not UTF-8") from None


def _int_header(request: Request, name: str, *, required: bool = True) -> int | None:
    raw = request.headers.get(name)
    name = "-".join(p.capitalize() for p in name.split("-"))
    if raw is None:
        if required:
            raise ApiError(400, "bad_request", f"{name} header is required")
        return None
    if name == "Upload-Length" and raw.isascii() and raw.isdigit() and (len(raw) > 19 or int(raw) > INT64_MAX):
        return INT64_MAX + 1  # past every limit: the caller answers 413, as for any length over it
    return decimal(raw, name)


def check_version(request: Request) -> None:
    v = request.headers.get("tus-resumable")
    if v != TUS_VERSION:
        raise ApiError(
            412,
            "tus_version",
            f"Tus-Resumable: {TUS_VERSION} is required" + (f", not {v!r}" if v else ""),
            headers={"Tus-Version": TUS_VERSION},
        )


class PendingRow(dict[str, Any]):
    """An upload row not yet in the database. A segment finalized on creation writes its row in the same
    transaction that records the segment: one commit (one WAL fsync) for the request, not two."""



@dataclass
class Created:
    """A new upload. ``finalize_with`` holds (manifest, signature) when the creation request carried the
    whole segment and its signed manifest: the caller verifies and stores it before answering, and
    writes ``row`` (not yet in the database) as it does."""

    upload_id: str
    offset: int
    who: DeviceIdentity
    finalize_with: tuple[bytes, bytes] | None = None
    row: PendingRow | None = None

    def response(self, body: dict[str, Any] | None = None) -> Response:
        headers = tus_headers(Location=f"/v1/uploads/{self.upload_id}", **{"Upload-Offset": str(self.offset)})
        if body is None:
            return Response(status_code=201, headers=headers)
        return JSONResponse(body, status_code=201, headers=headers)


def _open_staged(path: Path, offset: int) -> tuple[int, int]:
    """Open a staged file for writing at ``offset``: (fd, its size before). Bytes past the offset (a crash
    mid-PATCH left them, never acknowledged) are cut off; a file short of it is the caller's to refuse."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        have = os.fstat(fd).st_size
        if have > offset:
            os.ftruncate(fd, offset)
    except BaseException:
        os.close(fd)
        raise
    return fd, have


def _create_staged(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _truncate_synced(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(0)
        os.fsync(f.fileno())


@dataclass(frozen=True)
class _Creation:
    """A creation request's headers, checked."""

    length: int
    with_body: bool
    kind: str
    sequence: int | None
    sha256: str | None
    signed: tuple[bytes, bytes] | None


@dataclass
class _Hash:
    h: Any
    pos: int


class TusService:
    def __init__(
        self,
        *,
        db: Database,
        staging: Path,
        admission: Admission,
        max_upload_bytes: int,
        max_audit_bytes: int,
        body_idle_s: float = 30.0,
        io_pool: ThreadPoolExecutor | None = None,
        lease_s: float = 20.0,
        instance: str = "",
    ) -> None:
        self.db = db
        self.staging = staging
        staging.mkdir(parents=True, exist_ok=True)
        self.admission = admission
        self.max = {"segment": max_upload_bytes, "audit": max_audit_bytes}
        self.body_idle_s = body_idle_s
        self.lease_ns = int(lease_s * 1e9)
        self.instance = instance or secrets.token_hex(6)
        # Running hashes of the uploads this instance wrote; only an optimisation (see ``media_sha256``).
        self._hashes: dict[str, _Hash] = {}
        self._lock = threading.Lock()
        # The threads that write and hash bodies (injectable: a test holds them to prove the loop goes on).
        self._io = io_pool or ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="tus-io")
        self._read_ahead = ReadAheadBudget(READ_AHEAD_TOTAL)

    def path(self, upload_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ApiError(404, "not_found", "no such upload")
        return self.staging / f"{upload_id}.part"

    def owned(self, upload_id: str, who: DeviceIdentity) -> Any:
        """The upload row if this device created it; other devices get 404 (they learn nothing)."""
        self.path(upload_id)
        row = uploads.get(self.db, upload_id)
        if row is None or row["serial"] != who.serial:
            raise ApiError(404, "not_found", "no such upload")
        return row

    # -- endpoints --

    def options(self) -> Response:
        return Response(
            status_code=204,
            headers=tus_headers(
                **{
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": EXTENSIONS,
                    "Tus-Max-Size": str(self.max["segment"]),
                    "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
                }
            ),
        )

    def _creation(self, request: Request) -> _Creation:
        """What a creation request asks for, checked (blocking-free: headers only)."""
        check_version(request)
        if request.headers.get("upload-defer-length") is not None:
            raise ApiError(400, "bad_request", "Upload-Defer-Length is not supported: send Upload-Length")
        length = _int_header(request, "upload-length")
        assert length is not None
        with_body = int(request.headers.get("content-length") or 0) > 0 or "chunked" in request.headers.get(
            "transfer-encoding", ""
        )
        if (
            with_body
            and request.headers.get("content-type", "").split(";")[0].strip().lower()
            != "application/offset+octet-stream"
        ):
            raise ApiError(
                415,
                "bad_content_type",
                "creation-with-upload needs Content-Type: application/offset+octet-stream",
            )
        meta = parse_metadata(request.headers.get("upload-metadata", ""))
        kind = metadata_text(meta, "kind")
        if kind not in KINDS:
            raise ApiError(400, "bad_metadata", f"Upload-Metadata 'kind' must be one of {', '.join(KINDS)}")
        if length < 1:
            raise ApiError(400, "bad_request", "Upload-Length must be at least 1")
        if length > self.max[kind]:
            raise ApiError(
                413,
                "upload_too_large",
                f"Upload-Length {length} is over the limit of {self.max[kind]} bytes for a {kind} upload",
            )
        sequence = None
        if kind == "segment":
            seq = metadata_text(meta, "sequence") or ""
            if not is_decimal(seq) or not 1 <= int(seq) < 1 << 62:
                raise ApiError(
                    400,
                    "bad_metadata",
                    "Upload-Metadata 'sequence' (a positive integer) is required for a segment",
                )
            sequence = int(seq)
        sha = metadata_text(meta, "sha256")
        if sha is not None and not _HEX64.match(sha):
            raise ApiError(400, "bad_metadata", "Upload-Metadata 'sha256' must be 64 lowercase hex digits")
        signed = None
        if "manifest" in meta or "signature" in meta:
            if kind != "segment" or not meta.get("manifest") or not meta.get("signature") or sha is None:
                raise ApiError(
                    400,
                    "bad_metadata",
                    "Upload-Metadata 'manifest' and 'signature' go together, on a segment upload that "
                    "also declares its 'sha256'",
                )
            signed = (meta["manifest"], meta["signature"])
        return _Creation(length, with_body, kind, sequence, sha, signed)

    def _begin(self, authenticate: Callable[[], DeviceIdentity], request: Request) -> tuple[
            DeviceIdentity, _Creation, str, int | None]:
        """Who sent it, what it asks for, a slot, and (with a body) the staged file opened for it: in one worker
        thread, as one wait. Under load every hop back to the event loop waits behind the bodies it is
        reading; four hops before the first body byte cost a new upload tens of milliseconds."""
        who = authenticate()
        spec = self._creation(request)
        upload_id = secrets.token_hex(16)
        self.admission.admit(upload_id, new=True)
        try:
            path = self.path(upload_id)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if spec.with_body else None
            if fd is None:
                _create_staged(path)
        except BaseException:
            self.admission.release(upload_id)
            raise
        return who, spec, upload_id, fd

    async def create(self, request: Request, authenticate: Callable[[], DeviceIdentity]) -> Created:
        """A new upload for whoever ``authenticate`` (run in a worker thread) finds signed the request."""
        # Not while uploads are being turned away: the bytes of a request about to get 503 are read for nothing.
        body = EarlyBody(request, self._read_ahead, 0 if self.admission.at_limit_lately() else READ_AHEAD_BYTES)
        begin = asyncio.ensure_future(db_call(self._begin, authenticate, request))
        try:
            await body.read_while(begin)
            with anyio.CancelScope(shield=True):  # what it took (a slot, an open file) must not be lost
                await asyncio.wait([begin])
            who, spec, upload_id, fd = begin.result()
        except BaseException:
            body.discard()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([begin])
                if not begin.cancelled() and begin.exception() is None:  # accepted, but this request is ending
                    _, _, gone, fd = begin.result()
                    if fd is not None:
                        os.close(fd)
                    await db_call(self.admission.release, gone)
                    await anyio.to_thread.run_sync(self._remove_staged, gone)
            raise
        length, with_body, kind, sequence, sha, signed = (spec.length, spec.with_body, spec.kind, spec.sequence,
                                                          spec.sha256, spec.signed)
        offset = 0
        try:
            with self._lock:
                self._hashes[upload_id] = _Hash(hashlib.sha256(), 0)
            if with_body:
                # creation-with-upload: the first chunk rides on the POST, and the row is written once,
                # with its offset, after the bytes are durable (one commit, not two). A crash before that
                # leaves a staged file without a row, which `Ingestor.recover` removes at start.
                checksum = self._checksum(request.headers.get("upload-checksum"))
                # Beside the body's fsync: the new name in staging is made durable, and a signed manifest
                # that came along is staged. (Not while the body streams in: measured, those fsyncs stall
                # the body's writes on the filesystem journal more than they save.)
                stage = partial(self.stage_signed, upload_id, *signed) if signed else partial(fsync_dir, self.staging)
                beside = [stage]
                handed, fd = fd, None  # the writer closes it, whatever happens
                offset, complete = await self._write(request, upload_id, 0, length, checksum, digest=who.body_sha256,
                                                      beside=beside, fd=handed, body=body)
                if not complete:  # the client went away or stalled mid-body and never learned the Location
                    if request.scope.get("bodycam.stalled"):
                        raise ApiError(408, "request_timeout", f"no body bytes for {self.body_idle_s:g} s; "
                                       "nothing was kept", headers={"Connection": "close"})
                    raise ApiError(400, "incomplete_body", "the request body ended early; nothing was kept")
                if offset == length and sha is not None and self._running_sha256(upload_id) != sha:
                    # The whole upload in one request, not what the device declared: like a failed
                    # Upload-Checksum, the bytes are not kept. Whether they were damaged in transit or
                    # on the device, the device sends them again in checksummed PATCHes and finalize
                    # decides (a segment altered on the device is then rejected and flagged).
                    offset = await self._discard(upload_id)
                    await anyio.to_thread.run_sync(self.unstage_signed, upload_id)
                    log.warning(
                        "whole upload does not match its declared sha256; discarded",
                        extra={"event": "upload_discarded", "data": {"upload": upload_id, "device": who.serial}},
                    )
            row = PendingRow(
                id=upload_id,
                serial=who.serial,
                key_id=who.key_id,
                kind=kind,
                sequence=sequence,
                length=length,
                offset=offset,
                sha256=sha,
                created_ns=now_ns(),
                state="open",
                result=None,
            )
            if not (signed and offset == length):
                await db_call(self.insert_row, row)
        except BaseException:
            self._drop_hash(upload_id)
            if fd is not None:  # not handed to the writer
                os.close(fd)
            await db_call_shielded(self.admission.release, upload_id)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._remove_staged, upload_id)
            raise
        finally:
            body.discard()  # whatever was read early and not written (no upload body, or it ended) is given back
        log.debug(
            "upload created",
            extra={
                "event": "upload_created",
                "data": {
                    "upload": upload_id,
                    "device": who.serial,
                    "kind": kind,
                    "sequence": sequence,
                    "length": length,
                    "offset": offset,
                },
            },
        )
        if signed and offset != length:
            await anyio.to_thread.run_sync(self.unstage_signed, upload_id)
            signed = None
        return Created(upload_id, offset, who, signed, row if signed else None)

    def signed_paths(self, upload_id: str) -> tuple[Path, Path]:
        """Where a segment's manifest and signature are staged, durable, until the store holds them."""
        part = self.path(upload_id)
        return part.with_suffix(".json"), part.with_suffix(".sig")

    def stage_signed(self, upload_id: str, manifest: bytes, signature: bytes) -> None:
        """Write and fsync the manifest and signature (and the staging directory): from then on they
        survive a crash, so the store can be (re)filled from them (``Ingestor.recover``)."""
        for path, data in zip(self.signed_paths(upload_id), (manifest, signature), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.staging)

    def unstage_signed(self, upload_id: str) -> None:
        for path in self.signed_paths(upload_id):
            path.unlink(missing_ok=True)

    def _remove_staged(self, upload_id: str) -> None:
        """The staged bytes and any staged manifest and signature (blocking: call it in a thread)."""
        self.path(upload_id).unlink(missing_ok=True)
        self.unstage_signed(upload_id)

    def insert_row(self, row: PendingRow, conn: Any = None, *, state: str = "open", result: str | None = None) -> None:
        """Write a new upload's row (in ``conn``'s transaction if given); the state says how it ended."""
        uploads.insert(conn if conn is not None else self.db, row, state=state, updated_ns=now_ns(), result=result)

    def _running_sha256(self, upload_id: str) -> str | None:
        with self._lock:
            hs = self._hashes.get(upload_id)
            return hs.h.copy().hexdigest() if hs is not None else None

    async def _discard(self, upload_id: str) -> int:
        """Back to offset 0 (before the row exists): the staged bytes and the running hash start over."""
        await anyio.to_thread.run_sync(_truncate_synced, self.path(upload_id))
        with self._lock:
            self._hashes[upload_id] = _Hash(hashlib.sha256(), 0)
        return 0

    async def head(self, request: Request, upload_id: str, who: DeviceIdentity) -> Response:
        check_version(request)
        row = await db_call(self.owned, upload_id, who)
        if row["state"] in ("terminated", "expired"):
            raise ApiError(410, "gone", f"upload {upload_id} was {row['state']}")
        return Response(
            status_code=200,
            headers=tus_headers(
                **{
                    "Upload-Offset": str(row["offset"]),
                    "Upload-Length": str(row["length"]),
                    "Cache-Control": "no-store",
                }
            ),
        )

    async def delete(self, request: Request, upload_id: str, who: DeviceIdentity) -> Response:
        check_version(request)
        row = await db_call(self.owned, upload_id, who)
        if row["state"] != "open":
            raise ApiError(
                409,
                "conflict",
                f"upload {upload_id} is {row['state']}; only incomplete uploads can "
                "be terminated (finalized uploads are evidence)",
            )
        if not await db_call(uploads.terminate, self.db, upload_id, now_ns()):
            row = await db_call(self.owned, upload_id, who)
            if row["state"] != "open":
                raise ApiError(409, "conflict", f"upload {upload_id} is {row['state']}")
            raise self._locked(row)
        self._drop_hash(upload_id)
        await anyio.to_thread.run_sync(self._remove_staged, upload_id)
        await db_call(self.admission.release, upload_id)
        return Response(status_code=204, headers=tus_headers())

    async def patch(self, request: Request, upload_id: str, who: DeviceIdentity) -> Response:
        check_version(request)
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/offset+octet-stream":
            raise ApiError(
                415, "bad_content_type", "PATCH needs Content-Type: application/offset+octet-stream"
            )
        offset = _int_header(request, "upload-offset")
        checksum = self._checksum(request.headers.get("upload-checksum"))
        row = await db_call(self.owned, upload_id, who)
        if row["state"] in ("terminated", "expired"):
            raise ApiError(410, "gone", f"upload {upload_id} was {row['state']}")
        if row["state"] != "open":
            raise ApiError(409, "conflict", f"upload {upload_id} is {row['state']}", offset=row["offset"])
        if offset != row["offset"]:
            raise ApiError(
                409,
                "conflict",
                f"Upload-Offset {offset} does not match the server's offset "
                f"{row['offset']}; HEAD the upload and resume from there",
                offset=row["offset"],
                headers={"Upload-Offset": str(row["offset"])},
            )
        length = row["length"]
        declared = request.headers.get("content-length")
        if declared is not None and is_decimal(declared) and offset + int(declared) > length:
            raise ApiError(
                413,
                "upload_too_large",
                f"body of {declared} bytes at offset {offset} passes Upload-Length {length}",
            )
        lease = await db_call(self._lease_and_admit, upload_id, offset)
        try:
            renewing = asyncio.ensure_future(self._renew_lease(upload_id, lease))
            try:
                new, complete = await self._write(request, upload_id, offset, length, checksum,
                                                  digest=who.body_sha256)
            finally:
                renewing.cancel()
        except BaseException:
            await db_call_shielded(uploads.release_lease, self.db.relaxed_writes, upload_id, lease)
            raise
        # The bytes up to ``new`` are fsynced: only now does the offset move, if the lease still holds.
        if not await db_call_shielded(uploads.commit_offset, self.db, upload_id, lease, new, now_ns()):
            self._drop_hash(upload_id)
            row = await db_call(uploads.get, self.db, upload_id)
            have = row["offset"] if row else 0
            log.warning("upload lease lost while writing; the other writer's offset stands",
                        extra={"event": "lease_lost", "data": {"upload": upload_id, "offset": have}})
            raise ApiError(409, "conflict", f"this PATCH lost its lease on upload {upload_id} while writing; "
                           f"the backend's offset is {have}: HEAD the upload and resume from there",
                           offset=have, headers={"Upload-Offset": str(have)})
        if not complete and request.scope.get("bodycam.stalled"):
            raise ApiError(
                408,
                "request_timeout",
                f"no body bytes for {self.body_idle_s:g} s; kept up to offset {new}, resume from there",
                headers={"Upload-Offset": str(new), "Connection": "close"},
                offset=new,
            )
        return Response(status_code=204, headers=tus_headers(**{"Upload-Offset": str(new)}))

    # -- leases: one PATCH writes an upload at a time, fleet-wide --

    def _lease_and_admit(self, upload_id: str, offset: int) -> str:
        """Lease the upload at ``offset`` and refresh (or take) its admission slot, in one relaxed
        transaction: one commit per PATCH start, and no slot, no lease (a 503 rolls the lease back).

        The lease is a conditional UPDATE: of two racing PATCHes, on any instances, exactly one gets it;
        the other is told the current offset (409) or to retry (423)."""
        owner = f"{self.instance}:{secrets.token_hex(4)}"
        t = now_ns()
        with self.db.relaxed() as tx:
            leased = uploads.take_lease(tx, upload_id, offset=offset, owner=owner, now_ns=t, until_ns=t + self.lease_ns)
            if leased:
                self.admission.admit(upload_id, tx=tx)
        if leased:
            return owner
        row = uploads.get(self.db, upload_id)
        if row is None or row["state"] != "open":
            raise ApiError(409, "conflict", f"upload {upload_id} is {row['state'] if row else 'gone'}")
        if row["offset"] != offset:
            raise ApiError(
                409, "conflict",
                f"Upload-Offset {offset} does not match the server's offset {row['offset']}; HEAD the upload "
                "and resume from there", offset=row["offset"], headers={"Upload-Offset": str(row["offset"])})
        raise self._locked(row)

    def _locked(self, row: Any) -> ApiError:
        wait = max(1, -(-(int(row["lease_expires_ns"] or 0) - now_ns()) // 1_000_000_000))
        return ApiError(423, "locked", "another PATCH (on this or another instance) is writing this upload; "
                        f"retry in {wait} s", offset=row["offset"],
                        headers={"Retry-After": str(wait), "Upload-Offset": str(row["offset"])})

    async def _renew_lease(self, upload_id: str, owner: str) -> None:
        """While the body streams in, keep the lease alive (a third of its length at a time)."""
        while True:
            await anyio.sleep(self.lease_ns / 3e9)
            held = await db_call(uploads.renew_lease, self.db.relaxed_writes, upload_id, owner,
                                 now_ns() + self.lease_ns)
            if not held:
                log.warning("upload lease expired while writing", extra={"event": "lease_expired",
                                                                          "data": {"upload": upload_id}})
                return

    def forget_dead_leases(self) -> None:
        """The sole instance (SQLite) starting: every lease left belonged to a process that is gone. (With
        several instances on PostgreSQL, a dead instance's leases expire after ``upload_lease_seconds``.)"""
        uploads.clear_leases(self.db)

    # -- internals --

    def _checksum(self, header: str | None) -> tuple[str, bytes] | None:
        if header is None:
            return None
        try:
            alg, b64 = header.strip().split(" ", 1)
            digest = base64.b64decode(b64.strip(), validate=True)
        except (ValueError, binascii.Error):
            raise ApiError(
                400, "bad_request", "Upload-Checksum must be '<algorithm> <base64 digest>'"
            ) from None
        if alg not in CHECKSUMS:
            raise ApiError(
                400,
                "checksum_unsupported",
                f"checksum algorithm {alg!r} is not supported; use one of {', '.join(CHECKSUMS)}",
            )
        return alg, digest

    async def _write(
        self,
        request: Request,
        upload_id: str,
        offset: int,
        length: int,
        checksum: tuple[str, bytes] | None,
        *,
        digest: bytes | None = None,
        beside: list[Callable[[], None]] | None = None,
        fd: int | None = None,
        body: AsyncIterator[bytes] | None = None,
    ) -> tuple[int, bool]:
        """Append the body at ``offset``; returns (the new durable offset, whether the body arrived whole).

        ``digest`` is the SHA-256 the request's signature covers (Content-Digest): the bytes written are
        compared with it before the caller may advance the offset, and dropped if they differ.

        The body goes to the file through a ``BodyWriter``: worker threads write it in order and hash
        each batch right after writing it, from memory (hashing on the event loop would add its CPU time
        to every request's, and reading the bytes back costs a copy). ``beside`` runs in threads beside
        the fsync. The caller persists the offset.
        """
        path = self.path(upload_id)
        if fd is None:
            fd, have = await anyio.to_thread.run_sync(_open_staged, path, offset)
        else:  # a new file the caller just created, which this call now owns
            have = offset
        if have < offset:
            # Bytes below the recorded offset are gone (the staging disk lost them in a crash): say where
            # the staged bytes really end, so the client resends from there instead of the upload being
            # completed with a hole and then rejected as tampered.
            await anyio.to_thread.run_sync(os.close, fd)
            self._drop_hash(upload_id)
            await db_call(uploads.set_offset, self.db, upload_id, have, now_ns())
            raise ApiError(
                409,
                "conflict",
                f"the backend holds only {have} bytes of this upload, not {offset}; resume from {have}",
                offset=have,
                headers={"Upload-Offset": str(have)},
            )
        with self._lock:
            hs = self._hashes.get(upload_id)
            if hs is not None and hs.pos != offset:  # out of step (e.g. after a restart): re-hash at finalize
                self._hashes.pop(upload_id)
                hs = None
        # Work on a copy of the running hash, kept only if the chunk is. A sha256 checksum of a chunk that
        # starts the upload is the running hash itself: hash once.
        running = hs.h.copy() if hs is not None else None
        reuse = checksum is not None and checksum[0] == "sha256" and offset == 0 and running is not None
        chk = CHECKSUMS[checksum[0]]() if checksum and not reuse else None
        # The SHA-256 of this body, for the signed Content-Digest: one of those two if it is one already.
        signed = None
        if digest is not None:
            if checksum is not None and checksum[0] == "sha256":
                signed = running if reuse else chk
            elif offset == 0 and running is not None:
                signed = running
            else:
                signed = hashlib.sha256()
        hashers = [h for h in (running, chk) if h is not None]
        if signed is not None and all(signed is not h for h in hashers):
            hashers.append(signed)

        writer = BodyWriter(self._io, fd, offset, hashers)
        pos = offset
        complete = True
        try:
            try:
                with anyio.CancelScope() as scope, IdleWatch(scope, self.body_idle_s) as idle:
                    async for chunk in body if body is not None else request.stream():
                        if not chunk:
                            continue
                        if pos + len(chunk) > length:
                            await writer.settle()
                            await anyio.to_thread.run_sync(os.ftruncate, fd, offset)
                            self._drop_hash(upload_id)
                            raise ApiError(
                                413,
                                "upload_too_large",
                                f"body passes Upload-Length {length} at offset {offset}; nothing of it was kept",
                            )
                        await writer.add(chunk)
                        pos += len(chunk)
                        idle.touch()
                if idle.fired:  # no body bytes for body_idle_s: as if the client went away
                    request.scope["bodycam.stalled"] = True
                    raise ClientDisconnect()
            except ClientDisconnect:
                complete = False
            if (checksum or digest) and not complete:  # a checksummed or signed chunk is kept whole or not at all
                await writer.settle()
                await anyio.to_thread.run_sync(os.ftruncate, fd, offset)
                return offset, False
            async with anyio.create_task_group() as tg:
                for job in beside or ():
                    tg.start_soon(anyio.to_thread.run_sync, job)
                await writer.finish(sync=True)  # written and fsynced by the writer's thread
            if checksum:
                got = (running if reuse else chk).digest()  # type: ignore[union-attr]
                if got != checksum[1]:
                    await anyio.to_thread.run_sync(os.ftruncate, fd, offset)
                    raise ApiError(
                        460,
                        "checksum_mismatch",
                        f"chunk does not match its {checksum[0]} Upload-Checksum; "
                        "it was discarded, send it again",
                    )
            if digest is not None and signed is not None and not hmac.compare_digest(signed.digest(), digest):
                await anyio.to_thread.run_sync(os.ftruncate, fd, offset)
                raise ApiError(
                    401,
                    "digest_mismatch",
                    "the request body does not match its signed Content-Digest; it was discarded, send it again",
                )
        finally:
            with anyio.CancelScope(shield=True):
                await writer.settle()  # no write may outlive the fd
                await anyio.to_thread.run_sync(os.close, fd)
        if hs is not None and running is not None:
            hs.h, hs.pos = running, pos
        return pos, complete

    def _drop_hash(self, upload_id: str) -> None:
        with self._lock:
            self._hashes.pop(upload_id, None)

    async def media_sha256(self, upload_id: str, length: int, *, from_disk: bool = False) -> str:
        """SHA-256 of the staged bytes: from the running hash if it saw every byte, else from disk.

        The running hash is this instance's: it saw every byte only if this instance wrote them all. The
        caller compares it with the hash the device signed and, on any difference, asks again
        ``from_disk`` before judging: an upload finished on another instance is always read back."""
        with self._lock:
            hs = self._hashes.get(upload_id)
        if hs is not None and hs.pos == length and not from_disk:
            return hs.h.copy().hexdigest()
        path = self.path(upload_id)

        def rehash() -> str:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while data := f.read(1 << 20):
                    h.update(data)
            return h.hexdigest()

        return await anyio.to_thread.run_sync(rehash)

    def closed(self, upload_id: str, *, slot_freed: bool = False) -> None:
        """Finalized or rejected: forget the running hash and staged files, free the admission slot (unless
        the transaction that ended the upload freed it already: ``slot_freed``)."""
        self._drop_hash(upload_id)
        self.path(upload_id).unlink(missing_ok=True)
        self.unstage_signed(upload_id)
        if not slot_freed:
            self.admission.release(upload_id)

    def expire_stale(self, max_age_ns: int) -> int:
        """At start: incomplete uploads older than the expiry are dropped (their device re-creates them)."""
        cutoff = now_ns() - max_age_ns
        ids = uploads.stale_open(self.db, cutoff)
        for uid in ids:
            uploads.set_state(self.db, uid, "expired", now_ns())
            self.path(uid).unlink(missing_ok=True)
        return len(ids)
