"""The integrity panel's per-segment verdicts, cached in the database (SQLite and PostgreSQL): a second
look re-verifies nothing, a store file altered behind the backend's back turns a cached green verdict
red (the directory store's size/mtime/inode stamp changed), an edit that also restores the mtime is
caught by the explicit re-check (which re-hashes, and is audited)."""

from __future__ import annotations

import json
import os

import pytest
from backendkit import BackendProcess, people
from bodycam_backend.data import connect, now_ns, segments
from bodycam_backend.data import verdicts as vq
from pgkit import ENGINES, database_table
from reviewkit import csrf_of, seed, signed_in

pytestmark = pytest.mark.slow


@pytest.fixture(params=ENGINES)
def db(request, tmp_path):
    d = connect(database_table(request, request.param).get("url", ""), sqlite_path=tmp_path / "backend.sqlite3")
    yield d
    d.close()


def test_verdicts_are_saved_replaced_and_read_back_per_sequence_range(db) -> None:
    vq.save(db, "BC-1", 1, versions="a|b|c", content="m:h:p", stamp="1:2:3", ok=True, verdict='{"ok": true}',
            checked_ns=10)
    vq.save(db, "BC-1", 2, versions="", content="x", stamp="s", ok=True, verdict="{}", checked_ns=10)
    vq.save(db, "BC-1", 1, versions="a|b|c", content="m:h:p", stamp="9:9:9", ok=False, verdict='{"ok": false}',
            checked_ns=20)
    vq.save(db, "BC-2", 1, versions="", content="y", stamp="s", ok=True, verdict="{}", checked_ns=5)
    got = vq.of_recording(db, "BC-1", 1, 5)
    assert sorted(got) == [1, 2]
    assert (got[1]["stamp"], bool(got[1]["ok"]), int(got[1]["checked_ns"])) == ("9:9:9", False, 20)
    assert vq.of_recording(db, "BC-1", 2, 2).keys() == {2}
    db.execute("INSERT INTO store_versions(key, version, sha256, stored_ns) VALUES('k1', 'v1', 'h', 0)")
    assert vq.pinned_versions(db, ["k1", "k2"]) == {"k1": "v1"}
    for t in (30, 40):
        db.execute("INSERT INTO flags(serial, sequence, upload_id, reason, message, created_ns) "
                   "VALUES('BC-1', 2, NULL, 'store_changed', 'x', ?)", (t,))
    db.execute("INSERT INTO flags(serial, sequence, upload_id, reason, message, created_ns) "
               "VALUES('BC-1', 1, NULL, 'bad_upload', 'x', 50)")
    assert vq.store_changes(db, "BC-1", 1, 5) == {2: 40}


@pytest.fixture(params=ENGINES)
def seeded(request, tmp_path):
    table = database_table(request, request.param)
    backend = BackendProcess(tmp_path / "backend", database=table)
    backend.start()
    try:
        s = seed(backend, tmp_path)
        s.database_url = table.get("url", "")  # type: ignore[attr-defined]
        yield s
    finally:
        backend.stop()


def _flip_a_byte(path, *, keep_mtime: bool) -> None:
    st = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_cached_green_verdict_turns_red_when_a_store_file_is_altered_and_a_recheck_rehashes(seeded) -> None:
    b = seeded.backend
    rita = signed_in(b.url, "rita")
    rid = seeded.recordings["BC-REV-0001"]
    n = len(seeded.segments["BC-REV-0001"])
    first = rita.get(f"{b.url}/recordings/{rid}/integrity").json()
    assert first["ok"] is True and first["verified_now"] == n and n >= 3
    again = rita.get(f"{b.url}/recordings/{rid}/integrity")
    assert again.json()["ok"] is True and again.json()["verified_now"] == 0
    assert all(s["cached"] for s in again.json()["segments"]) and "app;dur=" in again.headers["Server-Timing"]

    seg2 = b.data / "store" / "devices" / "BC-REV-0001" / "segments" / "seg-0000000002.mp4"
    _flip_a_byte(seg2, keep_mtime=False)
    red = rita.get(f"{b.url}/recordings/{rid}/integrity").json()
    assert red["ok"] is False and red["verified_now"] == 1  # only the altered segment is re-verified
    assert "seg-0000000002.mp4: SHA-256 mismatch (media altered)" in red["errors"]
    bad = {s["sequence"]: s["ok"] for s in red["segments"]}
    assert bad[2] is False and bad[1] is True

    # the store reported a change around the backend (pinned.py's store_changed flag): that segment again
    db = connect(seeded.database_url, sqlite_path=b.data / "backend.sqlite3")
    try:
        segments.add_flag(db, t=now_ns(), serial="BC-REV-0001", sequence=3, upload_id=None,
                          reason="store_changed", message="test: a version beside the acknowledged one")
    finally:
        db.close()
    flagged = rita.get(f"{b.url}/recordings/{rid}/integrity").json()
    assert flagged["verified_now"] == 1 and [s["cached"] for s in flagged["segments"]].count(False) == 1
    assert {s["sequence"] for s in flagged["segments"] if not s["cached"]} == {3}
    assert rita.get(f"{b.url}/recordings/{rid}/integrity").json()["verified_now"] == 0

    # size, mtime and inode restored: the cheap stamp cannot see it; the explicit re-check re-hashes
    other = seeded.recordings["BC-REV-0002"]
    assert rita.get(f"{b.url}/recordings/{other}/integrity").json()["ok"] is True
    seg1 = b.data / "store" / "devices" / "BC-REV-0002" / "segments" / "seg-0000000001.mp4"
    _flip_a_byte(seg1, keep_mtime=True)
    assert rita.get(f"{b.url}/recordings/{other}/integrity").json()["ok"] is True  # cached (documented limit)
    page = rita.get(f"{b.url}/recordings/{other}")
    assert 'id="recheck-form"' in page.text
    refused = rita.post(f"{b.url}/recordings/{other}/integrity/recheck", data={"csrf": "wrong"},
                        allow_redirects=False)
    assert refused.status_code == 403
    r = rita.post(f"{b.url}/recordings/{other}/integrity/recheck", data={"csrf": csrf_of(page.text)},
                  allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(f"/recordings/{other}#integrity")
    after = rita.get(f"{b.url}/recordings/{other}/integrity").json()
    assert after["ok"] is False and after["verified_now"] == 0  # the re-check's red verdict is now cached
    assert "seg-0000000001.mp4: SHA-256 mismatch (media altered)" in after["errors"]

    admin = people(b, b.admin_token("auditor-integrity", "admin"))
    entries = [json.loads(e["entry"]) for e in
               admin.get(b.url + "/v1/audit", params={"limit": 10000}).json()["entries"]]
    rechecks = [e for e in entries if e.get("action") == "recheck"]
    assert len(rechecks) == 1 and rechecks[0]["target"] == f"recording:{other}"
    assert rechecks[0]["actor"] == "person:rita" and rechecks[0]["data"]["ok"] is False
