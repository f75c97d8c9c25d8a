"""The engine seam: one small API (query, one, execute, transaction, locks) over SQLite and PostgreSQL.

SQL is written once, portably: ``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, ``"offset"`` quoted
(a reserved word in PostgreSQL). The PostgreSQL engine translates the placeholders for psycopg. Every
aggregate module in this package takes a ``Queryable``: the database itself (each statement on its own)
or a ``Tx`` (statements that commit together), so the same named method serves both.

Two kinds of lock, both fleet-wide on PostgreSQL:
- ``Tx.lock(name)``: held until the transaction ends (``pg_advisory_xact_lock``); on SQLite a no-op,
  since ``BEGIN IMMEDIATE`` already holds the one write lock.
- ``Database.lock(name)``: held across several transactions and slow work between them (store puts),
  on a connection pinned to the calling thread (``pg_advisory_lock``); a killed instance's lock goes
  with its connection. On SQLite (one serving process) a lock per name in this process.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any, Protocol

Args = Sequence[Any]


def now_ns() -> int:
    return time.time_ns()


class Row(Protocol):
    """A result row: by column name (``row["serial"]``) or by position (``row[0]``)."""

    def __getitem__(self, key: str | int) -> Any: ...

    def keys(self) -> list[str]: ...


class Queryable(Protocol):
    def query(self, sql: str, args: Args = ()) -> list[Any]: ...

    def one(self, sql: str, args: Args = ()) -> Any | None: ...

    def execute(self, sql: str, args: Args = ()) -> int: ...


class Tx(ABC):
    """Statements inside one transaction (see ``Database.transaction``)."""

    @abstractmethod
    def query(self, sql: str, args: Args = ()) -> list[Any]: ...

    def one(self, sql: str, args: Args = ()) -> Any | None:
        rows = self.query(sql, args)
        return rows[0] if rows else None

    @abstractmethod
    def execute(self, sql: str, args: Args = ()) -> int: ...

    @abstractmethod
    def executemany(self, sql: str, rows: list[Args]) -> None: ...

    @abstractmethod
    def lock(self, name: str) -> None:
        """Serialise this transaction against every other one taking ``name``, on every instance."""


class Database(ABC):
    """The generic API every aggregate module and every page query is written on."""

    engine: str  # "sqlite" or "postgresql"
    # Like the database itself (each statement commits alone) but relaxed, see ``relaxed``: for the
    # single-statement writes made on every request (a nonce, a lease, a slot's last-seen).
    relaxed_writes: Queryable

    @abstractmethod
    def query(self, sql: str, args: Args = ()) -> list[Any]: ...

    def one(self, sql: str, args: Args = ()) -> Any | None:
        rows = self.query(sql, args)
        return rows[0] if rows else None

    @abstractmethod
    def execute(self, sql: str, args: Args = ()) -> int:
        """Run one statement on its own; returns the rows it changed."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]:
        """All or nothing; a writer waits for (and then excludes) other writers that conflict."""

    @abstractmethod
    def relaxed(self) -> AbstractContextManager[Tx]:
        """A transaction whose commit does not wait for the disk: for writes a power cut may lose
        harmlessly (a nonce, a lease, an admission slot's last-seen), made on every request. Never
        inside another transaction of the same thread."""

    @abstractmethod
    def lock(self, name: str) -> AbstractContextManager[None]:
        """Hold ``name`` (fleet-wide on PostgreSQL) across several transactions of this thread."""

    @abstractmethod
    def try_lock(self, name: str) -> AbstractContextManager[bool]:
        """Like ``lock`` but without waiting: yields False (and holds nothing) if someone else has it."""

    @abstractmethod
    def has_table(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


class AutoCommit:
    """Each statement on its own through ``run(method, sql, args)``: a Queryable over some connection."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def query(self, sql: str, args: Args = ()) -> list[Any]:
        return self._run("query", sql, args)  # type: ignore[no-any-return]

    def one(self, sql: str, args: Args = ()) -> Any | None:
        rows = self.query(sql, args)
        return rows[0] if rows else None

    def execute(self, sql: str, args: Args = ()) -> int:
        return self._run("execute", sql, args)  # type: ignore[no-any-return]


class NamedLocks:
    """Process-local locks by name (SQLite's ``Database.lock``)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())


_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders (outside string literals) to psycopg's ``%s``; a literal ``%`` doubled."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group()
        if tok == "?":
            return "%s"
        return tok.replace("%", "%%")

    return _TOKENS.sub(sub, sql)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
