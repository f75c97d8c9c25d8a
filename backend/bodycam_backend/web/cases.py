"""A case: its recordings (as far as this person may see them), and its export as one zip holding each
recording's evidence bundle (`bodycam verify` checks each offline)."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bodycam.clock import iso_utc
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .. import permissions
from ..data import retention as q
from ..data import review as rq
from ..errors import ApiError, BackendError
from ..export import export_recording
from .common import actor, backend_of, data_session
from .recordings import page, render, summary


def _case(request: Request, s: Any, action: str) -> tuple[Any, list[Any]]:
    permissions.require(s.name, s.role, action)
    b = backend_of(request)
    c = q.case(b.db, request.path_params["case_id"])
    if c is None:
        raise ApiError(404, "not_found", f"no case {request.path_params['case_id'][:64]!r}")
    rows = [r for r in (rq.recording(b.db, rid) for rid in q.recordings_of_case(b.db, c["id"])) if r is not None]
    visible = [r for r in rows if permissions.may_see(s.name, s.role, r["officer"])]
    return c, visible


@page
def detail(request: Request, s: Any) -> Response:
    c, rows = _case(request, s, "recording.view")
    b = backend_of(request)
    b.trail.record(actor(s), "view", f"case:{c['id']}", recordings=len(rows))
    doc = {"id": c["id"], "title": c["title"], "open": bool(c["open"]), "created_by": c["created_by"],
           "created_utc": iso_utc(c["created_ns"]), "closed_utc": iso_utc(c["closed_ns"]) if c["closed_ns"] else None,
           "recordings": [summary(r) for r in rows],
           "may_export": permissions.allowed(s.role, "recording.download")}
    if permissions.allowed(s.role, "share.manage"):
        from .shares import shares_of_case

        doc["shares"] = shares_of_case(b, c["id"])
    if request.query_params.get("format") == "json":
        return JSONResponse(doc)
    return render(request, "case.html", session=s, c=doc)


def export_zip(request: Request) -> Response:
    s = data_session(request)
    c, rows = _case(request, s, "recording.download")
    if not rows:
        raise ApiError(404, "not_found", f"case {c['id']} holds no recording to export")
    b = backend_of(request)
    b.trail.record(actor(s), "export", f"case:{c['id']}", recordings=[r["recording_id"] for r in rows])
    tmp = Path(tempfile.mkdtemp(prefix="bodycam-case-"))
    try:
        archive = tmp / f"{c['id']}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
            for r in rows:
                bundle = tmp / r["recording_id"]
                try:
                    export_recording(b, r["recording_id"], bundle, actor=actor(s))
                except BackendError as e:
                    raise ApiError(409, "conflict", f"{r['recording_id']}: the bundle could not be made: {e}") from None
                for p in sorted(bundle.rglob("*")):
                    if p.is_file():
                        z.write(p, f"{c['id']}/{r['recording_id']}/{p.relative_to(bundle)}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(archive, media_type="application/zip", filename=f"case-{c['id']}.zip",
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
