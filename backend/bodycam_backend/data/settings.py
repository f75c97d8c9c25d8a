"""Values made once and shared by every instance on the database (e.g. the device-session secret)."""

from __future__ import annotations

from .engine import Queryable


def get_or_create(q: Queryable, name: str, value: str, t: int) -> str:
    """The stored value of ``name``; ``value`` is stored first if there is none (the first instance wins)."""
    q.execute("INSERT INTO settings(name, value, created_ns) VALUES(?,?,?) ON CONFLICT(name) DO NOTHING",
              (name, value, t))
    row = q.one("SELECT value FROM settings WHERE name=?", (name,))
    assert row is not None
    return str(row[0])
