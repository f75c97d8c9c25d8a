"""People's accounts (admins, reviewers): only a token's SHA-256 is kept."""

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
