"""The recordings index and its filters on a real SQLite database: which recording a gap or a flag
belongs to, whose recording it is when cameras change hands, paging, and the index's catch-up."""

from __future__ import annotations

import pytest
from bodycam_backend.data import connect, segments
from bodycam_backend.data import people as pq
from bodycam_backend.data import review as q
from pgkit import ENGINES, database_table

S = 1_000_000_000
T0 = 1_800_000_000 * S


@pytest.fixture(params=ENGINES)
def db(request, tmp_path):
    """The same portable SQL on SQLite and on PostgreSQL (a throwaway cluster: tests/pgkit.py)."""
    d = connect(database_table(request, request.param).get("url", ""),
                sqlite_path=tmp_path / "backend.sqlite3")  # migrated to HEAD
    yield d
    d.close()


def add_recording(db, serial: str, first: int, n: int, start_s: int, *, markers: int = 0) -> str:
    rid = f"{serial}-{first:010d}"
    for j in range(n):
        seq = first + j
        db.execute("INSERT INTO segments(serial, sequence, recording_id, segment_index, key_id, prev_sha256,"
                   " manifest_sha256, media_sha256, media_size, first_utc_ns, last_utc_ns, stored_ns, receipt,"
                   " receipt_sig) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (serial, seq, rid, j, "k", "p", "m", "h", 1000, T0 + (start_s + 2 * j) * S,
                    T0 + (start_s + 2 * j + 2) * S, T0 + start_s * S, "{}", ""))
        q.add_segment(db, segments.get(db, serial, seq), markers if j == 0 else 0, False)
    return rid


def ids(db, **kw) -> list[str]:
    rows, total = q.list_recordings(db, q.Filters(sort="time", descending=False, **kw))
    assert total == len(rows) or kw.get("per_page")
    return [r["recording_id"] for r in rows]


def test_gaps_and_flags_belong_to_the_recording_they_fall_in_or_just_after(db) -> None:
    a = add_recording(db, "BC-1", 1, 3, 0)       # 1-3
    b = add_recording(db, "BC-1", 5, 2, 100)     # 5-6: 4 missing, right after a
    c = add_recording(db, "BC-1", 7, 3, 200, markers=2)  # 7-9
    d = add_recording(db, "BC-2", 1, 1, 50)
    db.execute("INSERT INTO gaps(serial, sequence, opened_ns) VALUES('BC-1', 4, 0)")
    assert ids(db, has_gaps=True) == [a]
    db.execute("UPDATE gaps SET closed_ns = 1 WHERE serial = 'BC-1' AND sequence = 4")
    assert ids(db, has_gaps=True) == []
    segments.add_flag(db, serial="BC-1", sequence=8, upload_id=None, reason="store_changed", message="x", t=1)
    segments.add_flag(db, serial="BC-2", sequence=None, upload_id="u", reason="bad_upload", message="y",
                      t=1)  # no sequence
    assert ids(db, flagged=True) == [c]
    assert ids(db, has_markers=True) == [c]
    assert ids(db) == [a, d, b, c]
    assert ids(db, device="BC-2") == [d]
    assert ids(db, since_ns=T0 + 60 * S, until_ns=T0 + 150 * S) == [b]
    row = q.recording(db, c)
    assert (row["first_seq"], row["last_seq"], row["segments"], row["markers"], bool(row["flagged"])) == (
        7, 9, 3, 2, True)


def test_a_recording_belongs_to_whoever_wore_the_camera_when_it_started(db) -> None:
    early = add_recording(db, "BC-1", 1, 1, 0)
    late = add_recording(db, "BC-1", 2, 1, 1000)
    other = add_recording(db, "BC-2", 1, 1, 10)
    assert ids(db, officer_only="olly") == []  # assigned to nobody: nobody's
    pq.assign(db, "BC-1", "ben", T0 + 500 * S)
    pq.assign(db, "BC-1", "olly", T0 - 10 * S)  # recorded later, for earlier: ends where ben's begins
    pq.assign(db, "BC-2", "olly", T0)
    assert ids(db, officer_only="olly") == [early, other]
    assert ids(db, officer_only="ben") == [late]
    assert ids(db, officer="olly", officer_only="ben") == []
    assert pq.officer_at(db, "BC-1", T0 + 499 * S) == "olly" and pq.officer_at(db, "BC-1", T0 + 500 * S) == "ben"
    pq.assign(db, "BC-1", "sam", T0 + 2000 * S)
    assert ids(db, officer_only="ben") == [late] and pq.officer_at(db, "BC-1", T0 + 3000 * S) == "sam"
    spans = [(a["name"], a["from_ns"], a["until_ns"]) for a in pq.assignments(db, "BC-1")]
    assert spans == [("olly", T0 - 10 * S, T0 + 500 * S), ("ben", T0 + 500 * S, T0 + 2000 * S),
                     ("sam", T0 + 2000 * S, None)]


def test_paging_and_sorting(db) -> None:
    made = [add_recording(db, "BC-3", 1 + 2 * i, 1 + i % 2, 10 * i) for i in range(7)]
    rows, total = q.list_recordings(db, q.Filters(per_page=3, page=3, descending=False))
    assert total == 7 and [r["recording_id"] for r in rows] == made[6:]
    rows, _ = q.list_recordings(db, q.Filters(per_page=3, page=1))
    assert [r["recording_id"] for r in rows] == made[::-1][:3]
    rows, _ = q.list_recordings(db, q.Filters(per_page=7, sort="segments"))
    assert [r["segments"] for r in rows] == [2, 2, 2, 1, 1, 1, 1]
    assert q.list_recordings(db, q.Filters(page=99))[0] == []


def test_the_index_catches_up_only_with_segments_it_has_not_seen(db) -> None:
    add_recording(db, "BC-4", 1, 2, 0)
    assert q.unindexed_segments(db, 0, 10) == []
    db.execute("INSERT INTO segments(serial, sequence, recording_id, segment_index, key_id, prev_sha256,"
               " manifest_sha256, media_sha256, media_size, first_utc_ns, last_utc_ns, stored_ns, receipt,"
               " receipt_sig) VALUES('BC-4', 3, 'BC-4-0000000001', 2, 'k', 'p', 'm', 'h', 5, 0, 0, ?, '{}', '')",
               (T0 + 5 * S,))
    todo = q.unindexed_segments(db, q.indexed_up_to(db) - 300 * S, 10)
    assert [(r["serial"], r["sequence"]) for r in todo] == [("BC-4", 3)]
    q.add_segment(db, todo[0], 1, True)
    row = q.recording(db, "BC-4-0000000001")
    assert (row["segments"], row["last_seq"], row["bytes"], row["markers"], row["recovered"]) == (3, 3, 2005, 1, 1)
