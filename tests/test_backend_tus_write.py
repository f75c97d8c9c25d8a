"""The tus write path in process (real Starlette requests, real files, real SQLite): the running media
hash (taken by the write threads from what they write) is right however the bytes arrive, checksums are
checked, bytes lost below the recorded offset are sent again, and the event loop is never the one
waiting for the disk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from bodycam_backend.admission import Admission
from bodycam_backend.auth import DeviceIdentity
from bodycam_backend.bodywriter import BATCH_BYTES, BodyWriter, IdleWatch
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


def counting(req: Request, taken: list[int]) -> Request:
    """``req``, noting in ``taken`` the size of each body piece the server has read so far."""
    receive = req.receive

    async def counted() -> dict:
        message = await receive()
        taken.append(len(message["body"]))
        return message

    req._receive = counted
    return req


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def service(tmp_path, io_pool: ThreadPoolExecutor | None = None) -> TusService:
    db = connect("", sqlite_path=tmp_path / "db.sqlite3")
    return TusService(
        db=db,
        staging=tmp_path / "uploads",
        admission=Admission(db=db, limit=8, retry_after_s=1, idle_s=60),
        max_upload_bytes=1 << 24,
        max_audit_bytes=1 << 20,
        io_pool=io_pool,
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
        created = await svc.create(request("POST", headers, chunks), lambda: WHO)
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
        created = await svc.create(request("POST", headers, [data[:200_000]]), lambda: WHO)
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


def test_the_event_loop_goes_on_while_a_body_is_being_written(tmp_path) -> None:
    """The disk is held (the only write thread is busy) while a PATCH streams in: the whole body is still
    taken in, another request on the same loop is answered meanwhile, and the offset moves only once
    the bytes are written and fsynced."""
    pool = ThreadPoolExecutor(max_workers=1)
    svc = service(tmp_path, io_pool=pool)
    data = os.urandom(BATCH_BYTES * 3 // 2)  # one batch waiting for the disk, the rest taken in behind it
    octets = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    disk = threading.Event()
    pool.submit(disk.wait)  # the write thread is busy until the test lets it go
    taken: list[int] = []

    def body(chunks: list[bytes]) -> Request:
        return counting(request("PATCH", {**octets, "Upload-Offset": "0"}, chunks), taken)

    async def run() -> None:
        headers = {**octets, "Upload-Length": str(len(data)), "Upload-Metadata": meta(kind="segment", sequence="1")}
        created = await svc.create(request("POST", headers, []), lambda: WHO)
        uid = created.upload_id
        answers: list[int] = []

        async def patch() -> None:
            r = await svc.patch(body([data[i : i + 65_536] for i in range(0, len(data), 65_536)]), uid, WHO)
            answers.append(int(r.headers["Upload-Offset"]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(patch)
            try:
                with anyio.fail_after(30):
                    while sum(taken) < len(data):  # the body streams in although nothing can be written
                        await anyio.sleep(0.01)
                head = await svc.head(request("HEAD", {"Tus-Resumable": "1.0.0"}, []), uid, WHO)
                assert head.headers["Upload-Offset"] == "0", "answered at once, and nothing acknowledged yet"
                assert not answers and svc.path(uid).stat().st_size == 0
            finally:
                disk.set()
        assert answers == [len(data)]
        assert svc.path(uid).read_bytes() == data and uploads.get(svc.db, uid)["offset"] == len(data)
        assert await svc.media_sha256(uid, len(data)) == hashlib.sha256(data).hexdigest()

    try:
        anyio.run(run)
    finally:
        disk.set()
        pool.shutdown()


def test_body_writer_keeps_order_and_hashes_what_it_writes(tmp_path) -> None:
    """Thousands of tiny pieces (more than one pwritev takes), a pause that flushes what came so far
    before the body goes on, and a write error that reaches the caller."""
    pool = ThreadPoolExecutor(max_workers=2)
    path = tmp_path / "staged.part"
    pieces = [os.urandom(n % 300 + 1) for n in range(3000)]
    data = b"".join(pieces)

    async def run() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.pwrite(fd, b"head", 0)
        h = hashlib.sha256()
        w = BodyWriter(pool, fd, 4, [h], batch_bytes=200_000, linger_s=0.01)
        for p in pieces[:10]:
            await w.add(p)
        with anyio.fail_after(10):  # a pause: what came so far reaches the file without more bytes
            while path.stat().st_size < 4 + sum(map(len, pieces[:10])):
                await anyio.sleep(0.005)
        for p in pieces[10:]:
            await w.add(p)
        await w.finish()
        os.close(fd)
        assert path.read_bytes() == b"head" + data and h.hexdigest() == hashlib.sha256(data).hexdigest()
        ro = os.open(path, os.O_RDONLY)
        try:
            w = BodyWriter(pool, ro, 0, [], batch_bytes=1000)
            with pytest.raises(OSError):
                for p in pieces:
                    await w.add(p)
                await w.finish()
        finally:
            await w.settle()
            os.close(ro)

    try:
        anyio.run(run)
    finally:
        pool.shutdown()


def test_a_body_is_ended_only_after_idle_seconds_without_a_byte() -> None:
    """IdleWatch: bytes keep coming (each one a touch) for several idle periods, and nothing is cancelled;
    then none come, and the body's scope is cancelled after about one idle period."""

    async def run() -> None:
        with anyio.CancelScope() as scope, IdleWatch(scope, 0.1) as idle:
            loop = asyncio.get_running_loop()
            busy_until = loop.time() + 0.4
            while loop.time() < busy_until:
                await anyio.sleep(0.02)
                idle.touch()
            assert not idle.fired and not scope.cancel_called
            quiet_from = loop.time()
            await anyio.sleep(5)
        assert idle.fired and scope.cancelled_caught
        assert 0.09 <= loop.time() - quiet_from < 1.0

    anyio.run(run)


def test_the_body_is_taken_in_ahead_of_the_disk_up_to_a_bound_then_waits(tmp_path) -> None:
    """With the only write thread held, ``add`` returns at once until more than ``ahead_bytes`` wait to be
    written, then waits for this body's own writes; once the disk is free every byte lands in order,
    hashed, and ``finish(sync=True)`` returns with the file complete."""
    pool = ThreadPoolExecutor(max_workers=1)
    disk = threading.Event()
    pool.submit(disk.wait)
    path = tmp_path / "staged.part"
    piece = 64 << 10
    data = os.urandom(40 * piece)

    async def run() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        h = hashlib.sha256()
        w = BodyWriter(pool, fd, 0, [h], batch_bytes=4 * piece, ahead_bytes=16 * piece)
        try:
            threading.Timer(20, disk.set).start()  # never hang the suite (a wait on the disk is not cancellable)
            t0 = time.monotonic()
            for i in range(19):  # four batches queued (the bound, 1 MiB) and three pieces more in hand
                await w.add(data[i * piece : (i + 1) * piece])
            assert time.monotonic() - t0 < 5 and path.stat().st_size == 0, "taken in although nothing is written"
            pending = asyncio.ensure_future(w.add(data[19 * piece : 20 * piece]))  # a fifth batch: past it
            await asyncio.sleep(0.2)
            assert not pending.done(), "past the bound the body waits for its writer"
            disk.set()
            with anyio.fail_after(10):
                await pending
            for i in range(20, 40):
                await w.add(data[i * piece : (i + 1) * piece])
            with anyio.fail_after(10):
                await w.finish(sync=True)
        finally:
            disk.set()
            os.close(fd)
        assert path.read_bytes() == data and h.hexdigest() == hashlib.sha256(data).hexdigest()

    try:
        anyio.run(run)
    finally:
        pool.shutdown()


def test_a_refused_upload_was_read_no_further_than_its_read_ahead_and_left_nothing(tmp_path) -> None:
    """The body starts coming in while the request is authenticated in a worker thread: a request then
    refused (401) was read no further than READ_AHEAD_BYTES, nothing of it reached the staging directory,
    and the process-wide read-ahead budget is whole again; an accepted one keeps every byte, in order; and
    none is read ahead while the instance is turning uploads away."""
    from bodycam_backend.tus import READ_AHEAD_BYTES

    svc = service(tmp_path)
    piece = 64 << 10
    data = os.urandom(4 * READ_AHEAD_BYTES)
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)]
    octets = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    headers = {**octets, "Upload-Length": str(len(data)), "Content-Length": str(len(data)),
               "Upload-Metadata": meta(kind="segment", sequence="1")}
    checked = threading.Event()

    def refuse() -> DeviceIdentity:
        checked.wait(10)  # a slow check: the body keeps coming meanwhile
        raise ApiError(401, "unauthenticated", "signature does not verify")

    def accept() -> DeviceIdentity:
        checked.wait(10)
        return WHO

    async def run() -> None:
        taken: list[int] = []
        job = asyncio.ensure_future(svc.create(counting(request("POST", headers, chunks), taken), refuse))
        await asyncio.sleep(0.3)
        assert READ_AHEAD_BYTES // 2 <= sum(taken) <= READ_AHEAD_BYTES + piece, "read while being checked"
        checked.set()
        with pytest.raises(ApiError) as refused:
            await job
        assert refused.value.status == 401
        assert sum(taken) <= READ_AHEAD_BYTES + piece, sum(taken)
        assert svc._read_ahead.held == 0
        assert list((tmp_path / "uploads").iterdir()) == []

        checked.clear()
        job = asyncio.ensure_future(svc.create(request("POST", headers, chunks), accept))
        await asyncio.sleep(0.3)
        checked.set()
        created = await job
        assert created.offset == len(data) and svc.path(created.upload_id).read_bytes() == data
        assert svc._read_ahead.held == 0

        # accepted, then refused before its body is written (a malformed Upload-Checksum): what was read
        # early is given back, and nothing is left in staging
        checked.clear()
        bad = {**headers, "Upload-Checksum": "sha256 not-base64!"}
        job = asyncio.ensure_future(svc.create(request("POST", bad, chunks), accept))
        await asyncio.sleep(0.3)
        checked.set()
        with pytest.raises(ApiError) as malformed:
            await job
        assert malformed.value.status == 400
        assert svc._read_ahead.held == 0, "the bytes read early are given back to the budget"
        assert [p.name for p in (tmp_path / "uploads").iterdir()] == [created.upload_id + ".part"]

        # while uploads are being turned away (503), a new one is not read ahead: it may well be refused too
        svc.admission.last_refused = time.monotonic()
        assert svc.admission.at_limit_lately()
        taken.clear()
        checked.clear()
        job = asyncio.ensure_future(svc.create(counting(request("POST", headers, chunks), taken), refuse))
        await asyncio.sleep(0.3)
        assert sum(taken) == 0, "not read while being checked"
        checked.set()
        with pytest.raises(ApiError):
            await job

    anyio.run(run)
