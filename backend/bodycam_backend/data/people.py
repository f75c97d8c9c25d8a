"""People's accounts: API tokens (only their SHA-256 is kept), and for the review pages their passwords
(argon2 hashes), sessions (only the SHA-256 of the cookie), failed sign-ins and which camera each officer
wears when."""

from __future__ import annotations

from typing import Any

from .engine import Queryable


def by_token(q: Queryable, token_sha256: str) -> Any | None:
    return q.one("SELECT name, role, disabled FROM people WHERE token_sha256=?", (token_sha256,))


def exists(q: Queryable, name: str) -> bool:
    return q.one("SELECT 1 FROM people WHERE name=?", (name,)) is not None


def add(q: Queryable, *, name: str, role: str, token_sha256: str, t: int) -> None:
    q.execute(
        "INSERT INTO people(name, role, token_sha256, created_ns) VALUES(?,?,?,?)", (name, role, token_sha256, t)
    )


def all_people(q: Queryable) -> list[Any]:
    return q.query("SELECT name, role, created_ns, disabled FROM people ORDER BY name")


# --- signing in to the review pages (accounts.py): passwords, sessions, throttling, camera wearers ---


def account(db: Any, name: str) -> Any:
    """(name, role, disabled, password_hash) of one account, or None."""
    return db.one(
        "SELECT p.name, p.role, p.disabled, w.password_hash FROM people p "
        "LEFT JOIN person_passwords w ON w.name = p.name WHERE p.name = ?",
        (name,),
    )


def accounts(db: Any) -> list[Any]:
    return db.query(
        "SELECT p.name, p.role, p.disabled, p.created_ns, w.updated_ns AS password_ns FROM people p "
        "LEFT JOIN person_passwords w ON w.name = p.name ORDER BY p.name"
    )


def set_password(db: Any, name: str, password_hash: str, t_ns: int) -> None:
    db.execute(
        "INSERT INTO person_passwords(name, password_hash, updated_ns) VALUES(?,?,?) "
        "ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, updated_ns = excluded.updated_ns",
        (name, password_hash, t_ns),
    )


# --- sessions ---


def add_session(db: Any, id_sha256: str, name: str, csrf: str, t_ns: int, expires_ns: int, address: str) -> None:
    db.execute(
        "INSERT INTO web_sessions(id_sha256, name, csrf, created_ns, last_ns, expires_ns, address) "
        "VALUES(?,?,?,?,?,?,?)",
        (id_sha256, name, csrf, t_ns, t_ns, expires_ns, address),
    )


def session(db: Any, id_sha256: str) -> Any:
    return db.one(
        "SELECT s.name, s.csrf, s.created_ns, s.last_ns, s.expires_ns, p.role, p.disabled FROM web_sessions s "
        "JOIN people p ON p.name = s.name WHERE s.id_sha256 = ?",
        (id_sha256,),
    )


def touch_session(db: Any, id_sha256: str, t_ns: int) -> None:
    db.execute("UPDATE web_sessions SET last_ns = ? WHERE id_sha256 = ?", (t_ns, id_sha256))


def drop_session(db: Any, id_sha256: str) -> None:
    db.execute("DELETE FROM web_sessions WHERE id_sha256 = ?", (id_sha256,))


def drop_sessions_of(db: Any, name: str) -> None:
    db.execute("DELETE FROM web_sessions WHERE name = ?", (name,))


def drop_expired_sessions(db: Any, t_ns: int, idle_ns: int) -> int:
    return db.execute(
        "DELETE FROM web_sessions WHERE expires_ns < ? OR last_ns < ?", (t_ns, t_ns - idle_ns)
    )


# --- throttling ---


def failures_since(db: Any, subject: str, since_ns: int) -> int:
    row = db.one("SELECT COUNT(*) FROM login_failures WHERE subject = ? AND t_ns >= ?", (subject, since_ns))
    return int(row[0]) if row else 0


def add_failure(db: Any, subjects: list[str], t_ns: int) -> None:
    with db.transaction() as c:
        for s in subjects:
            c.execute("INSERT INTO login_failures(subject, t_ns) VALUES(?,?)", (s, t_ns))


def forget_failures(db: Any, subject: str, before_ns: int | None = None) -> None:
    if before_ns is None:
        db.execute("DELETE FROM login_failures WHERE subject = ?", (subject,))
    else:
        db.execute("DELETE FROM login_failures WHERE t_ns < ?", (before_ns,))


# --- which camera an officer wore when ---


def assign(db: Any, serial: str, name: str, from_ns: int) -> None:
    """``serial`` is worn by ``name`` from ``from_ns`` until the camera's next assignment. Assignments of
    one camera never overlap: the one covering ``from_ns`` ends there, and this one ends where the next
    begins (if one was recorded for later)."""
    with db.transaction() as c:
        c.execute(
            "UPDATE device_assignments SET until_ns = ? WHERE serial = ? AND from_ns < ?"
            " AND (until_ns IS NULL OR until_ns > ?)",
            (from_ns, serial, from_ns, from_ns),
        )
        nxt = c.one("SELECT MIN(from_ns) FROM device_assignments WHERE serial = ? AND from_ns > ?", (serial, from_ns))
        c.execute(
            "INSERT INTO device_assignments(serial, name, from_ns, until_ns) VALUES(?,?,?,?) "
            "ON CONFLICT(serial, from_ns) DO UPDATE SET name = excluded.name",
            (serial, name, from_ns, nxt[0] if nxt else None),
        )


def assignments(db: Any, serial: str | None = None) -> list[Any]:
    if serial is None:
        return db.query("SELECT * FROM device_assignments ORDER BY serial, from_ns")
    return db.query("SELECT * FROM device_assignments WHERE serial = ? ORDER BY from_ns", (serial,))


def officer_at(db: Any, serial: str, t_ns: int) -> str | None:
    row = db.one(
        "SELECT name FROM device_assignments WHERE serial = ? AND from_ns <= ? AND (until_ns IS NULL OR until_ns > ?)"
        " ORDER BY from_ns DESC LIMIT 1",
        (serial, t_ns, t_ns),
    )
    return row["name"] if row else None


def set_disabled(db: Any, name: str, disabled: bool) -> bool:
    return db.execute("UPDATE people SET disabled = ? WHERE name = ?", (int(disabled), name)) > 0
