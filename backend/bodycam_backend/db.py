"""Metadata in SQLite (WAL), one connection per process behind a lock.

The evidence itself lives in the write-once store; this holds what points at it. Triggers refuse
UPDATE and DELETE on the audit trail, stored segments and device audit entries, so even a bug in
this process cannot rewrite history through SQL. A fleet deployment swaps this module for a real
database with the same methods.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices(
  serial TEXT PRIMARY KEY, status TEXT NOT NULL, created_ns INTEGER NOT NULL,
  enrolled_ns INTEGER, revoked_ns INTEGER);
CREATE TABLE IF NOT EXISTS certificates(
  key_id TEXT PRIMARY KEY, serial TEXT NOT NULL, pem TEXT NOT NULL, not_after_ns INTEGER NOT NULL,
  issued_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS enrol_tokens(
  token_sha256 TEXT PRIMARY KEY, serial TEXT NOT NULL, expires_ns INTEGER NOT NULL, used_ns INTEGER,
  created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people(
  name TEXT PRIMARY KEY, role TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE, created_ns INTEGER NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS uploads(
  id TEXT PRIMARY KEY, serial TEXT NOT NULL, key_id TEXT NOT NULL, kind TEXT NOT NULL, sequence INTEGER,
  length INTEGER NOT NULL, offset INTEGER NOT NULL, sha256 TEXT, state TEXT NOT NULL,
  created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL, result TEXT);
CREATE TABLE IF NOT EXISTS segments(
  serial TEXT NOT NULL, sequence INTEGER NOT NULL, recording_id TEXT NOT NULL, segment_index INTEGER,
  key_id TEXT NOT NULL, prev_sha256 TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, media_sha256 TEXT NOT NULL,
  media_size INTEGER NOT NULL,
  first_utc_ns INTEGER, last_utc_ns INTEGER, stored_ns INTEGER NOT NULL, receipt TEXT NOT NULL,
  receipt_sig TEXT NOT NULL, PRIMARY KEY(serial, sequence));
CREATE INDEX IF NOT EXISTS segments_recording ON segments(recording_id, sequence);
CREATE TABLE IF NOT EXISTS gaps(
  serial TEXT NOT NULL, sequence INTEGER NOT NULL, opened_ns INTEGER NOT NULL, closed_ns INTEGER,
  PRIMARY KEY(serial, sequence));
CREATE TABLE IF NOT EXISTS flags(
  id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT, sequence INTEGER, upload_id TEXT, reason TEXT NOT NULL,
  message TEXT NOT NULL, created_ns INTEGER NOT NULL, evidence TEXT);
CREATE TABLE IF NOT EXISTS device_audit(
  serial TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, sig TEXT NOT NULL, key_id TEXT NOT NULL,
  utc_ns INTEGER, event TEXT, PRIMARY KEY(serial, seq));
CREATE TABLE IF NOT EXISTS store_versions(
  key TEXT PRIMARY KEY, version TEXT NOT NULL, sha256 TEXT NOT NULL, stored_ns INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS store_versions_no_update BEFORE UPDATE ON store_versions
  BEGIN SELECT RAISE(ABORT, 'stored versions are write-once'); END;
CREATE TRIGGER IF NOT EXISTS store_versions_no_delete BEFORE DELETE ON store_versions
  BEGIN SELECT RAISE(ABORT, 'stored versions are write-once'); END;
CREATE TABLE IF NOT EXISTS trail(
  seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, sig TEXT NOT NULL, sha256 TEXT NOT NULL, target TEXT);
CREATE INDEX IF NOT EXISTS trail_target ON trail(target);
CREATE TRIGGER IF NOT EXISTS trail_no_update BEFORE UPDATE ON trail
  BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS trail_no_delete BEFORE DELETE ON trail
  BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS segments_no_update BEFORE UPDATE ON segments
  BEGIN SELECT RAISE(ABORT, 'stored segments are write-once'); END;
CREATE TRIGGER IF NOT EXISTS segments_no_delete BEFORE DELETE ON segments
  BEGIN SELECT RAISE(ABORT, 'stored segments are write-once'); END;
CREATE TRIGGER IF NOT EXISTS device_audit_no_update BEFORE UPDATE ON device_audit
  BEGIN SELECT RAISE(ABORT, 'device audit entries are write-once'); END;
CREATE TRIGGER IF NOT EXISTS device_audit_no_delete BEFORE DELETE ON device_audit
  BEGIN SELECT RAISE(ABORT, 'device audit entries are write-once'); END;
"""


def now_ns() -> int:
    return time.time_ns()


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a receipt is only sent after its row is durable
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: serialises writers across processes (server and admin CLI)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    # -- devices and certificates --

    def device(self, serial: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM devices WHERE serial=?", (serial,))

    def certificate(self, key_id: str) -> sqlite3.Row | None:
        return self.one(
            "SELECT c.*, d.status FROM certificates c JOIN devices d ON d.serial=c.serial WHERE c.key_id=?",
            (key_id,),
        )

    def certificates_of(self, serial: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM certificates WHERE serial=? ORDER BY issued_ns", (serial,))

    # -- uploads --

    def upload(self, upload_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM uploads WHERE id=?", (upload_id,))

    def set_offset(self, upload_id: str, offset: int) -> None:
        self.execute("UPDATE uploads SET offset=?, updated_ns=? WHERE id=?", (offset, now_ns(), upload_id))

    def set_upload_state(self, upload_id: str, state: str, result: dict[str, Any] | None = None) -> None:
        self.execute(
            "UPDATE uploads SET state=?, updated_ns=?, result=? WHERE id=?",
            (state, now_ns(), json.dumps(result) if result is not None else None, upload_id),
        )

    # -- segments and gaps --

    def segment(self, serial: str, sequence: int) -> sqlite3.Row | None:
        return self.one("SELECT * FROM segments WHERE serial=? AND sequence=?", (serial, sequence))

    def open_gaps(self, serial: str) -> list[int]:
        return [
            r[0]
            for r in self.query(
                "SELECT sequence FROM gaps WHERE serial=? AND closed_ns IS NULL ORDER BY sequence", (serial,)
            )
        ]

    def last_sequence(self, serial: str) -> int:
        row = self.one("SELECT MAX(sequence) FROM segments WHERE serial=?", (serial,))
        return int(row[0] or 0) if row else 0

    # -- the versions the store gave acknowledged objects --

    @staticmethod
    def pin_versions(conn: sqlite3.Connection, pins: list[tuple[str, str, str]]) -> None:
        """(key, version, sha256) of objects acknowledged in this transaction; a key is pinned once."""
        t = now_ns()
        conn.executemany(
            "INSERT OR IGNORE INTO store_versions(key, version, sha256, stored_ns) VALUES(?,?,?,?)",
            [(k, v, h, t) for k, v, h in pins],
        )

    def store_version(self, key: str) -> str:
        """The version recorded for ``key``; "" for an unversioned store (or a row from before pinning)."""
        row = self.one("SELECT version FROM store_versions WHERE key=?", (key,))
        return row["version"] if row else ""

    def add_flag(
        self,
        *,
        serial: str | None,
        sequence: int | None,
        upload_id: str | None,
        reason: str,
        message: str,
        evidence: dict[str, Any] | None = None,
    ) -> int:
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO flags(serial, sequence, upload_id, reason, message, created_ns, evidence) "
                "VALUES(?,?,?,?,?,?,?)",
                (
                    serial,
                    sequence,
                    upload_id,
                    reason,
                    message,
                    now_ns(),
                    json.dumps(evidence) if evidence else None,
                ),
            )
            return int(cur.lastrowid or 0)
