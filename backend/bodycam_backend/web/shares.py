"""Share links: a supervisor or admin gives someone without an account (a prosecutor) a link to one
recording or to a case, view-only (play and both integrity checks; no download, no list beyond the
case), until it expires or is revoked. Every use of a link is audited as ``share:<id>``, a refused use
too. A case link shows the case's recordings at the time of use."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from bodycam.clock import iso_utc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .. import permissions, review
from ..audit import Actor
from ..data import retention as cq
from ..data import review as rq
from ..data import shares as q
from ..db import now_ns
from ..errors import ApiError
from .common import actor, address, backend_of, check_csrf, form_post, refused, render
from .recordings import recording_for, segment_doc, send_certificate, send_part, summary

MAX_DAYS = 90


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _checked(request: Request, s: Any, form: FormData) -> None:
    permissions.require(s.name, s.role, "share.manage")
    check_csrf(request, s, form, "the page")


def _days(form: Any) -> float:
    try:
        days = float(str(form.get("days", "")))
    except ValueError:
        days = 0
    if not 0 < days <= MAX_DAYS:
        raise ApiError(400, "bad_request", f"days must be a number above 0 and at most {MAX_DAYS}")
    return days


@form_post
def create(request: Request, s: Any, form: FormData) -> Response:
    """POST /recordings/{id}/shares or /cases/{id}/shares: a new link, shown once."""
    b = backend_of(request)
    _checked(request, s, form)
    if "recording_id" in request.path_params:
        rid, case_id = recording_for(request, s, "share.manage")["recording_id"], None
        target, back = f"recording:{rid}", f"/recordings/{rid}"
    else:
        c = cq.case(b.db, request.path_params["case_id"])
        if c is None:
            raise ApiError(404, "not_found", "no such case")
        rid, case_id = None, c["id"]
        target, back = f"case:{case_id}", f"/cases/{case_id}"
    days = _days(form)
    note = str(form.get("note", ""))[:200]
    token = secrets.token_urlsafe(32)
    public_id = secrets.token_hex(6)
    t = now_ns()
    expires = t + int(days * 86400e9)
    q.add(b.db, public_id, _sha(token), rid, case_id, s.name, t, expires, note)
    b.trail.record(actor(s), "share", target, share=public_id, expires_utc=iso_utc(expires), note=note)
    link = str(request.base_url).rstrip("/") + f"/s/{token}"
    return render(request, "share_created.html", session=s, link=link, expires_utc=iso_utc(expires),
                  what=target.replace(":", " ", 1), back=back, public_id=public_id)


@form_post
def revoke(request: Request, s: Any, form: FormData) -> Response:
    b = backend_of(request)
    _checked(request, s, form)
    share = q.get(b.db, request.path_params["public_id"])
    if share is None:
        raise ApiError(404, "not_found", "no such share link")
    changed = q.revoke(b.db, share["public_id"], s.name, now_ns())
    target = f"case:{share['case_id']}" if share["case_id"] else f"recording:{share['recording_id']}"
    b.trail.record(actor(s), "share_revoke", target, share=share["public_id"], changed=changed)
    back = f"/cases/{share['case_id']}" if share["case_id"] else f"/recordings/{share['recording_id']}"
    return RedirectResponse(back, status_code=303)


def listed(rows: list[Any]) -> list[dict[str, Any]]:
    t = now_ns()
    return [{"id": r["public_id"], "by": r["created_by"], "created_utc": iso_utc(r["created_ns"]),
             "expires_utc": iso_utc(r["expires_ns"]), "note": r["note"],
             "state": "revoked" if r["revoked_ns"] else ("expired" if r["expires_ns"] <= t else "active")}
            for r in rows]


def shares_of(b: Any, recording_id: str) -> list[dict[str, Any]]:
    return listed(q.of_recording(b.db, recording_id))


def shares_of_case(b: Any, case_id: str) -> list[dict[str, Any]]:
    return listed(q.of_case(b.db, case_id))


def _share(request: Request) -> tuple[Any, Actor]:
    """(share row, actor) for a live link; 410 with the reason otherwise (audited)."""
    b = backend_of(request)
    token = request.path_params["token"]
    share = q.by_token(b.db, _sha(token)) if len(token) < 100 else None
    if share is None:
        raise ApiError(404, "not_found", "no such share link")
    who = Actor(f"share:{share['public_id']}", "share")
    target = f"case:{share['case_id']}" if share["case_id"] else f"recording:{share['recording_id']}"
    reason = ("it was revoked" if share["revoked_ns"] else
              "it expired" if share["expires_ns"] <= now_ns() else None)
    if reason:
        b.trail.record(who, "share_refused", target, reason=reason, address=address(request))
        raise ApiError(410, "gone", f"this share link can no longer be used: {reason} "
                                    f"({iso_utc(share['revoked_ns'] or share['expires_ns'])})")
    return share, who


def _recordings(b: Any, share: Any) -> list[str]:
    if share["case_id"]:
        return cq.recordings_of_case(b.db, share["case_id"])
    return [share["recording_id"]]


def _recording(request: Request) -> tuple[Any, Any, Actor]:
    """(share, recording row, actor) when the link covers the recording in the path."""
    share, who = _share(request)
    b = backend_of(request)
    rid = request.path_params["recording_id"]
    row = rq.recording(b.db, rid) if rid in _recordings(b, share) else None
    if row is None:
        raise ApiError(404, "not_found", "this link does not cover that recording")
    return share, row, who


def landing(request: Request) -> Response:
    """/s/{token}: the recording itself, or the case's list of recordings."""
    try:
        share, who = _share(request)
    except ApiError as e:
        return refused(request, e, None)
    b = backend_of(request)
    token = request.path_params["token"]
    if not share["case_id"]:
        return RedirectResponse(f"/s/{token}/r/{share['recording_id']}", status_code=303)
    c = cq.case(b.db, share["case_id"])
    rows = [r for r in (rq.recording(b.db, rid) for rid in _recordings(b, share)) if r is not None]
    b.trail.record(who, "view", f"case:{share['case_id']}", address=address(request))
    return render(request, "shared_case.html", session=None, c=c, recordings=[summary(r) for r in rows],
                  token=token, shared_until=iso_utc(share["expires_ns"]))


def view(request: Request) -> Response:
    try:
        share, row, who = _recording(request)
    except ApiError as e:
        return refused(request, e, None)
    b = backend_of(request)
    rid = row["recording_id"]
    prefix = f"/s/{request.path_params['token']}/r/{rid}"
    segs = [segment_doc(b, prefix, seg) for seg in rq.segments_of(b.db, rid)]
    b.trail.record(who, "view", f"recording:{rid}", address=address(request))
    doc = {**summary(row), "segment_list": segs, "previous_manifest_url": None, "may_play": True,
           "may_download": False, "integrity_url": f"{prefix}/integrity",
           "shared_until": iso_utc(share["expires_ns"]),
           "shared_case": f"/s/{request.path_params['token']}" if share["case_id"] else None}
    return render(request, "recording.html", session=None, r=doc, data=doc, shared=True)


def part(request: Request) -> Response:
    _, row, who = _recording(request)
    name = request.path_params["part"]
    if name not in ("media", "manifest", "signature"):
        raise ApiError(404, "not_found", f"no part {name[:20]!r}; use media, manifest or signature")
    return send_part(backend_of(request), row, request.path_params["sequence"], name, who,
                     previous_ok=False, download=False)


def certificate(request: Request) -> Response:
    _, row, _ = _recording(request)
    return send_certificate(backend_of(request), row, request.path_params["key_id"])


def integrity(request: Request) -> Response:
    _, row, who = _recording(request)
    b = backend_of(request)
    doc = review.integrity(b, row["recording_id"])
    b.trail.record(who, "check", f"recording:{row['recording_id']}", ok=doc["ok"])
    return JSONResponse(doc)
