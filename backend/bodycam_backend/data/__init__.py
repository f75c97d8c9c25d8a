"""The backend's data layer: the only place with SQL.

``engine`` (the seam), ``sqlite`` (embedded default) and ``postgres`` (a fleet of instances on one
PostgreSQL) run the same portable SQL; ``migrate`` keeps the schema versioned (alembic). One module per
aggregate holds its queries as named functions taking a ``Queryable`` (the database, or a transaction):
``devices`` (devices, certificates, enrolment tokens), ``people`` (accounts, passwords, sessions,
camera assignments), ``uploads`` (and their leases), ``segments`` (segments, gaps, flags),
``device_audit``, ``trail``, ``store_versions``; the state several instances share: ``nonces``,
``slots`` (admission), ``settings``; for the review pages ``review`` (the recordings index and its
filters), ``retention`` (categories, promises, cases, notes, deletions) and ``shares`` (view-only links).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .engine import Database, Queryable, Tx, now_ns

if TYPE_CHECKING:
    from ..config import BackendConfig

__all__ = ["Database", "Queryable", "Tx", "connect", "now_ns", "open_database"]


def open_database(cfg: BackendConfig, *, migrate: bool = True) -> Database:
    """The database the config names (``[database] url``; empty: SQLite in data_dir), at ``HEAD``."""
    return connect(cfg.database.url, sqlite_path=cfg.data_dir / "backend.sqlite3",
                   pool_size=cfg.database.pool_size, migrate=migrate)


def connect(url: str, *, sqlite_path: Path, pool_size: int = 20, migrate: bool = True) -> Database:
    """PostgreSQL at ``url``, or SQLite at ``sqlite_path`` if ``url`` is empty; migrated to ``HEAD``."""
    if url:
        from .postgres import PostgresDatabase

        db: Database = PostgresDatabase(url, pool_size=pool_size)
    else:
        from .sqlite import SqliteDatabase

        db = SqliteDatabase(sqlite_path)
    if migrate:
        from . import migrate as migrations

        try:
            migrations.upgrade(db)
        except BaseException:
            db.close()
            raise
    return db
