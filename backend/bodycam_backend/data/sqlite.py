"""The embedded engine: one SQLite file (WAL, synchronous=FULL); one writing connection per process behind
a lock, and a read-only connection per thread for lone SELECTs.

``BEGIN IMMEDIATE`` serialises writers across processes (the server and the admin CLI). A receipt is
only sent after its row is durable, hence synchronous=FULL. In WAL mode readers never wait for the
writer: a lone SELECT runs on its thread's own read connection, so reads (a device's certificate, an
upload's row, a chain's neighbours) do not queue behind another device's commit and its fsync. A thread
inside its own write transaction reads on the writing connection, so it sees its own uncommitted rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .engine import Args, AutoCommit, Database, NamedLocks, Tx


class SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, args: Args = ()) -> list[Any]:
        return self._conn.execute(sql, tuple(args)).fetchall()

    def execute(self, sql: str, args: Args = ()) -> int:
        return self._conn.execute(sql, tuple(args)).rowcount

    def executemany(self, sql: str, rows: list[Args]) -> None:
        self._conn.executemany(sql, [tuple(r) for r in rows])

    def lock(self, name: str) -> None:
        """BEGIN IMMEDIATE already holds the database's one write lock."""


class SqliteDatabase(Database):
    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._names = NamedLocks()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._tx = SqliteTx(self._conn)
        self._writing = threading.local()  # how deep this thread is in ``transaction`` (reads go to the writer)
        self._readers = threading.local()
        self._all_readers: list[sqlite3.Connection] = []
        self._closed = False
        # A second connection for ``relaxed``: in WAL mode synchronous=NORMAL commits without an fsync.
        self._relaxed_lock = threading.Lock()
        self._relaxed_conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._relaxed_conn.row_factory = sqlite3.Row
        self._relaxed_conn.execute("PRAGMA synchronous=NORMAL")
        self._relaxed_conn.execute("PRAGMA busy_timeout=30000")
        self._relaxed_tx = SqliteTx(self._relaxed_conn)
        self.relaxed_writes = AutoCommit(self._run_relaxed)

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (made on first use; WAL: it reads beside the writer)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=1")
            with self._relaxed_lock:
                if self._closed:
                    conn.close()
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                self._all_readers.append(conn)
            self._readers.conn = conn
        return conn

    def _reads_alone(self, sql: str) -> bool:
        """A SELECT outside this thread's own write transaction: the read connection serves it."""
        return sql.lstrip()[:6].upper() == "SELECT" and not getattr(self._writing, "depth", 0)

    def close(self) -> None:
        with self._relaxed_lock:
            self._closed = True
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._relaxed_conn.close()
        with self._lock:
            self._conn.close()

    def _run_relaxed(self, method: str, sql: str, args: Args) -> Any:
        with self._relaxed_lock:
            return getattr(self._relaxed_tx, method)(sql, args)

    @contextmanager
    def relaxed(self) -> Iterator[Tx]:
        with self._relaxed_lock:
            self._relaxed_conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._relaxed_tx
            except BaseException:
                self._relaxed_conn.execute("ROLLBACK")
                raise
            self._relaxed_conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._writing.depth = getattr(self._writing, "depth", 0) + 1
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._tx
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                self._writing.depth -= 1

    def query(self, sql: str, args: Args = ()) -> list[Any]:
        if self._reads_alone(sql):
            return self._reader().execute(sql, tuple(args)).fetchall()
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def execute(self, sql: str, args: Args = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).rowcount

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self._names.get(name):
            yield

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        lk = self._names.get(name)
        got = lk.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lk.release()

    def has_table(self, name: str) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)) is not None
