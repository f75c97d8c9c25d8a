"""Admission slots: the uploads admitted fleet-wide, and when each last made progress."""

from __future__ import annotations

from .engine import Queryable, Tx

LOCK = "bodycam:admission"


def touch(q: Queryable, upload_id: str, t: int) -> bool:
    """Refresh an admitted upload's slot; False if it holds none."""
    return q.execute("UPDATE admission_slots SET last_seen_ns=? WHERE upload_id=?", (t, upload_id)) > 0


def take(tx: Tx, upload_id: str, *, instance: str, t: int, limit: int, idle_before_ns: int,
         new: bool = False) -> int | None:
    """A slot for ``upload_id`` if fewer than ``limit`` are held (after freeing those idle since
    ``idle_before_ns``); returns the slots now held, or None if full. Serialised fleet-wide, so the
    statements under the lock are few: a ``new`` upload (which cannot hold one yet) skips the refresh."""
    tx.lock(LOCK)
    if not new and touch(tx, upload_id, t):
        return count(tx)
    n = count(tx)
    if n >= limit:
        tx.execute("DELETE FROM admission_slots WHERE last_seen_ns < ?", (idle_before_ns,))
        n = count(tx)
        if n >= limit:
            return None
    tx.execute("INSERT INTO admission_slots(upload_id, instance, last_seen_ns) VALUES(?,?,?)", (upload_id, instance, t))
    return n + 1


def release(q: Queryable, upload_id: str) -> None:
    q.execute("DELETE FROM admission_slots WHERE upload_id=?", (upload_id,))


def count(q: Queryable) -> int:
    row = q.one("SELECT COUNT(*) FROM admission_slots")
    return int(row[0]) if row else 0


def clear(q: Queryable) -> None:
    """Every slot freed: for the one instance of an embedded (SQLite) backend, at its start."""
    q.execute("DELETE FROM admission_slots")
