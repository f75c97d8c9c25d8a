"""Cached per-segment integrity verdicts (bodycam_backend.verdicts decides when one still holds)."""

from __future__ import annotations

from typing import Any

from .engine import Queryable

STORE_CHANGED = "store_changed"


def of_recording(q: Queryable, serial: str, lo: int, hi: int) -> dict[int, Any]:
    """The cached verdicts of ``serial``'s sequences ``lo``..``hi``, by sequence."""
    rows = q.query("SELECT * FROM segment_verdicts WHERE serial = ? AND sequence BETWEEN ? AND ?", (serial, lo, hi))
    return {int(r["sequence"]): r for r in rows}


def pinned_versions(q: Queryable, keys: list[str]) -> dict[str, str]:
    """The acknowledged store version of each key that has one (one query for a whole recording)."""
    out: dict[str, str] = {}
    for i in range(0, len(keys), 500):
        part = keys[i:i + 500]
        marks = ",".join("?" * len(part))
        for r in q.query(f"SELECT key, version FROM store_versions WHERE key IN ({marks})", tuple(part)):
            out[r["key"]] = str(r["version"])
    return out


def store_changes(q: Queryable, serial: str, lo: int, hi: int) -> dict[int, int]:
    """When the store was last seen changed around the backend, per sequence (``store_changed`` flags)."""
    rows = q.query("SELECT sequence, MAX(created_ns) AS t FROM flags WHERE serial = ? AND reason = ?"
                   " AND sequence BETWEEN ? AND ? GROUP BY sequence", (serial, STORE_CHANGED, lo, hi))
    return {int(r["sequence"]): int(r["t"]) for r in rows}


def save(q: Queryable, serial: str, sequence: int, *, versions: str, content: str, stamp: str, ok: bool,
         verdict: str, checked_ns: int) -> None:
    q.execute(
        "INSERT INTO segment_verdicts(serial, sequence, versions, content, stamp, ok, verdict, checked_ns)"
        " VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(serial, sequence) DO UPDATE SET versions = excluded.versions,"
        " content = excluded.content, stamp = excluded.stamp, ok = excluded.ok, verdict = excluded.verdict,"
        " checked_ns = excluded.checked_ns",
        (serial, sequence, versions, content, stamp, int(ok), verdict, checked_ns))

