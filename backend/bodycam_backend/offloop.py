"""Blocking database work from async handlers, in worker threads of its own.

Every statement is a wait: on SQLite for the one write lock (held through another device's commit and its
fsync), on PostgreSQL a network round trip. Run on the event loop, each one stalls every other request
the instance is serving; run here, it stalls only the request it belongs to. The threads are bounded
apart from anyio's default pool (staged-file work) so a burst of slow statements cannot starve the file
work, nor the file work the statements.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio

DB_THREADS = 32  # statements in flight at once per instance (PostgreSQL: beyond the pool's size they queue)

T = TypeVar("T")
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


def _limiter() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    lim = _limiters.get(loop)
    if lim is None:
        lim = _limiters[loop] = anyio.CapacityLimiter(DB_THREADS)
    return lim


async def db_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a database thread. Cancelling the caller waits for the call to end (never
    abandoned half-way: its writes either committed or not before the request goes)."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=_limiter())


async def db_call_shielded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Like ``db_call``, and run even if the request is being cancelled (clean-up after a failure)."""
    with anyio.CancelScope(shield=True):
        return await db_call(fn, *args, **kwargs)
