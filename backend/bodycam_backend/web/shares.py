"""Share links: a supervisor or admin gives someone without an account (a prosecutor) a link that shows
one recording, view-only (play and both integrity checks; no download, no list), until it expires or
is revoked. Every use of the link is audited as ``share:<id>``; a refused use too."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from bodycam.clock import iso_utc
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .. import review
from ..audit import Actor
from ..data import review as rq
from ..data import shares as q
from ..db import now_ns
from ..errors import ApiError
from .common import actor, address, backend_of, page_session, refused, render, same_origin
from .recordings import recording_for, segment_doc, send_certificate, send_part, summary

MAX_DAYS = 90


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(request: Request) -> Response:
    s = page_session(request)
    form = await request.form()
    try:
        row = recording_for(request, s, "share.manage")
        if not same_origin(request) or not s.csrf_ok(str(form.get("csrf", ""))):
            raise ApiError(403, "forbidden", "missing or wrong CSRF token; open the recording again and retry")
        try:
            days = float(str(form.get("days", "")))
        except ValueError:
            days = 0
        if not 0 < days <= MAX_DAYS:
            raise ApiError(400, "bad_request", f"days must be a number above 0 and at most {MAX_DAYS}")
        note = str(form.get("note", ""))[:200]
    except ApiError as e:
        return refused(request, e, s)
    b = backend_of(request)
    token = secrets.token_urlsafe(32)
    public_id = secrets.token_hex(6)
    t = now_ns()
    expires = t + int(days * 86400e9)
    q.add(b.db, public_id, _sha(token), row["recording_id"], s.name, t, expires, note)
    b.trail.record(actor(s), "share", f"recording:{row['recording_id']}", share=public_id,
                   expires_utc=iso_utc(expires), note=note)
    link = str(request.base_url).rstrip("/") + f"/s/{token}"
    return render(request, "share_created.html", session=s, link=link, expires_utc=iso_utc(expires),
                  recording_id=row["recording_id"], public_id=public_id)


async def revoke(request: Request) -> Response:
    s = page_session(request)
    form = await request.form()
    try:
        row = recording_for(request, s, "share.manage")
        if not same_origin(request) or not s.csrf_ok(str(form.get("csrf", ""))):
            raise ApiError(403, "forbidden", "missing or wrong CSRF token; open the recording again and retry")
    except ApiError as e:
        return refused(request, e, s)
    b = backend_of(request)
    public_id = request.path_params["public_id"]
    changed = q.revoke(b.db, public_id, row["recording_id"], s.name, now_ns())
    b.trail.record(actor(s), "share_revoke", f"recording:{row['recording_id']}", share=public_id, changed=changed)
    return RedirectResponse(f"/recordings/{row['recording_id']}", status_code=303)


def shares_of(b: Any, recording_id: str) -> list[dict[str, Any]]:
    t = now_ns()
    return [{"id": r["public_id"], "by": r["created_by"], "created_utc": iso_utc(r["created_ns"]),
             "expires_utc": iso_utc(r["expires_ns"]), "note": r["note"],
             "state": "revoked" if r["revoked_ns"] else ("expired" if r["expires_ns"] <= t else "active")}
            for r in q.of_recording(b.db, recording_id)]


def _share(request: Request) -> tuple[Any, Any, Actor]:
    """(share row, recording row, actor) for a live link; 410 with the reason otherwise (audited)."""
    b = backend_of(request)
    token = request.path_params["token"]
    share = q.by_token(b.db, _sha(token)) if len(token) < 100 else None
    if share is None:
        raise ApiError(404, "not_found", "no such share link")
    who = Actor(f"share:{share['public_id']}", "share")
    t = now_ns()
    reason = ("it was revoked" if share["revoked_ns"] else
              "it expired" if share["expires_ns"] <= t else None)
    if reason:
        b.trail.record(who, "share_refused", f"recording:{share['recording_id']}", reason=reason,
                       address=address(request))
        raise ApiError(410, "gone", f"this share link can no longer be used: {reason} "
                                    f"({iso_utc(share['revoked_ns'] or share['expires_ns'])})")
    row = rq.recording(b.db, share["recording_id"])
    if row is None:
        raise ApiError(404, "not_found", "the shared recording is not here")
    return share, row, who


def view(request: Request) -> Response:
    try:
        share, row, who = _share(request)
    except ApiError as e:
        return refused(request, e, None)
    b = backend_of(request)
    rid = row["recording_id"]
    prefix = f"/s/{request.path_params['token']}"
    segs = [segment_doc(b, prefix, seg) for seg in rq.segments_of(b.db, rid)]
    b.trail.record(who, "view", f"recording:{rid}", address=address(request))
    doc = {**summary(row), "segment_list": segs, "previous_manifest_url": None, "may_play": True,
           "may_download": False, "integrity_url": f"{prefix}/integrity",
           "shared_until": iso_utc(share["expires_ns"])}
    return render(request, "recording.html", session=None, r=doc, data=doc, shared=True)


def part(request: Request) -> Response:
    _, row, who = _share(request)
    name = request.path_params["part"]
    if name not in ("media", "manifest", "signature"):
        raise ApiError(404, "not_found", f"no part {name[:20]!r}; use media, manifest or signature")
    return send_part(backend_of(request), row, request.path_params["sequence"], name, who,
                     previous_ok=False, download=False)


def certificate(request: Request) -> Response:
    _, row, _ = _share(request)
    return send_certificate(backend_of(request), row, request.path_params["key_id"])


def integrity(request: Request) -> Response:
    _, row, who = _share(request)
    b = backend_of(request)
    doc = review.integrity(b, row["recording_id"])
    b.trail.record(who, "check", f"recording:{row['recording_id']}", ok=doc["ok"])
    return JSONResponse(doc)



