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
