"""Signature nonces seen (replay protection), shared by every instance."""

from __future__ import annotations

from .engine import Queryable


def add(q: Queryable, nonce: str, *, now_ns: int, expires_ns: int) -> bool:
    """Record ``nonce`` until ``expires_ns``; False if it is recorded already and not yet expired (a replay)."""
    return q.execute(
        "INSERT INTO nonces(nonce, expires_ns) VALUES(?,?) "
        "ON CONFLICT(nonce) DO UPDATE SET expires_ns=excluded.expires_ns WHERE nonces.expires_ns <= ?",
        (nonce, expires_ns, now_ns),
    ) > 0


def purge(q: Queryable, now_ns: int) -> int:
    """Forget nonces whose signatures can no longer pass the skew check anyway."""
    return q.execute("DELETE FROM nonces WHERE expires_ns <= ?", (now_ns,))
