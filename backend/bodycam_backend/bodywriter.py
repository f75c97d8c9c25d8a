"""A request body written into a staged file off the event loop, in order, and hashed as it is written.

The event loop only collects the body's pieces. They go to a worker thread in batches, one ``pwritev`` at
their offset, and the same thread feeds them to the hashers right after (hashlib releases the GIL), so the
loop never waits on the disk and nothing is read back to be hashed. At most one batch of an upload is being
written while the next is collected: writes and hash updates stay in order, memory stays near two batches
per upload, and a disk slower than the network slows that upload's reads (TCP back-pressure), nobody else's.

A batch leaves when it is ``batch_bytes`` big, or ``linger_s`` after its first piece if the body pauses,
so the bytes of a slow or stalled body reach the file (and its memory is freed) without waiting for more.
Nothing here is durable: the caller fsyncs after ``finish`` and only then acknowledges the offset.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio

BATCH_BYTES = 512 << 10  # per upload at most one batch in flight and one filling: ~1 MiB, 64 MiB at 64 uploads
LINGER_S = 0.05
IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)


def write_all(fd: int, pieces: list[bytes], at: int) -> None:
    """``pwritev`` the pieces at ``at``, however many and however short the kernel's writes."""
    views = [memoryview(p) for p in pieces if p]
    i = 0
    while i < len(views):
        n = os.pwritev(fd, views[i : i + IOV_MAX], at)
        if n <= 0:
            raise OSError(f"write at offset {at} wrote nothing")
        at += n
        while n:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


def _write_and_hash(fd: int, pieces: list[bytes], at: int, hashers: list[Any]) -> None:
    write_all(fd, pieces, at)
    for p in pieces:
        for h in hashers:
            h.update(p)


class BodyWriter:
    """Writes what ``add`` is given at ``offset`` onward into ``fd`` through ``pool``; ``finish`` waits until
    every byte is written (not fsynced) and raises what a write raised. ``settle`` is for error paths: it
    waits for the write in flight, if any, without raising, so the caller may then truncate or close ``fd``.
    """

    def __init__(self, pool: ThreadPoolExecutor, fd: int, offset: int, hashers: list[Any], *,
                 batch_bytes: int = BATCH_BYTES, linger_s: float = LINGER_S) -> None:
        self._pool = pool
        self._fd = fd
        self._at = offset  # file offset of the first pending byte
        self._hashers = hashers
        self._batch = batch_bytes
        self._linger = linger_s
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._job: asyncio.Future[None] | None = None
        self._due = False  # the pending batch has lingered long enough: send it when the writer is free
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None

    async def add(self, piece: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._pending.append(piece)
        self._pending_bytes += len(piece)
        if self._pending_bytes < self._batch:
            if self._timer is None and not self._due:
                self._timer = asyncio.get_running_loop().call_later(self._linger, self._lingered)
            return
        if self._job is not None:  # back-pressure: this body waits for its own writer, no one else's
            await self._wait()
        self._send()

    async def finish(self) -> None:
        if self._pending and self._job is None and self._error is None:
            self._send()
        await self._wait()
        if self._pending and self._error is None:  # what came in while the last batch was written
            self._send()
            await self._wait()

    async def settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending, self._pending_bytes = [], 0
        try:
            await self._wait()
        except Exception:  # noqa: BLE001 - the caller is already failing; it only needs the fd free
            pass

    # -- internals (event loop) --

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pieces, at = self._pending, self._at
        self._at += self._pending_bytes
        self._pending, self._pending_bytes, self._due = [], 0, False
        job = asyncio.wrap_future(self._pool.submit(_write_and_hash, self._fd, pieces, at, self._hashers))
        job.add_done_callback(self._written)
        self._job = job

    def _lingered(self) -> None:
        self._timer = None
        if not self._pending or self._error is not None:
            return
        if self._job is None:
            self._send()
        else:
            self._due = True

    def _written(self, job: asyncio.Future[None]) -> None:
        if self._job is job:
            self._job = None
        if job.cancelled() or job.exception() is not None:
            self._error = self._error or (job.exception() or OSError("staged write cancelled"))
            return
        if self._due and self._pending and self._job is None:
            self._send()

    async def _wait(self) -> None:
        """Until no batch is in flight; the fd must outlive its job, so this is not cancelled midway."""
        with anyio.CancelScope(shield=True):
            while self._job is not None:
                await asyncio.wait([self._job])
        if self._error is not None:
            raise self._error
