"""A request body written into a staged file off the event loop, in order, and hashed as it is written.

The event loop only collects the body's pieces. They go to a worker thread in batches, one ``pwritev`` at
their offset, and the same thread feeds them to the hashers right after (hashlib releases the GIL), so the
loop never waits on the disk and nothing is read back to be hashed. Batches queue per upload and one worker
at a time drains that queue, so writes and hash updates stay in order; the loop goes on reading while up to
``ahead_bytes`` wait to be written, and only then waits (for its own writer, so a disk slower than the
network slows that upload's reads through TCP back-pressure, nobody else's). Small batches written soon
after they arrive are still in the CPU's cache when they are copied and hashed; measured, one batch in
flight at a time made the loop wait on a thread hop every batch, and bigger batches went cold.

A batch leaves when it is ``batch_bytes`` big, or ``linger_s`` after its first piece if the body pauses,
so the bytes of a slow or stalled body reach the file (and its memory is freed) without waiting for more.
Nothing here is durable: the caller fsyncs after ``finish`` and only then acknowledges the offset.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio

BATCH_BYTES = 256 << 10
AHEAD_BYTES = 2 << 20  # waiting to be written, per upload: 128 MiB at 64 uploads
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


def _start_writeback(fd: int, at: int, n: int) -> None:
    """Ask the kernel to start writing these bytes to the disk now (Linux ``sync_file_range`` with
    SYNC_FILE_RANGE_WRITE: it does not wait, and makes nothing durable), so that the fsync after the
    last byte finds most of the body already on its way instead of all of it still dirty."""
    if _sync_file_range is not None:
        _sync_file_range(fd, ctypes.c_int64(at), ctypes.c_int64(n), 2)


def _libc_sync_file_range() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None  # not Linux: the fsync does it all
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_sync_file_range = _libc_sync_file_range()


def _write_and_hash(fd: int, pieces: list[bytes], at: int, hashers: list[Any]) -> None:
    write_all(fd, pieces, at)
    _start_writeback(fd, at, sum(len(p) for p in pieces))
    for p in pieces:
        for h in hashers:
            h.update(p)


class BodyWriter:
    """Writes what ``add`` is given at ``offset`` onward into ``fd`` through ``pool``; ``finish`` waits until
    every byte is written (not fsynced) and raises what a write raised. ``settle`` is for error paths: it
    waits for the writes queued, if any, without raising, so the caller may then truncate or close ``fd``.
    The worker calls back into the event loop only when the loop is waiting for room, and once at the end.
    """

    def __init__(self, pool: ThreadPoolExecutor, fd: int, offset: int, hashers: list[Any], *,
                 batch_bytes: int = BATCH_BYTES, linger_s: float = LINGER_S,
                 ahead_bytes: int = AHEAD_BYTES) -> None:
        self._pool = pool
        self._fd = fd
        self._at = offset  # file offset of the first pending byte
        self._hashers = hashers
        self._batch = batch_bytes
        self._linger = linger_s
        self._ahead = max(ahead_bytes, batch_bytes)
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        # shared with the worker, under _lock:
        self._lock = threading.Lock()
        self._queue: deque[tuple[list[bytes], int, int]] = deque()
        self._queued = 0  # bytes handed to the worker, not yet written
        self._draining = False
        self._sync = False  # fsync once the queue is written out (``finish(sync=True)``)
        self._room: asyncio.Future[None] | None = None  # the loop waits for the queue to shrink
        self._error: BaseException | None = None
        self._job: Future[None] | None = None  # the latest drain, on the loop's side

    async def add(self, piece: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._pending.append(piece)
        self._pending_bytes += len(piece)
        if self._pending_bytes < self._batch:
            if self._timer is None:
                self._timer = self._loop.call_later(self._linger, self._lingered)
            return
        self._send()
        if self._queued > self._ahead:  # back-pressure: this body waits for its own writer, no one else's
            await self._wait(room=True)

    async def finish(self, *, sync: bool = False) -> None:
        """Until every byte is written; with ``sync``, fsynced too, by the writer's own thread right after
        the last write (one wait for both: no second hop to a thread for the fsync)."""
        if self._pending and self._error is None:
            self._send()
        if sync:
            with self._lock:
                self._sync = True
                start = not self._draining
                self._draining = True
            if start:
                self._job = self._pool.submit(self._drain)
        await self._wait(room=False)

    async def settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending, self._pending_bytes = [], 0
        try:
            await self._wait(room=False)
        except Exception:  # noqa: BLE001 - the caller is already failing; it only needs the fd free
            pass

    # -- the event loop's side --

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pieces, at, n = self._pending, self._at, self._pending_bytes
        self._at += n
        self._pending, self._pending_bytes = [], 0
        with self._lock:
            if self._error is not None:
                return
            self._queue.append((pieces, at, n))
            self._queued += n
            start = not self._draining
            self._draining = True
        if start:
            self._job = self._pool.submit(self._drain)

    def _lingered(self) -> None:
        """A body paused: its bytes go to the file now rather than wait for more."""
        self._timer = None
        if self._pending and self._error is None:
            self._send()

    async def _wait(self, *, room: bool) -> None:
        """Until the queue has room (``room``) or is written out; not cancelled midway, as the fd must
        outlive the writes queued on it."""
        with anyio.CancelScope(shield=True):
            while True:
                with self._lock:
                    if self._error is not None or (self._queued <= self._ahead if room else not self._draining):
                        break
                    waiter = self._room = self._loop.create_future()
                await waiter
        if self._error is not None:
            raise self._error

    # -- the worker's side --

    def _drain(self) -> None:
        while True:
            with self._lock:
                sync = self._sync and not self._queue and self._error is None
                if sync:
                    self._sync = False
                elif not self._queue or self._error is not None:
                    self._draining = False
                    self._queue.clear()
                    self._wake()
                    return
                else:
                    pieces, at, n = self._queue[0]
            if sync:
                try:
                    os.fsync(self._fd)
                except BaseException as e:  # noqa: BLE001 - kept, and raised on the loop by finish
                    with self._lock:
                        self._error = e
                continue
            try:
                _write_and_hash(self._fd, pieces, at, self._hashers)
            except BaseException as e:  # noqa: BLE001 - kept, and raised on the loop by add/finish
                with self._lock:
                    self._error = e
                continue
            with self._lock:
                self._queue.popleft()
                self._queued -= n
                if self._queued <= self._ahead // 2:
                    self._wake()

    def _wake(self) -> None:
        """(under _lock) Let the loop's waiter, if any, look again."""
        waiter, self._room = self._room, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


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


class EarlyBody:
    """A request body whose first bytes are read into memory while the request is still being authenticated
    and admitted (in a worker thread), so the transfer does not stall for that hop; then the rest, as it
    comes. Iterate it once.

    Nothing read early reaches the disk before the request is accepted: it waits in memory, at most
    ``limit`` bytes per request and, over all requests of the process at once, what ``budget`` allows
    (so connections that send bodies with bad signatures cannot make it hold more than that)."""

    def __init__(self, request: Any, budget: ReadAheadBudget, limit: int) -> None:
        self._chunks = request.stream().__aiter__()
        self._budget = budget
        self._limit = limit
        self._early: list[bytes] = []
        self._held = 0
        self._next: asyncio.Future[bytes] | None = None

    async def read_while(self, job: asyncio.Future[Any]) -> None:
        """Read until ``job`` is done, the body ends, or no more may be held; never raises (a disconnect
        or the end of the body is met again when iterated)."""
        while not job.done() and self._next is None:
            if self._held >= self._limit or self._budget.spent():
                break
            nxt = asyncio.ensure_future(self._chunks.__anext__())
            nxt.add_done_callback(_looked_at)  # a disconnect nobody awaits any more is no error to log
            await asyncio.wait({job, nxt}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                self._next = nxt  # the job finished first: this read goes on, and is the next piece
                break
            if nxt.cancelled() or nxt.exception() is not None:
                self._next = nxt  # the end of the body, or a disconnect: raised when iterated
                break
            piece = nxt.result()
            if piece:
                self._early.append(piece)
                self._held += len(piece)
                self._budget.take(len(piece))

    def discard(self) -> None:
        """Done with the request (refused, or its body no longer wanted): give back what was read early and
        not taken, and stop the read in progress, if any."""
        self._release()
        if self._next is not None:
            self._next.cancel()  # a read already done stays as it was (and was looked at: ``_looked_at``)
        self._next = None

    def _release(self) -> None:
        self._budget.give(self._held)
        self._held = 0

    def __aiter__(self) -> EarlyBody:
        return self

    async def __anext__(self) -> bytes:
        if self._early:
            piece = self._early.pop(0)
            if not self._early:
                self._release()
            return piece
        if self._next is not None:
            nxt, self._next = self._next, None
            return await nxt
        return await self._chunks.__anext__()


def _looked_at(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        f.exception()  # marks it retrieved; whoever awaits the future still gets it


class ReadAheadBudget:
    """The bytes all ``EarlyBody``s of a process may hold at once (event loop only)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def spent(self) -> bool:
        return self.held >= self.total

    def take(self, n: int) -> None:
        """Count ``n`` more bytes held (a piece already read: it may take the total past the budget once)."""
        self.held += n

    def give(self, n: int) -> None:
        self.held = max(0, self.held - n)
