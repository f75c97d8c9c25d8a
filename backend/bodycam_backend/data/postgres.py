"""The fleet engine: PostgreSQL through psycopg 3 and a connection pool, shared by every instance.

Connections run in autocommit: a lone statement commits by itself, ``transaction()`` wraps BEGIN/COMMIT.
``lock(name)`` pins one pooled connection to the calling thread while it holds a session advisory lock,
so the queries made under the lock (on any path through ``Database``) run on that connection; the lock
dies with the connection if the instance does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..errors import BackendError
from .engine import Args, AutoCommit, Database, Tx, to_pyformat

LOCK_KEY = "SELECT {fn}(hashtextextended(%s, 0))"


class PgRow:
    """Like sqlite3.Row: by name or by position."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: tuple[Any, ...], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: str | int) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description or []
    index = {d.name: i for i, d in enumerate(desc)}
    return lambda values: PgRow(values, index)


class PgTx(Tx):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def query(self, sql: str, args: Args = ()) -> list[Any]:
        cur = self._conn.execute(to_pyformat(sql), tuple(args))
        return cur.fetchall() if cur.description else []

    def execute(self, sql: str, args: Args = ()) -> int:
        return self._conn.execute(to_pyformat(sql), tuple(args)).rowcount

    def executemany(self, sql: str, rows: list[Args]) -> None:
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(to_pyformat(sql), [tuple(r) for r in rows])

    def lock(self, name: str) -> None:
        self._conn.execute(LOCK_KEY.format(fn="pg_advisory_xact_lock"), (name,))


class PostgresDatabase(Database):
    engine = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 20, connect_timeout: float = 15.0) -> None:
        self.url = url
        self._local = threading.local()
        try:  # once directly: a wrong URL or a server that is down is one clear line now, not a pool timeout
            psycopg.connect(url, connect_timeout=int(connect_timeout)).close()
        except psycopg.Error as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(
                f"[database] url: cannot connect to PostgreSQL at {_safe(url)} ({reason}); check the server "
                "is up and the URL's user, host, port and database"
            ) from None
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": _row_factory},
            open=False,
            name="bodycam",
        )
        # Relaxed writes: connections whose commits do not wait for the WAL flush (synchronous_commit off).
        self.relaxed_pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size // 2),
            kwargs={"autocommit": True, "row_factory": _row_factory, "options": "-c synchronous_commit=off"},
            open=False,
            name="bodycam-relaxed",
        )
        self.relaxed_writes = AutoCommit(self._run_relaxed)
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
            self.relaxed_pool.open(wait=True, timeout=connect_timeout)
        except Exception as e:  # noqa: BLE001 - any failure to connect is the one line below
            self.close()
            raise BackendError(
                f"[database] url: cannot connect to PostgreSQL at {_safe(url)} within {connect_timeout:g} s "
                f"({type(e).__name__}); check the server is up and the URL's user, host, port and database"
            ) from None

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.relaxed_pool.close()
        self.pool.close()

    def _run_relaxed(self, method: str, sql: str, args: Args) -> Any:
        with self.relaxed_pool.connection() as conn:
            return getattr(PgTx(conn), method)(sql, args)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._conn() as conn, conn.transaction():
            yield PgTx(conn)

    @contextmanager
    def relaxed(self) -> Iterator[Tx]:
        with self.relaxed_pool.connection() as conn, conn.transaction():
            yield PgTx(conn)

    def query(self, sql: str, args: Args = ()) -> list[Any]:
        with self._conn() as conn:
            cur = conn.execute(to_pyformat(sql), tuple(args))
            return cur.fetchall() if cur.description else []

    def execute(self, sql: str, args: Args = ()) -> int:
        with self._conn() as conn:
            return conn.execute(to_pyformat(sql), tuple(args)).rowcount

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self._conn() as conn:
            outer = getattr(self._local, "conn", None)
            self._local.conn = conn
            conn.execute(LOCK_KEY.format(fn="pg_advisory_lock"), (name,))
            try:
                yield
            finally:
                self._local.conn = outer
                try:
                    conn.execute(LOCK_KEY.format(fn="pg_advisory_unlock"), (name,))
                except psycopg.Error:
                    pass  # a broken connection took its locks with it

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        with self._conn() as conn:
            row = conn.execute(LOCK_KEY.format(fn="pg_try_advisory_lock"), (name,)).fetchone()
            got = bool(row and row[0])
            if not got:
                yield False
                return
            outer = getattr(self._local, "conn", None)
            self._local.conn = conn
            try:
                yield True
            finally:
                self._local.conn = outer
                try:
                    conn.execute(LOCK_KEY.format(fn="pg_advisory_unlock"), (name,))
                except psycopg.Error:
                    pass

    def has_table(self, name: str) -> bool:
        row = self.one("SELECT to_regclass(?) IS NOT NULL", (name,))
        return bool(row and row[0])


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(url)
    if p.password is None:
        return url
    netloc = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
