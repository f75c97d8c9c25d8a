"""Retention: how long a recording is kept, extending it, and the job that deletes what has expired.

Rules (docs/review.md): a recording is kept for the longest retention among its categories (an
uncategorised recording for the Uncategorised default, 31 days as the Met uses), counted from its end;
a promise once made is never shortened (adding a category or an extension only raises it, on S3 the
Object Lock retain-until date with it); a recording in an open case is never deleted. The job deletes
only recordings past their promise and not held, from stores that allow it, each deletion written to the
audit trail before the objects go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bodycam.clock import iso_utc

from .audit import Actor
from .context import Backend
from .data import retention as q
from .data import review as rq
from .data import store_versions
from .db import now_ns
from .errors import ApiError
from .store import segment_key

log = logging.getLogger("bodycam.backend.retention")
DAY_NS = 86_400 * 1_000_000_000
PARTS = ("mp4", "json", "sig")


def keep_until(db: Any, last_utc_ns: int | None, category_days: int | None, promised_ns: int | None) -> int:
    days = category_days if category_days is not None else q.default_days(db)
    return max((last_utc_ns or 0) + days * DAY_NS, promised_ns or 0)


def status(b: Backend, recording_id: str, last_utc_ns: int | None) -> dict[str, Any]:
    cats = q.categories_of(b.db, recording_id)
    p = q.promise(b.db, recording_id)
    days = max((c["retention_days"] for c in cats), default=None)
    until = keep_until(b.db, last_utc_ns, days, p["keep_until_ns"] if p else None)
    held = [c["id"] for c in q.cases_of(b.db, recording_id) if c["open"]]
    return {"keep_until_utc": iso_utc(until), "keep_until_ns": until,
            "categories": [c["name"] for c in cats] or [q.UNCATEGORISED],
            "extended_by": p["set_by"] if p else None, "held_by_cases": held,
            "cases": [{"id": c["id"], "title": c["title"], "open": bool(c["open"])}
                      for c in q.cases_of(b.db, recording_id)]}


def _extend_store(b: Backend, serial: str, lo: int, hi: int, until_ns: int) -> list[str]:
    problems = []
    for seq in range(lo, hi + 1):
        for ext in PARTS:
            key = segment_key(serial, seq, ext)
            problem = b.store.extend_retention(key, store_versions.version(b.db, key), until_ns)
            if problem:
                problems.append(problem)
    return problems


def categorise(b: Backend, row: Any, name: str, who: Actor) -> dict[str, Any]:
    cat = q.category(b.db, name)
    if cat is None:
        raise ApiError(400, "bad_request", f"no category {name[:60]!r}; an admin adds one with "
                                           "'bodycam backend category add'")
    until = keep_until(b.db, row["last_utc_ns"], cat["retention_days"], None)
    q.categorise(b.db, row["recording_id"], name, who.name, now_ns(), until)
    st = status(b, row["recording_id"], row["last_utc_ns"])
    problems = _extend_store(b, row["serial"], row["first_seq"], row["last_seq"], st["keep_until_ns"])
    b.trail.record(who, "categorise", f"recording:{row['recording_id']}", category=name,
                   keep_until_utc=st["keep_until_utc"], store_problems=problems[:5])
    return {**st, "store_problems": problems}


def extend(b: Backend, row: Any, until_ns: int, who: Actor) -> dict[str, Any]:
    current = status(b, row["recording_id"], row["last_utc_ns"])
    if until_ns <= current["keep_until_ns"]:
        raise ApiError(400, "bad_request", "retention can only be extended: it is already promised until "
                                           f"{current['keep_until_utc']}; give a later date")
    q.extend(b.db, row["recording_id"], until_ns, who.name, now_ns())
    problems = _extend_store(b, row["serial"], row["first_seq"], row["last_seq"], until_ns)
    b.trail.record(who, "retention_extend", f"recording:{row['recording_id']}", keep_until_utc=iso_utc(until_ns),
                   was_utc=current["keep_until_utc"], store_problems=problems[:5])
    return {**status(b, row["recording_id"], row["last_utc_ns"]), "store_problems": problems}


@dataclass
class Outcome:
    recording_id: str
    action: str  # deleted, would_delete, kept
    keep_until_utc: str
    reason: str = ""

    def line(self) -> str:
        verb = {"deleted": "deleted", "would_delete": "would delete", "kept": "kept"}[self.action]
        return f"{verb} {self.recording_id} (kept until {self.keep_until_utc})" + (f": {self.reason}" if self.reason
                                                                                   else "")


def _store_lock(b: Backend, serial: str, recording_id: str, t: int) -> int | None:
    """The latest lock past ``t`` the store holds on the recording's media, if any."""
    latest = None
    for s in rq.segments_of(b.db, recording_id):
        key = segment_key(serial, s["sequence"], "mp4")
        until = b.store.locked_until(key, store_versions.version(b.db, key))
        if until is not None and until > t and (latest is None or until > latest):
            latest = until
    return latest


def run(b: Backend, *, who: Actor, dry_run: bool, now: int | None = None) -> list[Outcome]:
    """Delete every recording past its promise and not held by an open case; report held ones too."""
    t = now_ns() if now is None else now
    out: list[Outcome] = []
    for r in q.candidates(b.db):
        until = keep_until(b.db, r["last_utc_ns"], r["category_days"], r["keep_until_ns"])
        if until > t:
            continue
        rid = r["recording_id"]
        if r["held"]:
            cases = [c["id"] for c in q.cases_of(b.db, rid) if c["open"]]
            out.append(Outcome(rid, "kept", iso_utc(until), f"held by open case {', '.join(cases)}"))
            continue
        locked = _store_lock(b, r["serial"], rid, t)
        if locked is not None:
            # Object Lock still holds it (the segments were stored after the recording ended, and locked from
            # then): kept until a later run, without asking the store to delete what it must refuse.
            out.append(Outcome(rid, "kept", iso_utc(until),
                               f"the store's Object Lock holds it until {iso_utc(locked)}"))
            continue
        if dry_run:
            out.append(Outcome(rid, "would_delete", iso_utc(until)))
            continue
        b.trail.record(who, "delete", f"recording:{rid}", keep_until_utc=iso_utc(until), reason="retention expired",
                       sequences=[r["first_seq"], r["last_seq"]])
        problems: list[str] = []
        for s in rq.segments_of(b.db, rid):  # stops at the first refusal: a locked store keeps it whole
            for ext in PARTS:
                key = segment_key(r["serial"], s["sequence"], ext)
                problem = b.store.expire(key, store_versions.version(b.db, key))
                if problem:
                    problems.append(problem)
                    break
            if problems:
                break
        if problems:
            b.trail.record(who, "delete_refused", f"recording:{rid}", problems=problems[:5])
            out.append(Outcome(rid, "kept", iso_utc(until), f"the store refused: {problems[0]}"))
            continue
        q.mark_deleted(b.db, rid, t, until, who.name)
        rq.drop_recording(b.db, rid)
        log.info("recording deleted by retention", extra={"event": "retention_delete",
                                                          "data": {"recording_id": rid, "keep_until": iso_utc(until)}})
        out.append(Outcome(rid, "deleted", iso_utc(until)))
    return out
