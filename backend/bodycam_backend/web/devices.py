"""Devices: enrolled cameras, last upload, last clock offset, open gaps, wearer, revoked state; revoke
from the page (admin only, after a confirmation page, CSRF-checked and audited)."""

from __future__ import annotations

import logging

from bodycam.clock import iso_utc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .. import enrol as enrolmod
from .. import permissions, review
from ..accounts import WebSession
from ..data import devices as q
from ..errors import ApiError
from .common import actor, backend_of, check_csrf, form_post, render
from .recordings import page

log = logging.getLogger("bodycam.backend.web")


@page
def listing(request: Request, s: WebSession) -> Response:
    permissions.require(s.name, s.role, "devices.view")
    b = backend_of(request)
    docs = []
    for r in q.overview(b.db):
        docs.append({
            "serial": r["serial"], "status": r["status"], "officer": r["officer"],
            "enrolled_utc": iso_utc(r["enrolled_ns"]) if r["enrolled_ns"] else None,
            "revoked_utc": iso_utc(r["revoked_ns"]) if r["revoked_ns"] else None,
            "last_upload_utc": iso_utc(r["last_upload_ns"]) if r["last_upload_ns"] else None,
            "open_gaps": r["open_gaps"], "clock_offset": review.clock_offset(b, r["serial"]),
        })
    b.trail.record(actor(s), "list", "devices")
    if request.query_params.get("format") == "json":
        return JSONResponse({"devices": docs})
    return render(request, "devices.html", session=s, devices=docs,
                  may_revoke=permissions.allowed(s.role, "devices.manage"))


def _device(request: Request, s: WebSession):  # noqa: ANN202
    permissions.require(s.name, s.role, "devices.manage")
    row = q.get(backend_of(request).db, request.path_params["serial"])
    if row is None:
        raise ApiError(404, "not_found", f"no device {request.path_params['serial'][:40]!r}")
    return row


@form_post
def revoke(request: Request, s: WebSession, form: FormData) -> Response:
    """GET: the confirmation page; POST (with the CSRF token and confirm=yes): revoke."""
    row = _device(request, s)
    if request.method == "GET":
        return render(request, "revoke.html", session=s, serial=row["serial"], device_status=row["status"])
    check_csrf(request, s, form, "the devices page")
    if form.get("confirm") != "yes":
        raise ApiError(400, "bad_request", "tick the box to confirm the revocation")
    b = backend_of(request)
    changed = enrolmod.revoke(b.db, row["serial"])
    b.trail.record(actor(s), "revoke", f"device:{row['serial']}", changed=changed, via="review page")
    log.warning("device revoked", extra={"event": "revoke", "data": {"device": row["serial"], "by": s.name}})
    return RedirectResponse("/devices", status_code=303)
