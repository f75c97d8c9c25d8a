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
from concurrent.futures import Future, ThreadPoolExecutor
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

    A finished batch does not call back into the event loop: the loop looks at the job when it next has a
    batch to send (or its linger timer fires) and only waits on it, through the loop, when it is still
    running. Sixteen uploads at once otherwise woke the loop from another thread for every batch of each.
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
        self._job: Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None

    async def add(self, piece: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._pending.append(piece)
        self._pending_bytes += len(piece)
        if self._pending_bytes < self._batch:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._linger, self._lingered)
            return
        if not self._idle():  # back-pressure: this body waits for its own writer, no one else's
            await self._wait()
        self._send()

    async def finish(self) -> None:
        await self._wait()
        if self._pending:
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

    def _idle(self) -> bool:
        """No batch in flight (a finished one's error, if any, is kept and raised)."""
        job = self._job
        if job is None:
            return True
        if not job.done():
            return False
        self._job = None
        if self._error is None and (job.cancelled() or job.exception() is not None):
            self._error = job.exception() or OSError("staged write cancelled")
        if self._error is not None:
            raise self._error
        return True

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pieces, at = self._pending, self._at
        self._at += self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        self._job = self._pool.submit(_write_and_hash, self._fd, pieces, at, self._hashers)

    def _lingered(self) -> None:
        """A body paused: its bytes go to the file now rather than wait for more (or again soon, if the
        writer is still busy)."""
        self._timer = None
        if not self._pending or self._error is not None:
            return
        try:
            idle = self._idle()
        except Exception:  # noqa: BLE001 - kept in self._error; the next add or finish raises it
            return
        if idle:
            self._send()
        else:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._lingered)

    async def _wait(self) -> None:
        """Until no batch is in flight; the fd must outlive its job, so this is not cancelled midway."""
        with anyio.CancelScope(shield=True):
            while self._job is not None and not self._job.done():
                waited = asyncio.wrap_future(self._job)
                await asyncio.wait([waited])
                if not waited.cancelled():
                    waited.exception()  # looked at here; ``_idle`` keeps and raises it
        self._idle()


class IdleWatch:
    """Cancels ``scope`` once ``touch`` has not been called for ``idle_s``: how a body that stops arriving is
    ended. One timer per body that re-arms itself, not a cancel scope per piece: at hundreds of pieces per
    segment and sixteen segments at once, per-piece scopes were a measurable share of the event loop's time.
    ``fired`` says whether it was this that cancelled the scope."""

    def __init__(self, scope: anyio.CancelScope, idle_s: float) -> None:
        self._scope = scope
        self._idle = idle_s
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.fired = False

    def __enter__(self) -> IdleWatch:
        self._timer = self._loop.call_later(self._idle, self._check)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def touch(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        quiet = self._loop.time() - self._last
        if quiet >= self._idle:
            self._timer = None
            self.fired = True
            self._scope.cancel()
        else:
            self._timer = self._loop.call_later(self._idle - quiet, self._check)
