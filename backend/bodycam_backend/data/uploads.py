"""tus uploads: one row per upload, its durable offset and how it ended (open, finalized, rejected,
terminated, expired)."""

from __future__ import annotations

from typing import Any

from .engine import Queryable

COLUMNS = ("id", "serial", "key_id", "kind", "sequence", "length", "offset", "sha256", "created_ns")


def get(q: Queryable, upload_id: str) -> Any | None:
    return q.one("SELECT * FROM uploads WHERE id=?", (upload_id,))


def insert(q: Queryable, values: dict[str, Any], *, state: str, updated_ns: int, result: str | None) -> None:
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    q.execute(
        f"INSERT INTO uploads({cols}, state, updated_ns, result) VALUES({', '.join('?' * (len(COLUMNS) + 3))})",
        (*(values[c] for c in COLUMNS), state, updated_ns, result),
    )


def set_offset(q: Queryable, upload_id: str, offset: int, t: int) -> None:
    q.execute('UPDATE uploads SET "offset"=?, updated_ns=? WHERE id=?', (offset, t, upload_id))


def set_state(q: Queryable, upload_id: str, state: str, t: int, result: str | None = None) -> None:
    q.execute("UPDATE uploads SET state=?, updated_ns=?, result=? WHERE id=?", (state, t, result, upload_id))


def stale_open(q: Queryable, cutoff_ns: int) -> list[str]:
    """Open uploads without progress since ``cutoff_ns``."""
    return [r[0] for r in q.query("SELECT id FROM uploads WHERE state='open' AND updated_ns < ?", (cutoff_ns,))]


def count_open(q: Queryable) -> int:
    row = q.one("SELECT COUNT(*) FROM uploads WHERE state='open'")
    return int(row[0]) if row else 0


# -- leases: the one PATCH writing an upload, on any instance --


def take_lease(q: Queryable, upload_id: str, *, offset: int, owner: str, now_ns: int, until_ns: int) -> bool:
    """Lease an open upload at ``offset`` to ``owner`` unless another unexpired lease holds it or the
    offset moved on; exactly one of two racing PATCHes gets True."""
    return q.execute(
        'UPDATE uploads SET lease_owner=?, lease_expires_ns=? WHERE id=? AND state=\'open\' AND "offset"=? '
        "AND (lease_owner IS NULL OR lease_expires_ns < ?)",
        (owner, until_ns, upload_id, offset, now_ns),
    ) > 0


def renew_lease(q: Queryable, upload_id: str, owner: str, until_ns: int) -> bool:
    return q.execute(
        "UPDATE uploads SET lease_expires_ns=? WHERE id=? AND lease_owner=?", (until_ns, upload_id, owner)
    ) > 0


def commit_offset(q: Queryable, upload_id: str, owner: str, offset: int, t: int) -> bool:
    """The new durable offset, and the lease released, if ``owner`` still holds it."""
    return q.execute(
        'UPDATE uploads SET "offset"=?, updated_ns=?, lease_owner=NULL, lease_expires_ns=NULL '
        "WHERE id=? AND lease_owner=?",
        (offset, t, upload_id, owner),
    ) > 0


def release_lease(q: Queryable, upload_id: str, owner: str) -> None:
    q.execute(
        "UPDATE uploads SET lease_owner=NULL, lease_expires_ns=NULL WHERE id=? AND lease_owner=?", (upload_id, owner)
    )


def clear_leases(q: Queryable) -> None:
    """Every lease dropped: for the one instance of an embedded (SQLite) backend, at its start."""
    q.execute("UPDATE uploads SET lease_owner=NULL, lease_expires_ns=NULL WHERE lease_owner IS NOT NULL")


def terminate(q: Queryable, upload_id: str, t: int) -> bool:
    """Open and not being written (no live lease): terminated. False otherwise."""
    return q.execute(
        "UPDATE uploads SET state='terminated', updated_ns=? WHERE id=? AND state='open' "
        "AND (lease_owner IS NULL OR lease_expires_ns < ?)",
        (t, upload_id, t),
    ) > 0
