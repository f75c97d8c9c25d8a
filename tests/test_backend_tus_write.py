"""The tus write path in process (real Starlette requests, real files, real SQLite): the running media
hash (taken from the staged file beside each fsync) is right however the bytes arrive, checksums are
checked, and bytes lost below the recorded offset are sent again."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable

import anyio
import pytest
from bodycam_backend.admission import Admission
from bodycam_backend.auth import DeviceIdentity
from bodycam_backend.data import connect, uploads
from bodycam_backend.errors import ApiError
from bodycam_backend.tus import TusService
from starlette.requests import Request

WHO = DeviceIdentity("BC-WRITE-1", "ab" * 32)


def request(method: str, headers: dict[str, str], chunks: Iterable[bytes]) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": method,
        "path": "/v1/uploads",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive)


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def service(tmp_path) -> TusService:
    db = connect("", sqlite_path=tmp_path / "db.sqlite3")
    return TusService(
        db=db,
        staging=tmp_path / "uploads",
        admission=Admission(db=db, limit=8, retry_after_s=1, idle_s=60),
        max_upload_bytes=1 << 24,
        max_audit_bytes=1 << 20,
    )


@pytest.mark.parametrize("piece", [1000, 65_536, 3_000_000], ids=["small", "64k", "whole"])
def test_running_hash_and_checksums_hold_however_the_bytes_arrive(tmp_path, piece) -> None:
    svc = service(tmp_path)
    data = os.urandom(3_500_000)  # more than one read-back buffer
    chunks = [data[i : min(i + piece, 2_600_000)] for i in range(0, 2_600_000, piece)]
    first = b"".join(chunks)
    octets = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}

    async def run() -> None:
        headers = {
            **octets,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(kind="segment", sequence="1"),
            "Content-Length": str(len(first)),
            "Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(first).digest()).decode(),
        }
        created = await svc.create(request("POST", headers, chunks), WHO)
        assert created.offset == len(first) and created.finalize_with is None
        uid = created.upload_id
        rest = data[len(first) :]
        bad = {**octets, "Upload-Offset": str(len(first)), "Upload-Checksum": "sha1 " + base64.b64encode(
            hashlib.sha1(b"other").digest()).decode()}
        with pytest.raises(ApiError) as e:
            await svc.patch(request("PATCH", bad, [rest[:1000], rest[1000:]]), uid, WHO)
        assert e.value.status == 460
        good = {**bad, "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(rest).digest()).decode()}
        r = await svc.patch(request("PATCH", good, [rest[:1000], rest[1000:]]), uid, WHO)
        assert r.headers["Upload-Offset"] == str(len(data))
        assert await svc.media_sha256(uid, len(data)) == hashlib.sha256(data).hexdigest()
        assert svc.path(uid).read_bytes() == data
        assert uploads.get(svc.db, uid)["offset"] == len(data)

    anyio.run(run)


def test_staged_bytes_lost_below_the_offset_are_resent_not_left_as_a_hole(tmp_path) -> None:
    svc = service(tmp_path)
    data = os.urandom(300_000)
    octets = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}

    async def run() -> None:
        headers = {
            **octets,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(kind="segment", sequence="1"),
            "Content-Length": "200000",
        }
        created = await svc.create(request("POST", headers, [data[:200_000]]), WHO)
        uid = created.upload_id
        with open(svc.path(uid), "r+b") as f:  # the disk kept only part of what was acknowledged
            f.truncate(50_000)
        with pytest.raises(ApiError) as e:
            await svc.patch(request("PATCH", {**octets, "Upload-Offset": "200000"}, [data[200_000:]]), uid, WHO)
        assert e.value.status == 409 and e.value.extra["offset"] == 50_000
        assert uploads.get(svc.db, uid)["offset"] == 50_000
        await svc.patch(request("PATCH", {**octets, "Upload-Offset": "50000"}, [data[50_000:]]), uid, WHO)
        assert await svc.media_sha256(uid, len(data)) == hashlib.sha256(data).hexdigest()

    anyio.run(run)
