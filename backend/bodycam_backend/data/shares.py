"""Share links: view-only access to one recording, or to the recordings of a case, for someone without
an account (a prosecutor), until a time, revocable. Only the SHA-256 of the link's secret is stored."""

from __future__ import annotations

from typing import Any


def add(db: Any, public_id: str, token_sha256: str, recording_id: str | None, case_id: str | None,
        created_by: str, t_ns: int, expires_ns: int, note: str) -> None:
    db.execute(
        "INSERT INTO shares(public_id, token_sha256, recording_id, case_id, created_by, created_ns, expires_ns,"
        " note) VALUES(?,?,?,?,?,?,?,?)",
        (public_id, token_sha256, recording_id, case_id, created_by, t_ns, expires_ns, note),
    )


def by_token(db: Any, token_sha256: str) -> Any:
    return db.one("SELECT * FROM shares WHERE token_sha256 = ?", (token_sha256,))


def of_recording(db: Any, recording_id: str) -> list[Any]:
    return db.query("SELECT * FROM shares WHERE recording_id = ? ORDER BY created_ns DESC", (recording_id,))


def of_case(db: Any, case_id: str) -> list[Any]:
    return db.query("SELECT * FROM shares WHERE case_id = ? ORDER BY created_ns DESC", (case_id,))


def revoke(db: Any, public_id: str, by: str, t_ns: int) -> bool:
    return bool(db.execute(
        "UPDATE shares SET revoked_ns = ?, revoked_by = ? WHERE public_id = ? AND revoked_ns IS NULL",
        (t_ns, by, public_id),
    ))


def get(db: Any, public_id: str) -> Any:
    return db.one("SELECT * FROM shares WHERE public_id = ?", (public_id,))
