"""The recordings index the review pages list and filter, and the queries over it.

``review_recordings`` holds one row per recording, kept up to date from ``segments`` by
``bodycam_backend.review.index`` (facts from the manifests, such as markers and recovery, are read once
per segment, never at list time). Flags, gaps and the officer a camera was assigned to are joined at
query time, so a gap that closes or an assignment made later shows at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Correlated parts shared by the filters and the columns.
_OFFICER = (
    "(SELECT a.name FROM device_assignments a WHERE a.serial = r.serial AND a.from_ns <= r.first_utc_ns"
    " AND (a.until_ns IS NULL OR a.until_ns > r.first_utc_ns) ORDER BY a.from_ns DESC LIMIT 1)"
)
_FLAGGED = "EXISTS (SELECT 1 FROM flags f WHERE f.serial = r.serial AND f.sequence BETWEEN r.first_seq AND r.last_seq)"
_GAPS = (
    "EXISTS (SELECT 1 FROM gaps g WHERE g.serial = r.serial AND g.closed_ns IS NULL"
    " AND g.sequence BETWEEN r.first_seq AND r.last_seq + 1)"
)
# The recording a gap or flag at sequence X.sequence of camera X.serial falls in or just after: the one
# starting last at or before it (one index probe per gap or flag; the few candidates are then checked
# exactly with _GAPS/_FLAGGED). Gaps and flags are few; recordings are many.
_AROUND = ("(SELECT r2.recording_id FROM review_recordings r2 WHERE r2.serial = x.serial"
           " AND r2.first_seq <= x.sequence ORDER BY r2.first_seq DESC LIMIT 1)")
_GAP_CANDIDATES = f"r.recording_id IN (SELECT {_AROUND} FROM gaps x WHERE x.closed_ns IS NULL)"
_FLAG_CANDIDATES = f"r.recording_id IN (SELECT {_AROUND} FROM flags x WHERE x.sequence IS NOT NULL)"
# A person's recordings: cameras assigned to them, then the assignment covering the start. Assignments of
# one camera never overlap (data.people.assign), so this is exactly _OFFICER = name.
_WORN_BY = (
    "r.serial IN (SELECT a.serial FROM device_assignments a WHERE a.name = ?) AND EXISTS (SELECT 1 FROM"
    " device_assignments a WHERE a.name = ? AND a.serial = r.serial AND a.from_ns <= r.first_utc_ns"
    " AND (a.until_ns IS NULL OR a.until_ns > r.first_utc_ns))"
)
SORTS = {
    "time": "r.first_utc_ns",
    "device": "r.serial",
    "segments": "r.segments",
    "size": "r.bytes",
}


@dataclass(frozen=True)
class Filters:
    """What the list shows; ``officer_only`` is the caller's scope (an officer: their own), not a choice."""

    officer: str = ""
    device: str = ""
    since_ns: int | None = None
    until_ns: int | None = None
    has_gaps: bool = False
    flagged: bool = False
    recovered: bool = False
    has_markers: bool = False
    category: str = ""
    case: str = ""
    officer_only: str | None = None
    sort: str = "time"
    descending: bool = True
    page: int = 1
    per_page: int = 50


def _where(f: Filters) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for name in (f.officer, f.officer_only):
        if name:
            where.append(_WORN_BY)
            args += [name, name]
    if f.device:
        where.append("r.serial = ?")
        args.append(f.device)
    if f.since_ns is not None:
        where.append("r.first_utc_ns >= ?")
        args.append(f.since_ns)
    if f.until_ns is not None:
        where.append("r.first_utc_ns < ?")
        args.append(f.until_ns)
    if f.has_gaps:
        where.append(f"{_GAP_CANDIDATES} AND {_GAPS}")
    if f.flagged:
        where.append(f"{_FLAG_CANDIDATES} AND {_FLAGGED}")
    if f.recovered:
        where.append("r.recovered > 0")
    if f.has_markers:
        where.append("r.markers > 0")
    if f.category == "Uncategorised":
        where.append("r.recording_id NOT IN (SELECT rc.recording_id FROM recording_categories rc)")
    elif f.category:
        where.append("r.recording_id IN (SELECT rc.recording_id FROM recording_categories rc WHERE rc.category = ?)")
        args.append(f.category)
    if f.case:
        where.append("r.recording_id IN (SELECT cr.recording_id FROM case_recordings cr WHERE cr.case_id = ?)")
        args.append(f.case)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def list_recordings(db: Any, f: Filters) -> tuple[list[Any], int]:
    """One page of recordings and the total matching."""
    where, args = _where(f)
    order = SORTS.get(f.sort, SORTS["time"]) + (" DESC" if f.descending else " ASC")
    direction = " DESC" if f.descending else " ASC"
    # the page's ids first (the skipped rows cost an index step each, nothing more), then their columns
    rows = db.query(
        f"SELECT r.*, {_OFFICER} AS officer, {_FLAGGED} AS flagged, {_GAPS} AS has_gaps"
        f" FROM review_recordings r WHERE r.recording_id IN (SELECT r.recording_id FROM review_recordings r{where}"
        f" ORDER BY {order}, r.recording_id{direction} LIMIT ? OFFSET ?) ORDER BY {order}, r.recording_id{direction}",
        (*args, f.per_page, (max(f.page, 1) - 1) * f.per_page),
    )
    total = db.one(f"SELECT COUNT(*) FROM review_recordings r{where}", tuple(args))
    return rows, int(total[0]) if total else 0


def recording(db: Any, recording_id: str) -> Any:
    return db.one(
        f"SELECT r.*, {_OFFICER} AS officer, {_FLAGGED} AS flagged, {_GAPS} AS has_gaps"
        " FROM review_recordings r WHERE r.recording_id = ?",
        (recording_id,),
    )


def devices(db: Any) -> list[str]:
    return [r[0] for r in db.query("SELECT DISTINCT serial FROM review_recordings ORDER BY serial")]


# --- keeping the index up to date ---


def indexed_up_to(db: Any) -> int:
    row = db.one("SELECT MAX(stored_ns) FROM review_segments")
    return int(row[0]) if row and row[0] is not None else 0


def unindexed_segments(db: Any, since_ns: int, limit: int) -> list[Any]:
    """Stored segments not yet indexed, stored at or after ``since_ns`` (the caller leaves a margin for
    instances whose clocks differ and transactions that committed late)."""
    return db.query(
        "SELECT s.serial, s.sequence, s.recording_id, s.stored_ns FROM segments s"
        " LEFT JOIN review_segments i ON i.serial = s.serial AND i.sequence = s.sequence"
        " WHERE s.stored_ns >= ? AND i.serial IS NULL ORDER BY s.stored_ns LIMIT ?",
        (since_ns, limit),
    )


def add_segment(db: Any, seg: Any, markers: int, recovered: bool) -> None:
    """Index one segment and recompute its recording's row from the segments table, in one transaction."""
    rid = seg["recording_id"]
    with db.transaction() as c:
        c.execute(
            "INSERT INTO review_segments(serial, sequence, recording_id, stored_ns, markers, recovered)"
            " VALUES(?,?,?,?,?,?) ON CONFLICT(serial, sequence) DO NOTHING",
            (seg["serial"], seg["sequence"], rid, seg["stored_ns"], markers, int(recovered)),
        )
        agg = c.one(
            "SELECT s.serial, MIN(s.sequence), MAX(s.sequence), COUNT(*), MIN(s.first_utc_ns), MAX(s.last_utc_ns),"
            " SUM(s.media_size), COALESCE(SUM(i.markers), 0), COALESCE(SUM(i.recovered), 0)"
            " FROM segments s LEFT JOIN review_segments i ON i.serial = s.serial AND i.sequence = s.sequence"
            " WHERE s.recording_id = ? GROUP BY s.serial",
            (rid,),
        )
        c.execute(
            "INSERT INTO review_recordings(recording_id, serial, first_seq, last_seq, segments, first_utc_ns,"
            " last_utc_ns, bytes, markers, recovered) VALUES(?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(recording_id) DO UPDATE SET first_seq = excluded.first_seq,"
            " last_seq = excluded.last_seq, segments = excluded.segments, first_utc_ns = excluded.first_utc_ns,"
            " last_utc_ns = excluded.last_utc_ns, bytes = excluded.bytes, markers = excluded.markers,"
            " recovered = excluded.recovered",
            (rid, *(agg[i] for i in range(9))),
        )


def segments_of(db: Any, recording_id: str) -> list[Any]:
    return db.query("SELECT * FROM segments WHERE recording_id = ? ORDER BY sequence", (recording_id,))


def certificate(db: Any, key_id: str) -> Any:
    return db.one(
        "SELECT c.pem, c.serial, c.not_after_ns, d.status, d.revoked_ns FROM certificates c"
        " JOIN devices d ON d.serial = c.serial WHERE c.key_id = ?",
        (key_id,),
    )


def flags_of(db: Any, serial: str, lo: int, hi: int) -> list[Any]:
    return db.query(
        "SELECT * FROM flags WHERE serial = ? AND sequence BETWEEN ? AND ? ORDER BY id", (serial, lo, hi)
    )


def open_gaps_near(db: Any, serial: str, lo: int, hi: int) -> list[int]:
    return [
        r[0]
        for r in db.query(
            "SELECT sequence FROM gaps WHERE serial = ? AND closed_ns IS NULL AND sequence BETWEEN ? AND ?"
            " ORDER BY sequence",
            (serial, lo, hi + 1),
        )
    ]


def segment_before(db: Any, serial: str, sequence: int) -> Any:
    return db.one("SELECT * FROM segments WHERE serial = ? AND sequence = ?", (serial, sequence - 1))


def trail_for(db: Any, targets: list[str]) -> list[Any]:
    marks = ",".join("?" * len(targets))
    return db.query(f"SELECT seq, entry, sig FROM trail WHERE target IN ({marks}) ORDER BY seq", tuple(targets))



def last_device_event(db: Any, serial: str, event: str) -> Any:
    return db.one(
        "SELECT entry FROM device_audit WHERE serial = ? AND event = ? ORDER BY seq DESC LIMIT 1", (serial, event)
    )


def recording_start(db: Any, recording_id: str) -> int | None:
    row = db.one("SELECT MIN(first_utc_ns) FROM segments WHERE recording_id = ?", (recording_id,))
    return row[0] if row else None


def drop_recording(db: Any, recording_id: str) -> None:
    """The retention job deleted its objects: it leaves the list (its segments rows stay, write-once)."""
    db.execute("DELETE FROM segment_verdicts WHERE EXISTS (SELECT 1 FROM segments s WHERE s.recording_id = ?"
               " AND s.serial = segment_verdicts.serial AND s.sequence = segment_verdicts.sequence)", (recording_id,))
    db.execute("DELETE FROM review_recordings WHERE recording_id = ?", (recording_id,))


def trail_page(db: Any, before: int | None, limit: int) -> list[Any]:
    """The newest ``limit`` trail entries (before seq ``before``), newest first."""
    if before is None:
        return db.query("SELECT seq, entry, sig FROM trail ORDER BY seq DESC LIMIT ?", (limit,))
    return db.query("SELECT seq, entry, sig FROM trail WHERE seq < ? ORDER BY seq DESC LIMIT ?", (before, limit))
