"""Stored segments (write-once), the gaps in each device's chain, and the flags raised on evidence."""

from __future__ import annotations

import json
from typing import Any

from .engine import Queryable

SEGMENT_COLUMNS = (
    "serial", "sequence", "recording_id", "segment_index", "key_id", "prev_sha256", "manifest_sha256",
    "media_sha256", "media_size", "first_utc_ns", "last_utc_ns", "stored_ns", "receipt", "receipt_sig",
)

RECORDINGS = (
    "SELECT recording_id, serial, COUNT(*) n, MIN(sequence) lo, MAX(sequence) hi, MIN(first_utc_ns) t0, "
    "MAX(last_utc_ns) t1, CAST(SUM(media_size) AS BIGINT) bytes FROM segments {where} "
    "GROUP BY recording_id, serial ORDER BY serial, lo"
)


def get(q: Queryable, serial: str, sequence: int) -> Any | None:
    return q.one("SELECT * FROM segments WHERE serial=? AND sequence=?", (serial, sequence))


def neighbourhood(q: Queryable, serial: str, sequence: int) -> tuple[Any | None, Any | None, Any | None]:
    """The stored segments at ``sequence`` - 1, ``sequence`` and ``sequence`` + 1: what a new segment's
    chain is checked against, in one round trip rather than three."""
    rows = {r["sequence"]: r for r in q.query("SELECT * FROM segments WHERE serial=? AND sequence BETWEEN ? AND ?",
                                              (serial, sequence - 1, sequence + 1))}
    return rows.get(sequence - 1), rows.get(sequence), rows.get(sequence + 1)


def insert(q: Queryable, **values: Any) -> None:
    q.execute(
        f"INSERT INTO segments({', '.join(SEGMENT_COLUMNS)}) VALUES({', '.join('?' * len(SEGMENT_COLUMNS))})",
        tuple(values[c] for c in SEGMENT_COLUMNS),
    )


def last_sequence(q: Queryable, serial: str) -> int:
    row = q.one("SELECT MAX(sequence) FROM segments WHERE serial=?", (serial,))
    return int(row[0] or 0) if row else 0


def highest_below(q: Queryable, serial: str, sequence: int) -> int:
    row = q.one("SELECT MAX(sequence) FROM segments WHERE serial=? AND sequence < ?", (serial, sequence))
    return int(row[0] or 0) if row else 0


def of_recording(q: Queryable, recording_id: str) -> list[Any]:
    return q.query("SELECT * FROM segments WHERE recording_id=? ORDER BY sequence", (recording_id,))


def recordings(q: Queryable, *, serial: str | None = None, recording_id: str | None = None) -> list[Any]:
    """One summary row per recording: n, lo, hi, t0, t1, bytes."""
    if recording_id is not None:
        return q.query(RECORDINGS.format(where="WHERE recording_id=?"), (recording_id,))
    if serial is not None:
        return q.query(RECORDINGS.format(where="WHERE serial=?"), (serial,))
    return q.query(RECORDINGS.format(where=""))


# -- gaps --


def open_gaps(q: Queryable, serial: str) -> list[int]:
    rows = q.query("SELECT sequence FROM gaps WHERE serial=? AND closed_ns IS NULL ORDER BY sequence", (serial,))
    return [int(r[0]) for r in rows]


def open_gap(q: Queryable, serial: str, sequence: int, t: int) -> None:
    q.execute(
        "INSERT INTO gaps(serial, sequence, opened_ns) VALUES(?,?,?) ON CONFLICT(serial, sequence) DO NOTHING",
        (serial, sequence, t),
    )


def close_gap(q: Queryable, serial: str, sequence: int, t: int) -> bool:
    return q.execute(
        "UPDATE gaps SET closed_ns=? WHERE serial=? AND sequence=? AND closed_ns IS NULL", (t, serial, sequence)
    ) > 0


def gaps(q: Queryable, *, serial: str | None = None, open_only: bool = False) -> list[Any]:
    where, args = [], []
    if serial is not None:
        where.append("serial=?")
        args.append(serial)
    if open_only:
        where.append("closed_ns IS NULL")
    sql = "SELECT * FROM gaps" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY serial, sequence"
    return q.query(sql, tuple(args))


def gaps_between(q: Queryable, serial: str, lo: int, hi: int) -> list[Any]:
    return q.query(
        "SELECT * FROM gaps WHERE serial=? AND sequence BETWEEN ? AND ? ORDER BY sequence", (serial, lo, hi)
    )


# -- flags --


def add_flag(
    q: Queryable,
    *,
    serial: str | None,
    sequence: int | None,
    upload_id: str | None,
    reason: str,
    message: str,
    t: int,
    evidence: dict[str, Any] | None = None,
) -> int:
    row = q.one(
        "INSERT INTO flags(serial, sequence, upload_id, reason, message, created_ns, evidence) "
        "VALUES(?,?,?,?,?,?,?) RETURNING id",
        (serial, sequence, upload_id, reason, message, t, json.dumps(evidence) if evidence else None),
    )
    return int(row[0]) if row else 0


def flags(q: Queryable, *, serial: str | None = None) -> list[Any]:
    if serial is not None:
        return q.query("SELECT * FROM flags WHERE serial=? ORDER BY id", (serial,))
    return q.query("SELECT * FROM flags ORDER BY id")


def flags_between(q: Queryable, serial: str, lo: int, hi: int) -> list[Any]:
    return q.query(
        "SELECT * FROM flags WHERE serial=? AND (sequence BETWEEN ? AND ?) ORDER BY id", (serial, lo, hi)
    )


def flag_exists(q: Queryable, reason: str, message: str) -> bool:
    return q.one("SELECT id FROM flags WHERE reason=? AND message=?", (reason, message)) is not None
