"""A recording's categories, retention, cases and notes: the forms on its page (each CSRF-checked and
audited); the rules are in ``bodycam_backend.retention``."""

from __future__ import annotations

import re
from typing import Any

from bodycam.clock import iso_utc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import retention
from ..data import retention as q
from ..db import now_ns
from ..errors import ApiError
from .common import actor, backend_of, check_csrf, form_post
from .recordings import _when, recording_for

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def context(b: Any, row: Any) -> dict[str, Any]:
    """What the recording page shows about retention, cases and notes."""
    return {**retention.status(b, row["recording_id"], row["last_utc_ns"]),
            "all_categories": [{"name": c["name"], "days": c["retention_days"]} for c in q.categories(b.db)],
            "notes": [{"author": n["author"], "utc": iso_utc(n["created_ns"]), "text": n["text"]}
                      for n in q.notes_of(b.db, row["recording_id"])]}


def _recording(request: Request, s: Any, form: FormData, action: str) -> Any:
    row = recording_for(request, s, action)
    check_csrf(request, s, form, "the recording")
    return row


def _back(row: Any) -> Response:
    return RedirectResponse(f"/recordings/{row['recording_id']}#retention", status_code=303)


@form_post
def categorise(request: Request, s: Any, form: FormData) -> Response:
    row = _recording(request, s, form, "recording.categorise")
    retention.categorise(backend_of(request), row, str(form.get("category", "")), actor(s))
    return _back(row)


@form_post
def extend(request: Request, s: Any, form: FormData) -> Response:
    row = _recording(request, s, form, "retention.extend")
    until = _when(str(form.get("until", "")).strip(), "until", end=True)
    if until is None:
        raise ApiError(400, "bad_request", "give the new date to keep it until (YYYY-MM-DD, UTC)")
    retention.extend(backend_of(request), row, until, actor(s))
    return _back(row)


@form_post
def add_case(request: Request, s: Any, form: FormData) -> Response:
    """Add the recording to a case (creating the case if it is new); an open case holds it."""
    row = _recording(request, s, form, "recording.categorise")
    case_id = str(form.get("case", "")).strip()
    if not _CASE_ID.match(case_id):
        raise ApiError(400, "bad_request", "a case reference is 1 to 64 letters, digits and _ . -")
    b = backend_of(request)
    t = now_ns()
    existing = q.case(b.db, case_id)
    if existing is None:
        q.add_case(b.db, case_id, str(form.get("title", "")).strip()[:200] or case_id, s.name, t)
        b.trail.record(actor(s), "case_create", f"case:{case_id}")
    elif not existing["open"]:
        raise ApiError(400, "bad_request", f"case {case_id} is closed")
    q.add_to_case(b.db, case_id, row["recording_id"], s.name, t)
    b.trail.record(actor(s), "case_add", f"recording:{row['recording_id']}", case=case_id)
    return _back(row)


@form_post
def close_case(request: Request, s: Any, form: FormData) -> Response:
    row = _recording(request, s, form, "retention.extend")
    case_id = request.path_params["case_id"]
    b = backend_of(request)
    if q.close_case(b.db, case_id, now_ns()):
        b.trail.record(actor(s), "case_close", f"case:{case_id}", from_recording=row["recording_id"])
    return _back(row)


@form_post
def add_note(request: Request, s: Any, form: FormData) -> Response:
    row = _recording(request, s, form, "recording.categorise")
    text = str(form.get("text", "")).strip()
    if not 0 < len(text) <= 4000:
        raise ApiError(400, "bad_request", "a note is 1 to 4000 characters")
    b = backend_of(request)
    q.add_note(b.db, row["recording_id"], s.name, now_ns(), text)
    b.trail.record(actor(s), "note", f"recording:{row['recording_id']}", text=text)
    return _back(row)
