"""The devices page: enrolled cameras with their last upload, open gaps and current wearer."""

from __future__ import annotations

from typing import Any

SCHEMA: tuple[str, ...] = ()


def overview(db: Any) -> list[Any]:
    return db.query(
        "SELECT d.serial, d.status, d.enrolled_ns, d.revoked_ns,"
        " (SELECT MAX(s.stored_ns) FROM segments s WHERE s.serial = d.serial) AS last_upload_ns,"
        " (SELECT COUNT(*) FROM gaps g WHERE g.serial = d.serial AND g.closed_ns IS NULL) AS open_gaps,"
        " (SELECT a.name FROM device_assignments a WHERE a.serial = d.serial AND a.until_ns IS NULL"
        "  ORDER BY a.from_ns DESC LIMIT 1) AS officer"
        " FROM devices d ORDER BY d.serial"
    )


def one(db: Any, serial: str) -> Any:
    return db.one("SELECT serial, status FROM devices WHERE serial = ?", (serial,))


def trail_page(db: Any, before: int | None, limit: int) -> list[Any]:
    """The newest ``limit`` trail entries (before seq ``before``), newest first."""
    if before is None:
        return db.query("SELECT seq, entry, sig FROM trail ORDER BY seq DESC LIMIT ?", (limit,))
    return db.query("SELECT seq, entry, sig FROM trail WHERE seq < ? ORDER BY seq DESC LIMIT ?", (before, limit))
