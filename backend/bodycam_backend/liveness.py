"""Each instance says it is alive every third of ``[admission] instance_timeout_seconds`` (a row in the
database), and frees what instances that stopped saying so held.

An instance that is killed or loses its host leaves admission slots and upload leases behind. Without
this they would last until their own timeouts: a slot until ``idle_seconds`` (2 minutes), shrinking the
fleet's admission limit meanwhile, and a lease until ``upload_lease_seconds``, turning the device's
resume on another instance away (423) until then.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from .offloop import db_call

if TYPE_CHECKING:
    from .context import Backend

log = logging.getLogger("bodycam.backend.liveness")


async def _beat(b: Backend) -> None:
    try:
        await db_call(b.admission.beat)  # logs the instances it finds dead
    except Exception as e:  # noqa: BLE001 - a database outage must not stop the service; the next beat retries
        log.warning("cannot say this instance is alive: %s", e, extra={"event": "instance_beat_failed"})


@asynccontextmanager
async def beating_while_serving(b: Backend) -> AsyncIterator[None]:
    interval = b.cfg.admission.instance_timeout_seconds / 3
    await _beat(b)  # alive before the first request is served

    async def every() -> None:
        while True:
            await anyio.sleep(interval)
            await _beat(b)

    async with anyio.create_task_group() as tg:
        tg.start_soon(every)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
