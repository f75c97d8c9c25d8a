"""Database waits stay off the event loop and off other requests (issue 9 item 6).

A real backend process on each engine, its database held from outside (SQLite: another connection's write
lock; PostgreSQL: a table lock) so that a device's request waits inside a statement: meanwhile the same
process still answers other requests. In process, on SQLite: a lone read does not queue behind a
write transaction another thread holds, and a thread inside its own transaction reads its own rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import requests
from backendkit import BackendProcess, enrolled_device, record, segments_of
from bodycam_backend.data import connect, now_ns, slots
from pgkit import ENGINES, database_table
from reviewkit import PASSWORD, csrf_of, signed_in, user_add


@pytest.fixture(scope="module", params=ENGINES)
def backend(tmp_path_factory, request):
    table = database_table(request, request.param)
    b = BackendProcess(tmp_path_factory.mktemp(f"db-waits-{request.param}"), database=table)
    b.url_db = table.get("url", "")  # type: ignore[attr-defined]
    b.start()
    yield b
    b.stop()


class HeldDatabase:
    """Writes to the backend's database blocked from outside until ``release()``; reads go on."""

    def __init__(self, backend: BackendProcess, tables: str = "nonces, admission_slots") -> None:
        self.pg: Any = None
        self.lite: sqlite3.Connection | None = None
        if backend.url_db:  # type: ignore[attr-defined]
            self.pg = psycopg.connect(backend.url_db)  # type: ignore[attr-defined]
            self.pg.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")  # plain SELECTs still run
        else:
            self.lite = sqlite3.connect(backend.data / "backend.sqlite3", isolation_level=None)
            self.lite.execute("BEGIN IMMEDIATE")  # SQLite's one write lock; WAL readers still read

    def release(self) -> None:
        if self.pg is not None:
            self.pg.rollback()
            self.pg.close()
        if self.lite is not None:
            self.lite.execute("ROLLBACK")
            self.lite.close()


def admission_rows(backend: BackendProcess) -> int:
    db = connect(backend.url_db, sqlite_path=backend.data / "backend.sqlite3", pool_size=1)  # type: ignore[attr-defined]
    try:
        return slots.count(db)
    finally:
        db.close()


def answered_beside(backend: BackendProcess, request: Any, tables: str = "nonces, admission_slots"
                    ) -> requests.Response:
    """Run ``request()`` while ``tables`` are held: once it waits in the database, the same process must
    still answer other requests (the loop is not the one waiting); then release, and return its answer."""
    held = HeldDatabase(backend, tables)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        waiting: Future[requests.Response] = pool.submit(request)
        time.sleep(1.0)  # the request reaches its first write and waits there
        assert not waiting.done(), "the request should be waiting for the held database"
        assert requests.get(backend.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(backend.url + "/v1/time", timeout=5).json()["utc_ns"] > 0
        assert not waiting.done(), "the request is still waiting: the answers above came beside it"
    finally:
        held.release()
    try:
        return waiting.result(timeout=60)
    finally:
        pool.shutdown()


def test_the_event_loop_answers_while_a_request_waits_in_the_database(backend, tmp_path) -> None:
    rig = record(tmp_path, "BC-WAIT-1", after=25)
    dev = enrolled_device(backend, rig)
    seg = segments_of(rig)[0]
    r = answered_beside(backend, lambda: dev.create_whole(seg))  # it waits at the signature's nonce
    assert r.status_code == 201 and r.json()["duplicate"] is False, r.text
    # its admission slot went with the transaction that finalized it
    assert admission_rows(backend) == 0


def test_a_review_form_waiting_in_the_database_leaves_the_event_loop_free(backend) -> None:
    """A reviewer's form (here an admin adding a person) waits for the database in a worker thread: the
    devices' uploads and every other request on this instance go on meanwhile."""
    assert user_add(backend, "wendy", "admin").returncode == 0
    s = signed_in(backend.url, "wendy")
    token = csrf_of(s.get(backend.url + "/people").text)
    r = answered_beside(backend, lambda: s.post(
        backend.url + "/people", data={"csrf": token, "name": "wes", "role": "officer", "password": PASSWORD},
        allow_redirects=False, timeout=60), tables="people")
    assert r.status_code == 303 and r.headers["location"] == "/people", r.text
    assert "wes" in s.get(backend.url + "/people").text


def test_sqlite_reads_do_not_queue_behind_another_threads_write_transaction(tmp_path) -> None:
    db = connect("", sqlite_path=tmp_path / "db.sqlite3")
    inside, done = threading.Event(), threading.Event()

    def writer() -> None:
        with db.transaction() as tx:
            slots.take(tx, "u-held", instance="i", t=now_ns(), limit=8, idle_before_ns=0)
            inside.set()
            done.wait(30)  # holds the process's write connection (as a commit's fsync does)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert inside.wait(10)
        got: list[int] = []
        reader = threading.Thread(target=lambda: got.append(slots.count(db)))
        reader.start()
        reader.join(10)
        assert got == [0], "a lone read answers while the write transaction is open, from the last commit"
    finally:
        done.set()
        t.join(10)
    assert slots.count(db) == 1, "and sees the commit once it is made"

    # a thread inside its own transaction reads what it wrote, through the database as well as the tx
    with db.transaction() as tx:
        slots.take(tx, "u-mine", instance="i", t=now_ns(), limit=8, idle_before_ns=0)
        assert slots.count(db) == 2 and slots.count(tx) == 2
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        slots.count(db)
