"""The audit page of one recording: every entry of the backend's hash-chained trail about it or its
segments (ingest, views, plays, downloads, checks, exports), with each entry's signature checked and
the whole trail's chain verified."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import anchor
from ..audit import verify_lines
from ..data import review as q
from .common import actor, backend_of, render
from .recordings import page, recording_for


@page
def recording_audit(request: Request, s: Any) -> Response:
    row = recording_for(request, s, "recording.audit")
    b = backend_of(request)
    rid = row["recording_id"]
    targets = [f"recording:{rid}"] + [f"segment:{row['serial']}/{n:010d}"
                                       for n in range(row["first_seq"], row["last_seq"] + 1)]
    b.trail.record(actor(s), "view", f"audit:recording:{rid}")
    rows = q.trail_for(b.db, targets)
    lines = [{"entry": r["entry"], "sig": r["sig"]} for r in rows]
    excerpt = verify_lines(lines, b.signer.public_key_pem(), complete=False)
    chain = anchor.verify_trail(b)
    entries = []
    for r in rows:
        e = json.loads(r["entry"])
        entries.append({"seq": e["seq"], "utc": e["utc"], "actor": e["actor"], "role": e["role"],
                        "action": e["action"], "target": e["target"], "data": e.get("data") or {}})
    doc = {"recording_id": rid, "entries": entries,
           "signatures_ok": excerpt.ok, "signature_errors": excerpt.errors[:20],
           "trail_ok": chain.ok, "trail_entries": chain.entries, "trail_errors": chain.errors[:20]}
    if request.query_params.get("format") == "json":
        return JSONResponse(doc)
    return render(request, "audit.html", session=s, a=doc, r={"recording_id": rid})


PAGE = 100


@page
def global_audit(request: Request, s: Any) -> Response:
    """The whole trail for auditors, newest first, 100 a page, with the chain's verification status."""
    from .. import permissions
    from ..errors import ApiError

    permissions.require(s.name, s.role, "audit.view")
    b = backend_of(request)
    before_raw = request.query_params.get("before", "")
    if before_raw and not before_raw.isdigit():
        raise ApiError(400, "bad_request", "before must be an entry's seq (a whole number)")
    before = int(before_raw) if before_raw else None
    b.trail.record(actor(s), "view", "audit")
    rows = q.trail_page(b.db, before, PAGE)
    chain = anchor.verify_trail(b)
    entries = []
    for r in rows:
        e = json.loads(r["entry"])
        entries.append({"seq": e["seq"], "utc": e["utc"], "actor": e["actor"], "role": e["role"],
                        "action": e["action"], "target": e["target"], "data": e.get("data") or {}})
    doc = {"entries": entries, "trail_ok": chain.ok, "trail_entries": chain.entries,
           "trail_errors": chain.errors[:20], "checkpoints": chain.checkpoints,
           "older": entries[-1]["seq"] if len(entries) == PAGE else None}
    if request.query_params.get("format") == "json":
        return JSONResponse(doc)
    return render(request, "audit_all.html", session=s, a=doc)
