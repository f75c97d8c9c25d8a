"""A throwaway PostgreSQL cluster for the tests, from Debian's packages (scripts/_bootstrap.sh installs
`postgresql`): initdb and pg_ctl from /usr/lib/postgresql/*/bin, its data and socket directories in a
fresh temporary directory, listening on 127.0.0.1 on a free port, started once per session; each test
that asks gets a fresh database in it (CREATE DATABASE ... TEMPLATE template0).

PostgreSQL refuses to run as root, and the tests run as root in CI: then the cluster runs as the
unprivileged `postgres` user the package creates (runuser), owning its directory.

Fixtures (a plugin: tests/conftest.py loads it): ``pg_cluster`` (session; the cluster starts only
when a test asks), ``pg_url`` (a new database), ``database`` (the ``[database]`` table for a
BackendProcess, parametrised over both engines).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENGINES = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run ./scripts/test as root once (it installs "
                           "Debian's postgresql), or apt-get install postgresql")
    return Path(found[-1]).parent


class PgCluster:
    """initdb + pg_ctl start in a temporary directory; ``stop()`` removes it all."""

    def __init__(self, *, durable: bool = False) -> None:
        """``durable``: fsync, synchronous commit and full-page writes on, as in production (a bench of commits
        must pay for them); the tests run without, for speed. Set on the command line, which nothing else
        (not ALTER SYSTEM) can override."""
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="bodycam-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.sockets.mkdir()
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sockets):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        for attempt in range(3):  # a free port can be taken by another process before the server binds it
            safety = "on" if durable else "off"
            opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync={safety} "
                    f"-c synchronous_commit={safety} -c full_page_writes={safety} -c max_connections=200")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts,
                          "-w", "-t", "180", "start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, tool: str, *args: str) -> None:
        r = subprocess.run([*self.as_user, str(self.bindir / tool), *args], capture_output=True, text=True,
                           timeout=240, cwd=self.root)
        if r.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{tool} failed: {r.stderr.strip()} {log.read_text() if log.exists() else ''}")

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return f"{self.url}/{name}"

    def sql(self, url: str, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (a DBA's direct access, around the backend)."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement, args)
            return cur.fetchall() if cur.description else []

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    return pg_cluster.new_database()


def database_table(request: pytest.FixtureRequest, engine: str) -> dict[str, Any]:
    """The ``[database]`` table of a backend config for ``engine`` (a new database for PostgreSQL)."""
    if engine == "sqlite":
        return {}
    return {"url": request.getfixturevalue("pg_cluster").new_database()}


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Parametrises a test over both engines: pass it as ``database=`` to BackendProcess."""
    return database_table(request, request.param)
