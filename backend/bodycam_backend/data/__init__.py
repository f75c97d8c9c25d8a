"""Every SQL statement of the review pages, one module per aggregate (people, review).

Written against ``Database.query/one/execute/transaction`` with ``?`` placeholders and portable SQL
(no SQLite-only syntax), so the move to the shared data layer (SQLite and PostgreSQL, alembic) is a
matter of turning ``SCHEMA`` into a revision. Until then the tables are created idempotently at open.
"""

from __future__ import annotations

from typing import Any

from . import devices, people, retention, review, shares

SCHEMA: tuple[str, ...] = (people.SCHEMA + review.SCHEMA + devices.SCHEMA + shares.SCHEMA
                           + retention.SCHEMA)


def ensure_schema(db: Any) -> None:
    """Create the review tables and indexes if missing (safe to repeat, and across processes)."""
    with db.transaction() as c:
        for statement in SCHEMA:
            c.execute(statement)
