"""Admission control: a bound on concurrent uploads, answered with 503 + Retry-After when full.

Counted per upload, not per request: an admitted upload keeps its slot between PATCH chunks while it
makes progress, so a dock storm drains at full speed instead of thrashing; a slot held by a device
that went silent is freed after ``idle_seconds``, and those an instance held when it died as soon as it is
found dead (it stopped saying it is alive for ``instance_timeout_seconds``; ``beat``). The slots are rows in
the database (``data.slots``), taken under a fleet-wide lock, so the limit holds across every instance
behind a load balancer, not per instance. Slot writes are relaxed (no fsync): a power cut at worst frees
slots, and every instance restarts with a fresh count anyway.
"""

from __future__ import annotations

import logging
import time

from .data import Database, Queryable, Tx, instances, now_ns, slots
from .errors import ApiError

log = logging.getLogger("bodycam.backend.admission")


class Admission:
    def __init__(self, *, db: Database, limit: int, retry_after_s: int, idle_s: float, instance: str = "",
                 instance_timeout_s: float = 15.0) -> None:
        self.db = db
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.idle_ns = int(idle_s * 1e9)
        self.instance_timeout_ns = int(instance_timeout_s * 1e9)
        self.instance = instance
        self.refused = 0  # this instance's own counts, for its logs and the bench
        self.peak = 0
        self.last_refused = float("-inf")  # time.monotonic() of this instance's last 503

    def at_limit_lately(self) -> bool:
        """This instance turned an upload away within the last Retry-After: the next may well be too."""
        return time.monotonic() - self.last_refused < self.retry_after_s

    def busy(self) -> ApiError:
        return ApiError(
            503,
            "busy",
            f"the backend is at its limit of {self.limit} concurrent uploads; retry "
            f"after {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
            retry_after=self.retry_after_s,
        )

    def admit(self, upload_id: str, *, new: bool = False, tx: Tx | None = None) -> None:
        """Take (or refresh) a slot for this upload, or raise 503 busy. A ``new`` upload (its id made just
        now) holds none yet: no refresh is tried (on SQLite one write less queued behind other commits).
        In ``tx`` (a relaxed transaction of the caller's) if given: the slot commits with the caller's
        writes, and a 503 rolls them back."""
        t = now_ns()
        if tx is None:
            if not new and slots.touch(self.db.relaxed_writes, upload_id, t):  # a PATCH of an admitted upload
                return
            with self.db.relaxed() as own:
                held = self._take(own, upload_id, t, new)
        elif not new and slots.touch(tx, upload_id, t):
            return
        else:
            held = self._take(tx, upload_id, t, new)
        if held is None:
            self.refused += 1
            self.last_refused = time.monotonic()
            raise self.busy()
        self.peak = max(self.peak, held)

    def _take(self, tx: Tx, upload_id: str, t: int, new: bool) -> int | None:
        held = slots.take(tx, upload_id, instance=self.instance, t=t, limit=self.limit,
                          idle_before_ns=t - self.idle_ns, new=new)
        if held is None and self._reap(tx, t):  # full: what dead instances held may be freed now
            held = slots.take(tx, upload_id, instance=self.instance, t=t, limit=self.limit,
                              idle_before_ns=t - self.idle_ns, new=new)
        return held

    def _reap(self, tx: Tx, t: int) -> list[str]:
        dead = instances.reap(tx, silent_since_ns=t - self.instance_timeout_ns, keep=self.instance)
        if dead:
            log.warning("instances stopped saying they are alive; their admission slots and upload leases are "
                        "freed", extra={"event": "instances_dead", "data": {"instances": dead}})
        return dead

    def beat(self) -> list[str]:
        """Say this instance is alive, and free what instances that stopped saying so held; returns those
        found dead. Called every third of ``instance_timeout_seconds`` (``liveness``)."""
        t = now_ns()
        instances.beat(self.db.relaxed_writes, self.instance, t)
        with self.db.relaxed() as tx:
            tx.lock(slots.LOCK)
            return self._reap(tx, t)

    def release(self, upload_id: str, tx: Queryable | None = None) -> None:
        """Free the upload's slot: relaxed on its own, or inside ``tx``, the transaction that ends the upload
        (no write of its own: on SQLite one more write would queue behind every other device's commit)."""
        slots.release(tx if tx is not None else self.db.relaxed_writes, upload_id)

    def forget_all(self) -> None:
        """The sole instance (SQLite) starting: every slot left belonged to a process that is gone."""
        slots.clear(self.db)

    @property
    def active(self) -> int:
        return slots.count(self.db)
