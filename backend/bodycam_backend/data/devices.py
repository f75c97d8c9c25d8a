"""Devices, their certificates and the one-time enrolment tokens that buy them."""

from __future__ import annotations

from typing import Any

from .engine import Queryable


def get(q: Queryable, serial: str) -> Any | None:
    return q.one("SELECT * FROM devices WHERE serial=?", (serial,))


def all_devices(q: Queryable) -> list[Any]:
    return q.query("SELECT * FROM devices ORDER BY serial")


def add_pending(q: Queryable, serial: str, t: int) -> None:
    """Known from now on (status pending) unless known already."""
    q.execute(
        "INSERT INTO devices(serial, status, created_ns) VALUES(?, 'pending', ?) ON CONFLICT(serial) DO NOTHING",
        (serial, t),
    )


def activate(q: Queryable, serial: str, t: int) -> None:
    q.execute("UPDATE devices SET status='active', enrolled_ns=?, revoked_ns=NULL WHERE serial=?", (t, serial))


def revoke(q: Queryable, serial: str, t: int) -> bool:
    """True if it was not revoked already."""
    return q.execute(
        "UPDATE devices SET status='revoked', revoked_ns=? WHERE serial=? AND status!='revoked'", (t, serial)
    ) > 0


# -- certificates --


def certificate(q: Queryable, key_id: str) -> Any | None:
    """The certificate with its device's status."""
    return q.one(
        "SELECT c.*, d.status FROM certificates c JOIN devices d ON d.serial=c.serial WHERE c.key_id=?", (key_id,)
    )


def certificate_pem(q: Queryable, key_id: str, serial: str) -> str | None:
    row = q.one("SELECT pem FROM certificates WHERE key_id=? AND serial=?", (key_id, serial))
    return str(row["pem"]) if row else None


def certificates_of(q: Queryable, serial: str) -> list[Any]:
    return q.query("SELECT * FROM certificates WHERE serial=? ORDER BY issued_ns", (serial,))


def key_owner(q: Queryable, key_id: str) -> str | None:
    row = q.one("SELECT serial FROM certificates WHERE key_id=?", (key_id,))
    return str(row["serial"]) if row else None


def put_certificate(q: Queryable, *, key_id: str, serial: str, pem: str, not_after_ns: int, issued_ns: int) -> None:
    """Issue (or re-issue, on re-enrolment of the same key) a device certificate."""
    q.execute(
        "INSERT INTO certificates(key_id, serial, pem, not_after_ns, issued_ns) VALUES(?,?,?,?,?) "
        "ON CONFLICT(key_id) DO UPDATE SET serial=excluded.serial, pem=excluded.pem, "
        "not_after_ns=excluded.not_after_ns, issued_ns=excluded.issued_ns",
        (key_id, serial, pem, not_after_ns, issued_ns),
    )


# -- enrolment tokens --


def add_token(q: Queryable, *, token_sha256: str, serial: str, expires_ns: int, created_by: str) -> None:
    q.execute(
        "INSERT INTO enrol_tokens(token_sha256, serial, expires_ns, created_by) VALUES(?,?,?,?)",
        (token_sha256, serial, expires_ns, created_by),
    )


def token(q: Queryable, token_sha256: str) -> Any | None:
    return q.one("SELECT serial, expires_ns, used_ns FROM enrol_tokens WHERE token_sha256=?", (token_sha256,))


def use_token(q: Queryable, token_sha256: str, t: int) -> bool:
    """Spend the token; False if it was spent meanwhile (two enrolments racing on two instances)."""
    return q.execute(
        "UPDATE enrol_tokens SET used_ns=? WHERE token_sha256=? AND used_ns IS NULL", (t, token_sha256)
    ) > 0


def void_tokens(q: Queryable, serial: str, t: int) -> None:
    """Every unused token of this serial is spent (a revoked device cannot re-enrol with an old one)."""
    q.execute("UPDATE enrol_tokens SET used_ns=? WHERE serial=? AND used_ns IS NULL", (t, serial))


# --- the devices page (web/devices.py) ---


def overview(db: Any) -> list[Any]:
    return db.query(
        "SELECT d.serial, d.status, d.enrolled_ns, d.revoked_ns,"
        " (SELECT MAX(s.stored_ns) FROM segments s WHERE s.serial = d.serial) AS last_upload_ns,"
        " (SELECT COUNT(*) FROM gaps g WHERE g.serial = d.serial AND g.closed_ns IS NULL) AS open_gaps,"
        " (SELECT a.name FROM device_assignments a WHERE a.serial = d.serial AND a.until_ns IS NULL"
        "  ORDER BY a.from_ns DESC LIMIT 1) AS officer"
        " FROM devices d ORDER BY d.serial"
    )
