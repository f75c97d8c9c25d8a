"""Versioned migrations (alembic, in ``migrations/``), run at `init`, at `serve` start and by
`bodycam backend db upgrade`.

Runtime queries never go through SQLAlchemy: it is only alembic's engine here, imported only when the
database is behind ``HEAD``, so an admin command on an up-to-date database starts as fast as before.
Several instances starting at once on PostgreSQL are serialised by an advisory lock (the first
migrates, the others then find nothing to do); on SQLite by a lock file beside the database. A SQLite
database made before migrations existed (its tables there, no ``alembic_version``) is adopted: revision
0001 on SQLite is all ``IF NOT EXISTS``, so running it keeps every table and row as it is, adds only what
such a database might lack (an index, a trigger), and stamps it; later revisions then run as on any other.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from .engine import Database

log = logging.getLogger("bodycam.backend.data")

HEAD = "0005"  # the newest revision in migrations/versions (a test checks they agree)
SCRIPTS = Path(__file__).resolve().parent / "migrations"
MIGRATE_LOCK = "bodycam:migrate"


def current(db: Database) -> str | None:
    """The revision the database is at; None before any (new, or made before migrations)."""
    if not db.has_table("alembic_version"):
        return None
    row = db.one("SELECT version_num FROM alembic_version")
    return str(row[0]) if row else None


def alembic_config(connection: object = None) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())  # type: ignore[arg-type]


def sqlalchemy_url(db: Database) -> str:
    if db.engine == "sqlite":
        return f"sqlite:///{db.path}"  # type: ignore[attr-defined]
    scheme, rest = db.url.split("://", 1)  # type: ignore[attr-defined]
    return f"postgresql+psycopg://{rest}"


def upgrade(db: Database) -> tuple[str | None, str]:
    """Bring the database to ``HEAD``; returns (revision found under the lock, revision after).
    Idempotent: an instance that waited for another's migration finds it done."""
    before = current(db)
    if before == HEAD:
        return before, HEAD
    if db.engine == "sqlite":
        lock = Path(f"{db.path}.migrate-lock")  # type: ignore[attr-defined]
        with open(lock, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                return _run(db)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    return _run(db)


def _run(db: Database) -> tuple[str | None, str]:
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(sqlalchemy_url(db), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if db.engine == "postgresql":  # held to the end of this connection: one instance migrates at a time
                conn.exec_driver_sql("SELECT pg_advisory_lock(hashtextextended('bodycam:migrate', 0))")
            cfg = alembic_config(conn)
            have = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
                if db.engine == "sqlite" else "SELECT to_regclass('alembic_version')"
            ).scalar()
            legacy = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='trail'"
                if db.engine == "sqlite" else "SELECT to_regclass('trail')"
            ).scalar()
            before = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() if have else None
            if before == HEAD:
                return before, HEAD  # another instance migrated while this one waited
            command.upgrade(cfg, "head")  # type: ignore[arg-type]
            if not have and legacy:
                log.info("database from before migrations adopted, its rows kept",
                         extra={"event": "db_adopted", "data": {"engine": db.engine}})
    finally:
        engine.dispose()
    after = current(db) or ""
    log.info("database migrated", extra={"event": "db_migrated",
                                         "data": {"engine": db.engine, "from": before, "revision": after}})
    return before, after
