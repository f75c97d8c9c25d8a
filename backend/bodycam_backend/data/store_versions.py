"""The version the store gave each acknowledged object (write-once): reads serve exactly that one."""

from __future__ import annotations

from .engine import Queryable, Tx


def pin(tx: Tx, pins: list[tuple[str, str, str]], t: int) -> None:
    """(key, version, sha256) of objects acknowledged in this transaction; a key is pinned once."""
    tx.executemany(
        "INSERT INTO store_versions(key, version, sha256, stored_ns) VALUES(?,?,?,?) ON CONFLICT(key) DO NOTHING",
        [(k, v, h, t) for k, v, h in pins],
    )


def version(q: Queryable, key: str) -> str:
    """The version recorded for ``key``; "" for an unversioned store (or a row from before pinning)."""
    row = q.one("SELECT version FROM store_versions WHERE key=?", (key,))
    return str(row["version"]) if row else ""
