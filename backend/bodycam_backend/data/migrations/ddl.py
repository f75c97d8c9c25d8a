"""What every revision does with its statements: run them in order, portable between the two engines."""

from __future__ import annotations

from alembic import op


def apply(statements: list[str]) -> None:
    """Run ``statements`` (written for PostgreSQL; SQLite takes INTEGER for BIGINT) on the migrating connection."""
    bind = op.get_bind()
    for stmt in statements:
        bind.exec_driver_sql(stmt.replace("BIGINT", "INTEGER") if bind.dialect.name == "sqlite" else stmt)


def never_downgrade() -> None:
    raise NotImplementedError("evidence metadata is never migrated backwards")
