"""Devices' own signed audit entries, as uploaded (write-once)."""

from __future__ import annotations

from typing import Any

from .engine import Queryable, Tx


def head(q: Queryable, serial: str) -> Any | None:
    """The newest entry's (seq, entry)."""
    return q.one("SELECT seq, entry FROM device_audit WHERE serial=? ORDER BY seq DESC LIMIT 1", (serial,))


def last_seq(q: Queryable, serial: str) -> int:
    row = q.one("SELECT MAX(seq) FROM device_audit WHERE serial=?", (serial,))
    return int(row[0] or 0) if row else 0


def entry_text(q: Queryable, serial: str, seq: int) -> str | None:
    row = q.one("SELECT entry FROM device_audit WHERE serial=? AND seq=?", (serial, seq))
    return str(row["entry"]) if row else None


def of_device(q: Queryable, serial: str) -> list[Any]:
    return q.query("SELECT seq, entry, sig, event FROM device_audit WHERE serial=? ORDER BY seq", (serial,))


def add(tx: Tx, serial: str, entries: list[tuple[int, str, str, Any, Any, Any]]) -> None:
    """(seq, entry text, sig, key_id, utc_ns, event) each; one already stored is kept as it is."""
    tx.executemany(
        "INSERT INTO device_audit(serial, seq, entry, sig, key_id, utc_ns, event) VALUES(?,?,?,?,?,?,?) "
        "ON CONFLICT(serial, seq) DO NOTHING",
        [(serial, *e) for e in entries],
    )
