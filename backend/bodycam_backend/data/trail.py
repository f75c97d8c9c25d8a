"""The backend's own audit trail (append-only): entries, hash-chained by seq."""

from __future__ import annotations

from typing import Any

from .engine import Queryable, Tx

LOCK = "bodycam:trail"


def head(q: Queryable) -> Any | None:
    """The newest entry's (seq, sha256), or None for an empty trail."""
    return q.one("SELECT seq, sha256 FROM trail ORDER BY seq DESC LIMIT 1")


def lock_head(tx: Tx) -> Any | None:
    """The head, with every other append (on every instance) held off until this transaction ends."""
    tx.lock(LOCK)
    return head(tx)


def append(tx: Tx, *, seq: int, entry: str, sig: str, sha256: str, target: str) -> None:
    tx.execute(
        "INSERT INTO trail(seq, entry, sig, sha256, target) VALUES(?,?,?,?,?)", (seq, entry, sig, sha256, target)
    )


def entries(q: Queryable, *, after: int = 0, limit: int = 1000) -> list[Any]:
    return q.query("SELECT entry, sig FROM trail WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))


def entries_for(q: Queryable, targets: list[str], prefixes: list[str]) -> list[Any]:
    """Entries whose target is one of ``targets`` or starts with one of ``prefixes``."""
    clauses = ["target = ?"] * len(targets) + ["target LIKE ? ESCAPE '\\'"] * len(prefixes)
    if not clauses:
        return []
    esc = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes]
    return q.query(f"SELECT entry, sig FROM trail WHERE {' OR '.join(clauses)} ORDER BY seq", (*targets, *esc))
