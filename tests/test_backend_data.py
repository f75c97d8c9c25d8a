"""The data layer on both engines: versioned migrations (a fresh database, one from before migrations,
several instances starting at once), write-once tables refused in the database itself, portable SQL,
and the shipped wheel carrying its migrations. Real SQLite files and a real PostgreSQL cluster
(tests/pgkit.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from backendkit import ROOT, BackendProcess
from bodycam_backend.data import connect, migrate, segments, trail
from bodycam_backend.data.engine import to_pyformat
from pgkit import ENGINES, database_table

# What `Database` created before migrations existed (bodycam_backend/db.py as of 2026-12-01), frozen here:
# such a database must be adopted as it is.
LEGACY_SCHEMA = """
CREATE TABLE devices(serial TEXT PRIMARY KEY, status TEXT NOT NULL, created_ns INTEGER NOT NULL,
  enrolled_ns INTEGER, revoked_ns INTEGER);
CREATE TABLE certificates(key_id TEXT PRIMARY KEY, serial TEXT NOT NULL, pem TEXT NOT NULL,
  not_after_ns INTEGER NOT NULL, issued_ns INTEGER NOT NULL);
CREATE TABLE enrol_tokens(token_sha256 TEXT PRIMARY KEY, serial TEXT NOT NULL, expires_ns INTEGER NOT NULL,
  used_ns INTEGER, created_by TEXT NOT NULL);
CREATE TABLE people(name TEXT PRIMARY KEY, role TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
  created_ns INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE uploads(id TEXT PRIMARY KEY, serial TEXT NOT NULL, key_id TEXT NOT NULL, kind TEXT NOT NULL,
  sequence INTEGER, length INTEGER NOT NULL, offset INTEGER NOT NULL, sha256 TEXT, state TEXT NOT NULL,
  created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL, result TEXT);
CREATE TABLE segments(serial TEXT NOT NULL, sequence INTEGER NOT NULL, recording_id TEXT NOT NULL,
  segment_index INTEGER, key_id TEXT NOT NULL, prev_sha256 TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
  media_sha256 TEXT NOT NULL, media_size INTEGER NOT NULL, first_utc_ns INTEGER, last_utc_ns INTEGER,
  stored_ns INTEGER NOT NULL, receipt TEXT NOT NULL, receipt_sig TEXT NOT NULL, PRIMARY KEY(serial, sequence));
CREATE INDEX segments_recording ON segments(recording_id, sequence);
CREATE TABLE gaps(serial TEXT NOT NULL, sequence INTEGER NOT NULL, opened_ns INTEGER NOT NULL, closed_ns INTEGER,
  PRIMARY KEY(serial, sequence));
CREATE TABLE flags(id INTEGER PRIMARY KEY AUTOINCREMENT, serial TEXT, sequence INTEGER, upload_id TEXT,
  reason TEXT NOT NULL, message TEXT NOT NULL, created_ns INTEGER NOT NULL, evidence TEXT);
CREATE TABLE device_audit(serial TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, sig TEXT NOT NULL,
  key_id TEXT NOT NULL, utc_ns INTEGER, event TEXT, PRIMARY KEY(serial, seq));
CREATE TABLE store_versions(key TEXT PRIMARY KEY, version TEXT NOT NULL, sha256 TEXT NOT NULL,
  stored_ns INTEGER NOT NULL);
CREATE TRIGGER store_versions_no_update BEFORE UPDATE ON store_versions
  BEGIN SELECT RAISE(ABORT, 'stored versions are write-once'); END;
CREATE TABLE trail(seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, sig TEXT NOT NULL, sha256 TEXT NOT NULL,
  target TEXT);
CREATE INDEX trail_target ON trail(target);
CREATE TRIGGER trail_no_update BEFORE UPDATE ON trail BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
CREATE TRIGGER trail_no_delete BEFORE DELETE ON trail BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END;
CREATE TRIGGER segments_no_update BEFORE UPDATE ON segments
  BEGIN SELECT RAISE(ABORT, 'stored segments are write-once'); END;
CREATE TRIGGER segments_no_delete BEFORE DELETE ON segments
  BEGIN SELECT RAISE(ABORT, 'stored segments are write-once'); END;
"""

WRITE_ONCE = {  # table: (a column, the refusal)
    "trail": ("sig", "audit trail is append-only"),
    "segments": ("receipt_sig", "stored segments are write-once"),
    "device_audit": ("sig", "device audit entries are write-once"),
    "store_versions": ("sha256", "stored versions are write-once"),
}


def fresh(request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> Any:
    url = database_table(request, engine).get("url", "")
    return connect(url, sqlite_path=tmp_path / "backend.sqlite3")


def test_the_head_constant_is_alembics_head() -> None:
    """``HEAD`` lets an up-to-date database skip importing alembic; it must name the newest script."""
    assert migrate.HEAD == migrate.head_revision()


@pytest.mark.parametrize("engine", ENGINES)
def test_write_once_tables_refuse_update_and_delete_in_the_database(request, tmp_path, engine) -> None:
    db = fresh(request, tmp_path, engine)
    try:
        assert migrate.current(db) == migrate.HEAD
        with db.transaction() as tx:
            trail.append(tx, seq=1, entry="{}", sig="s", sha256="h", target="t")
            segments.insert(tx, serial="BC-1", sequence=1, recording_id="r", segment_index=0, key_id="k",
                            prev_sha256="p", manifest_sha256="m", media_sha256="x", media_size=1, first_utc_ns=None,
                            last_utc_ns=None, stored_ns=1, receipt="{}", receipt_sig="s")
            tx.execute("INSERT INTO device_audit(serial, seq, entry, sig, key_id) VALUES(?,?,?,?,?)",
                       ("BC-1", 1, "{}", "s", "k"))
            tx.execute("INSERT INTO store_versions(key, version, sha256, stored_ns) VALUES(?,?,?,?)", ("a", "", "h", 1))
        for table, (column, message) in WRITE_ONCE.items():
            for sql in (f"UPDATE {table} SET {column}='forged'", f"DELETE FROM {table}"):
                with pytest.raises(Exception, match=message):
                    db.execute(sql)
            if engine == "postgresql":
                with pytest.raises(Exception, match=message):
                    db.execute(f"TRUNCATE {table}")
            assert db.one(f"SELECT COUNT(*) FROM {table}")[0] == 1
    finally:
        db.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_portable_sql_keeps_literals_and_percent_signs(request, tmp_path, engine) -> None:
    want = "SELECT '?%%', %s WHERE x LIKE '50%%' AND y = %s"
    assert to_pyformat("SELECT '?%', ? WHERE x LIKE '50%' AND y = ?") == want
    db = fresh(request, tmp_path, engine)
    try:
        row = db.one("SELECT '?%' AS a, ? AS b, 'it''s' AS c", ("x%?",))
        assert (row["a"], row["b"], row["c"]) == ("?%", "x%?", "it's") == (row[0], row[1], row[2])
        with db.transaction() as tx:  # RETURNING and ON CONFLICT on both engines
            first = segments.add_flag(tx, serial="BC-1", sequence=1, upload_id=None, reason="r", message="m", t=1)
            second = segments.add_flag(tx, serial="BC-1", sequence=2, upload_id=None, reason="r", message="m", t=1)
            segments.open_gap(tx, "BC-1", 5, 1)
            segments.open_gap(tx, "BC-1", 5, 2)
        assert second == first + 1 and segments.open_gaps(db, "BC-1") == [5]
        with pytest.raises(RuntimeError), db.transaction() as tx:
            segments.open_gap(tx, "BC-1", 6, 1)
            raise RuntimeError("rolled back")
        assert segments.open_gaps(db, "BC-1") == [5]
    finally:
        db.close()


def test_a_database_from_before_migrations_is_adopted_with_its_rows(tmp_path) -> None:
    backend = BackendProcess(tmp_path / "backend")
    backend.data.mkdir(parents=True)
    path = backend.data / "backend.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY_SCHEMA)
        db.execute("INSERT INTO devices(serial, status, created_ns) VALUES('BC-OLD-1', 'pending', 1)")
        db.execute("INSERT INTO trail(seq, entry, sig, sha256, target) VALUES(1, '{}', 's', 'h', 't')")
    assert "at revision none; behind" in backend.cli("db", "current").stdout
    backend.cli("init")
    assert backend.cli("db", "current").stdout.strip() == f"database (sqlite) at revision {migrate.HEAD}; up to date"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT serial FROM devices").fetchall() == [("BC-OLD-1",)]
        assert db.execute("SELECT seq, entry FROM trail").fetchall() == [(1, "{}")]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM trail")
        # what the legacy database lacked (here: store_versions' delete trigger) is there now
        with pytest.raises(sqlite3.IntegrityError, match="write-once"):
            db.execute("INSERT INTO store_versions VALUES('k', '', 'h', 1)")
            db.execute("DELETE FROM store_versions")
    assert "BC-OLD-1" in backend.cli("revoke", "BC-OLD-1").stdout, "the adopted rows are the backend's"


def test_instances_starting_at_once_on_postgresql_migrate_once(tmp_path, pg_url) -> None:
    """Four `db upgrade`s at the same moment on an empty database: one migrates, the others wait and
    find nothing left to do; all succeed."""
    backend = BackendProcess(tmp_path / "backend", database={"url": pg_url})
    cmd = [sys.executable, "-m", "bodycam.cli", "backend", "db", "upgrade", "--config", str(backend.config)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    said = sorted(o.strip() for o, _ in outs)
    assert said[0] == f"database (postgresql) at revision {migrate.HEAD}", said
    assert sum("(was none)" in s for s in said) == 1, said
    assert backend.cli("db", "current").stdout.strip() == (
        f"database (postgresql) at revision {migrate.HEAD}; up to date")


def test_the_wheel_ships_the_migrations(tmp_path) -> None:
    """An installed backend migrates its own database: the alembic scripts are package data."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("bodycam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    scripts = Path(migrate.SCRIPTS)
    for path in [scripts / "env.py", scripts / "script.py.mako", *scripts.glob("versions/*.py")]:
        assert f"bodycam_backend/{path.relative_to(scripts.parents[1]).as_posix()}" in names, path


@pytest.mark.parametrize("engine", ENGINES)
def test_shared_state_nonces_leases_slots_and_settings(request, tmp_path, engine) -> None:
    """The rows that let any instance serve any request, through the same named methods the services
    use: a nonce is refused while it lives and purged after; of two leases at one offset one wins and a
    stale one expires; admission slots count fleet-wide and free idle ones; a setting is made once."""
    from bodycam_backend.data import instances, nonces, settings, slots, uploads

    db = fresh(request, tmp_path, engine)
    try:
        with db.relaxed() as tx:
            assert nonces.add(tx, "n1", now_ns=100, expires_ns=200)
            assert not nonces.add(tx, "n1", now_ns=150, expires_ns=250), "a replay within the window"
            assert nonces.add(tx, "n1", now_ns=200, expires_ns=300), "an expired nonce is new again"
            assert nonces.add(tx, "n2", now_ns=100, expires_ns=120)
            assert nonces.purge(tx, 250) == 1 and not nonces.add(tx, "n1", now_ns=250, expires_ns=400)

        row = {"id": "u" * 32, "serial": "BC-1", "key_id": "k", "kind": "segment", "sequence": 1, "length": 10,
               "offset": 0, "sha256": None, "created_ns": 1}
        uploads.insert(db, row, state="open", updated_ns=1, result=None)
        uid = row["id"]
        assert uploads.take_lease(db, uid, offset=0, owner="a", now_ns=1000, until_ns=2000)
        assert not uploads.take_lease(db, uid, offset=0, owner="b", now_ns=1500, until_ns=2500), "a holds it"
        assert not uploads.commit_offset(db, uid, "b", 5, 1600), "only the lease holder moves the offset"
        assert uploads.take_lease(db, uid, offset=0, owner="b", now_ns=2001, until_ns=3000), "a's expired"
        assert not uploads.commit_offset(db, uid, "a", 5, 2100), "a lost it: its bytes do not count"
        assert uploads.commit_offset(db, uid, "b", 5, 2100)
        assert not uploads.take_lease(db, uid, offset=0, owner="c", now_ns=2200, until_ns=3200), "offset moved"
        assert uploads.get(db, uid)["offset"] == 5 and uploads.get(db, uid)["lease_owner"] is None
        assert uploads.take_lease(db, uid, offset=5, owner="c", now_ns=2200, until_ns=3200)
        assert not uploads.terminate(db, uid, 2300), "not while a PATCH writes it"
        uploads.release_lease(db, uid, "c")
        assert uploads.terminate(db, uid, 2400) and uploads.get(db, uid)["state"] == "terminated"

        def take(uid: str, t: int, new: bool = False) -> int | None:
            with db.relaxed() as tx:
                return slots.take(tx, uid, instance="i", t=t, limit=2, idle_before_ns=t - 100, new=new)

        assert take("x", 0) == 1 and take("y", 10) == 2 and take("z", 20) is None
        assert take("x", 30) == 2, "an admitted upload keeps its slot"
        assert take("z", 115) == 2, "y (idle since 10) freed its slot; x (seen at 30) kept its own"
        assert take("w", 120, new=True) is None, "a new upload counts against the limit like any other"
        slots.release(db, "x")
        assert slots.count(db) == 1
        assert take("w", 130, new=True) == 2 and slots.count(db) == 2
        with db.transaction() as tx:  # freed in the transaction that ends the upload
            slots.release(tx, "w")
        assert slots.count(db) == 1

        # an instance that stopped beating: its slots are freed and its leases expire, the living keep theirs
        uploads.insert(db, {**row, "id": "u2", "sequence": 2}, state="open", updated_ns=1, result=None)
        instances.beat(db, "dead-1", 1000)
        instances.beat(db, "live-1", 1000)
        instances.beat(db, "live-1", 5000)
        with db.relaxed() as tx:
            for uid, who in (("d1", "dead-1"), ("d2", "dead-1"), ("l1", "live-1")):
                assert slots.take(tx, uid, instance=who, t=5000, limit=10, idle_before_ns=0, new=True)
        assert uploads.take_lease(db, "u2", offset=0, owner="dead-1:ab12", now_ns=5000, until_ns=99_000)
        assert not uploads.take_lease(db, "u2", offset=0, owner="live-1:cd34", now_ns=5100, until_ns=99_000)
        with db.relaxed() as tx:
            assert instances.reap(tx, silent_since_ns=4000, keep="live-1") == ["dead-1"]
        assert [i for i, *_ in instances.alive(db)] == ["live-1"]
        assert slots.count(db) == 2, "w (instance i, never beat) and l1 remain; d1 and d2 were freed"
        assert uploads.take_lease(db, "u2", offset=0, owner="live-1:cd34", now_ns=5200, until_ns=99_000), \
            "the dead instance's lease no longer holds the upload"
        with db.relaxed() as tx:
            assert instances.reap(tx, silent_since_ns=9000, keep="live-1") == [], "never the caller itself"

        assert settings.get_or_create(db, "s", "first", 1) == "first"
        assert settings.get_or_create(db, "s", "second", 2) == "first", "made once, then shared"
    finally:
        db.close()
