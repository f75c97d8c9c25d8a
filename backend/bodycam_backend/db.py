"""Where the database API used to live: it is ``bodycam_backend.data`` now (SQLite or PostgreSQL, every
query in one module per aggregate). Kept so imports of ``Database`` and ``now_ns`` keep working."""

from .data import Database, now_ns

__all__ = ["Database", "now_ns"]
