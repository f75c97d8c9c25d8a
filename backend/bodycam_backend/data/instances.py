"""The backend instances serving, each with the last time it said it was alive; and what a dead one held."""

from __future__ import annotations

from .engine import Queryable, Tx


def beat(q: Queryable, instance: str, t: int) -> None:
    """``instance`` is alive at ``t`` (its first beat records when it started)."""
    q.execute(
        "INSERT INTO instances(instance, started_ns, last_seen_ns) VALUES(?,?,?) "
        "ON CONFLICT(instance) DO UPDATE SET last_seen_ns=excluded.last_seen_ns",
        (instance, t, t),
    )


def reap(q: Tx, *, silent_since_ns: int, keep: str) -> list[str]:
    """Free what the instances silent since ``silent_since_ns`` held (never ``keep``, the caller): their
    admission slots, and the leases on the uploads they were writing (expired, so another instance may
    take them). Returns the instances found dead; their rows go."""
    dead = [str(r[0]) for r in q.query("SELECT instance FROM instances WHERE last_seen_ns < ? AND instance <> ?",
                                      (silent_since_ns, keep))]
    for instance in dead:
        q.execute("DELETE FROM admission_slots WHERE instance=?", (instance,))
        # a lease's owner is '<instance>:<token>'
        q.execute("UPDATE uploads SET lease_expires_ns=0 WHERE lease_owner IS NOT NULL "
                  "AND substr(lease_owner, 1, ?)=?", (len(instance) + 1, instance + ":"))
        q.execute("DELETE FROM instances WHERE instance=?", (instance,))
    return dead


def alive(q: Queryable) -> list[tuple[str, int, int]]:
    """Every instance known, (instance, started_ns, last_seen_ns), most recently seen first."""
    return [(str(r[0]), int(r[1]), int(r[2]))
            for r in q.query("SELECT instance, started_ns, last_seen_ns FROM instances ORDER BY last_seen_ns DESC")]
