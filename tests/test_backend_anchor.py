"""The audit trail's head anchored in the write-once store: a real backend process checkpoints it while
serving and at shutdown, and `bodycam backend audit-verify` catches a database administrator who cuts
entries off the end, or who rewrites history and re-signs and re-chains it with the backend's own key
(the chain alone cannot tell; only the anchored checkpoints can)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from backendkit import BackendProcess, people
from bodycam_backend.ca import load_backend_signer
from pgkit import ENGINES, database_table


class Dba:
    """A database administrator with direct access, around the backend: reads the trail, switches its
    write-once triggers off (as only an administrator can) and changes rows."""

    def __init__(self, engine: str, database: dict[str, Any], cluster: Any) -> None:
        self.engine, self.database, self.cluster = engine, database, cluster

    def _sql(self, backend: BackendProcess, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        out: list[Any] = []
        if self.engine == "sqlite":
            with sqlite3.connect(backend.data / "backend.sqlite3") as db:
                for sql, args in statements:
                    out = db.execute(sql, args).fetchall()
            return out
        for sql, args in statements:
            out = self.cluster.sql(self.database["url"], sql.replace("?", "%s"), args)
        return out

    def head(self, backend: BackendProcess) -> int:
        return self._sql(backend, [("SELECT MAX(seq) FROM trail", ())])[0][0] or 0

    def rows(self, backend: BackendProcess) -> list[tuple[int, str]]:
        return [(int(s), str(e)) for s, e in self._sql(backend, [("SELECT seq, entry FROM trail ORDER BY seq", ())])]

    def disable_triggers(self, backend: BackendProcess) -> None:
        if self.engine == "sqlite":
            self._sql(backend, [("DROP TRIGGER trail_no_update", ()), ("DROP TRIGGER trail_no_delete", ())])
        else:
            self._sql(backend, [("ALTER TABLE trail DISABLE TRIGGER USER", ())])

    def run(self, backend: BackendProcess, sql: str, args: tuple[Any, ...] = ()) -> None:
        self._sql(backend, [(sql, args)])


@pytest.fixture(params=ENGINES)
def dba(request: pytest.FixtureRequest) -> Dba:
    """Each test on each engine: SQLite (embedded) and PostgreSQL."""
    database = database_table(request, request.param)
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None
    return Dba(request.param, database, cluster)


def checkpoints(backend: BackendProcess) -> list[Path]:
    return sorted((backend.data / "store" / "trail" / "checkpoints").glob("*.json"))


def serve_and_act(tmp_path: Path, dba: Dba) -> BackendProcess:
    backend = BackendProcess(tmp_path / "backend", trail={"checkpoint_seconds": 0.3}, database=dba.database)
    backend.cli("init")
    backend.start()
    admin = people(backend, backend.admin_token())
    for serial in ("BC-ANC-1", "BC-ANC-2", "BC-ANC-3"):
        assert admin.post(f"{backend.url}/v1/devices/{serial}/enrol-token", timeout=10).status_code == 201
        deadline = time.monotonic() + 10
        while not any(json.loads(json.loads(p.read_text())["checkpoint"])["seq"] >= dba.head(backend)
                      for p in checkpoints(backend)):
            assert time.monotonic() < deadline, "no checkpoint of the head while serving"
            time.sleep(0.1)
    assert requests.get(f"{backend.url}/v1/devices", headers=admin.headers, timeout=10).ok
    backend.stop()  # SIGTERM: the head (with the last list entry) is anchored at shutdown
    return backend


def audit_verify(backend: BackendProcess) -> tuple[int, str]:
    r = backend.cli("audit-verify", check=False)
    return r.returncode, r.stdout + r.stderr


def test_checkpoints_are_written_while_serving_and_at_shutdown(tmp_path: Path, dba: Dba) -> None:
    backend = serve_and_act(tmp_path, dba)
    newest = json.loads(json.loads(checkpoints(backend)[-1].read_text())["checkpoint"])
    assert newest["seq"] == dba.head(backend), "the final head was anchored at shutdown"
    assert newest["format"] == "bodycam.backend-trail-checkpoint/1"
    code, out = audit_verify(backend)
    assert code == 0 and "audit trail: OK" in out and f"{len(checkpoints(backend))} checkpoints" in out, out
    assert all(p.stat().st_mode & 0o222 == 0 for p in checkpoints(backend)), "stored read-only, write-once"


def test_a_truncated_trail_is_caught(tmp_path: Path, dba: Dba) -> None:
    backend = serve_and_act(tmp_path, dba)
    top = dba.head(backend)
    dba.disable_triggers(backend)
    dba.run(backend, "DELETE FROM trail WHERE seq > ?", (top - 3,))
    code, out = audit_verify(backend)
    assert code == 1 and "audit trail: FAILED" in out
    assert "trail truncated: the checkpoint of" in out and f"anchors seq {top}" in out, out


def test_history_rewritten_and_re_signed_with_the_backend_key_is_caught(tmp_path: Path, dba: Dba) -> None:
    """The strongest insider: the database and the backend key. Entry 2 is rewritten, and it and every
    later entry re-signed and re-chained, so signatures and links all check; the anchors do not move."""
    backend = serve_and_act(tmp_path, dba)
    signer = load_backend_signer(backend.data / "keys")
    rows = dba.rows(backend)
    with pytest.raises(Exception, match="append-only"):  # the write-once trigger, while it is on
        dba.run(backend, "UPDATE trail SET target=? WHERE seq=?", ("x", 2))
    dba.disable_triggers(backend)
    prev = json.loads(rows[0][1])["prev"]
    for seq, text in rows:
        entry = json.loads(text)
        if seq == 2:
            entry["target"] = "device:SOMEONE-ELSE"
        if seq > 1:
            entry["prev"] = prev
        new = json.dumps(entry, separators=(",", ":"), sort_keys=True)
        sig = base64.b64encode(signer.sign(new.encode())).decode()
        sha = hashlib.sha256(new.encode()).hexdigest()
        dba.run(backend, "UPDATE trail SET entry=?, sig=?, sha256=? WHERE seq=?", (new, sig, sha, seq))
        prev = sha
    code, out = audit_verify(backend)
    assert code == 1, out
    assert "signature invalid" not in out and "chain broken" not in out, "the chain itself checks"
    assert "trail rewritten: seq" in out, out
