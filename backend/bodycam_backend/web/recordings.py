"""Recordings: the list (find), one recording (play and check), and the bytes the player fetches.

Each view answers HTML, or JSON with ``?format=json`` (the same data, so the page and the API cannot
drift apart). Footage is served as stored, never re-encoded: the browser plays the fMP4 segments.
"""

from __future__ import annotations

import calendar
import logging
import time
from datetime import datetime
from functools import wraps
from typing import Any

import anyio
from bodycam.clock import iso_utc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from .. import permissions, pinned, review
from ..accounts import WebSession
from ..data import retention as retention_q
from ..data import review as q
from ..data import segments
from ..errors import ApiError
from ..store import segment_key
from .common import actor, as_page, backend_of, check_csrf, data_session, form_post, page_session, render

log = logging.getLogger("bodycam.backend.web")
PER_PAGE = 50
PARTS = {"media": ("mp4", "video/mp4"), "manifest": ("json", "application/json"),
         "signature": ("sig", "application/octet-stream")}


def page(view: Any) -> Any:
    """A page view: a refusal is an HTML page with the reason, not a JSON document."""

    @wraps(view)
    def run(request: Request) -> Response:
        return as_page(request, page_session(request), view)

    return run


def _utc(ns: int | None) -> str | None:
    return iso_utc(ns) if ns else None


def _when(value: str, name: str, *, end: bool = False) -> int | None:
    """A date (YYYY-MM-DD) or date and time (YYYY-MM-DDTHH:MM), UTC, as ns; ``end`` makes a bare date inclusive."""
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            t = datetime.strptime(value, fmt)
        except ValueError:
            continue
        secs = calendar.timegm(t.timetuple()) + (86400 if end and fmt == "%Y-%m-%d" else 0)
        return secs * 1_000_000_000
    raise ApiError(400, "bad_request", f"{name}={value[:40]!r}: give a UTC date as YYYY-MM-DD or YYYY-MM-DDTHH:MM")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "") in ("1", "on", "true", "yes")


def filters(request: Request, s: WebSession) -> q.Filters:
    p = request.query_params
    try:
        pg = max(1, int(p.get("page", "1")))
    except ValueError:
        raise ApiError(400, "bad_request", "page must be a whole number") from None
    sort = p.get("sort", "time")
    if sort not in q.SORTS:
        raise ApiError(400, "bad_request", f"sort must be one of {', '.join(q.SORTS)}")
    return q.Filters(
        officer=p.get("officer", "").strip(), device=p.get("device", "").strip(),
        since_ns=_when(p.get("from", "").strip(), "from"), until_ns=_when(p.get("to", "").strip(), "to", end=True),
        has_gaps=_flag(request, "gaps"), flagged=_flag(request, "flagged"), recovered=_flag(request, "recovered"),
        has_markers=_flag(request, "markers"),
        category=p.get("category", "").strip(), case=p.get("case", "").strip(),
        officer_only=s.name if permissions.own_only(s.role) else None,
        sort=sort, descending=p.get("order", "desc") != "asc", page=pg, per_page=PER_PAGE,
    )


def summary(r: Any) -> dict[str, Any]:
    return {
        "recording_id": r["recording_id"], "device_serial": r["serial"], "officer": r["officer"],
        "segments": r["segments"], "first_sequence": r["first_seq"], "last_sequence": r["last_seq"],
        "first_utc": _utc(r["first_utc_ns"]), "last_utc": _utc(r["last_utc_ns"]),
        "duration_s": round((r["last_utc_ns"] - r["first_utc_ns"]) / 1e9, 1)
        if r["first_utc_ns"] and r["last_utc_ns"] else None,
        "bytes": r["bytes"], "markers": r["markers"], "recovered": bool(r["recovered"]),
        "flagged": bool(r["flagged"]), "has_gaps": bool(r["has_gaps"]),
    }


@page
def listing(request: Request, s: WebSession) -> Response:
    started = time.perf_counter()
    permissions.require(s.name, s.role, "recordings.list")
    b = backend_of(request)
    f = filters(request, s)
    review.index(b)
    rows, total = q.list_recordings(b.db, f)
    docs = [summary(r) for r in rows]
    shown = {k: v for k, v in request.query_params.items() if k != "format"}
    b.trail.record(actor(s), "list", "recordings", filters=shown, total=total,
                   shown=[d["recording_id"] for d in docs])
    if request.query_params.get("format") == "json":
        r: Response = JSONResponse({"recordings": docs, "total": total, "page": f.page, "per_page": f.per_page})
    else:
        pages = max(1, -(-total // f.per_page))
        base = {k: v for k, v in shown.items() if k != "page"}
        r = render(request, "recordings.html", session=s, recordings=docs, total=total, page=f.page, pages=pages,
                   f=f, params=base, devices=q.devices(b.db), own_only=permissions.own_only(s.role),
                   categories=[c["name"] for c in retention_q.categories(b.db)])
    # the time this process spent (index catch-up, query, audit entry, rendering): scripts/bench review
    r.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return r


def recording_for(request: Request, s: WebSession, action: str) -> Any:
    """The recording in the path, if this person may do ``action`` on it (403/404 otherwise)."""
    permissions.require(s.name, s.role, action)
    b = backend_of(request)
    rid = request.path_params["recording_id"]
    row = q.recording(b.db, rid)
    if row is None:
        review.index(b)
        row = q.recording(b.db, rid)
    if row is None:
        from ..data import retention as rq

        gone = rq.deletion(b.db, rid)
        if gone is not None:
            raise ApiError(410, "gone", f"recording {rid} was deleted by the retention job on "
                                        f"{iso_utc(gone['deleted_ns'])} (kept until {iso_utc(gone['keep_until_ns'])})")
        raise ApiError(404, "not_found", f"no recording {rid[:80]!r}")
    if not permissions.may_see(s.name, s.role, row["officer"]):
        raise ApiError(403, "forbidden", f"{s.name} ({s.role}) may only open recordings made on a camera "
                       "assigned to them; this one is not")
    return row


def duration_of(manifest: dict[str, Any]) -> float | None:
    """docs/format.md section 3: ``last_frame.pts / 90000 + 1 / video.fps``; where the player puts the
    next segment (so a recording plays as one timeline whichever segment is fetched first)."""
    last, fps = manifest.get("last_frame") or {}, (manifest.get("video") or {}).get("fps")
    if not isinstance(last.get("pts"), int) or not fps:
        return None
    return last["pts"] / 90000 + 1 / fps


def segment_doc(b: Any, prefix: str, seg: Any) -> dict[str, Any]:
    """What the player needs of one segment; ``prefix`` is where its bytes are served from."""
    seq = seg["sequence"]
    base = f"{prefix}/segments/{seq}"
    doc: dict[str, Any] = {
        "sequence": seq, "media_sha256": seg["media_sha256"], "media_size": seg["media_size"],
        "manifest_sha256": seg["manifest_sha256"], "key_id": seg["key_id"],
        "first_utc": _utc(seg["first_utc_ns"]), "last_utc": _utc(seg["last_utc_ns"]),
        "media_url": f"{base}/media", "manifest_url": f"{base}/manifest", "signature_url": f"{base}/signature",
        "certificate_url": f"{prefix}/certificates/{seg['key_id']}", "ca_url": "/agency-ca.pem",
        "thumbnail_url": f"{base}/thumbnail.jpg" if prefix.startswith("/recordings/") else None,
    }
    try:
        m = review.manifest_of(b, seg["serial"], seq)
        doc.update({
            "first_utc_ns": (m.get("first_frame") or {}).get("utc_ns"),
            "fps": (m.get("video") or {}).get("fps"),
            "markers": m.get("markers") or [], "recovered": bool(m.get("recovered")),
            "end_reason": m.get("end_reason"), "frame_count": m.get("frame_count"),
            "duration_s": duration_of(m),
        })
    except Exception as e:  # noqa: BLE001 - a damaged manifest shows as a finding, not a crash
        doc.update({"manifest_error": str(e)[:200], "markers": []})
    return doc


@page
def detail(request: Request, s: WebSession) -> Response:
    row = recording_for(request, s, "recording.view")
    b = backend_of(request)
    rid = row["recording_id"]
    segs = [segment_doc(b, f"/recordings/{rid}", seg) for seg in q.segments_of(b.db, rid)]
    prev = None
    if not permissions.own_only(s.role) and row["first_seq"] > 1 and q.segment_before(b.db, row["serial"],
                                                                                      row["first_seq"]):
        prev = f"/recordings/{rid}/segments/{row['first_seq'] - 1}/manifest"
    b.trail.record(actor(s), "view", f"recording:{rid}")
    doc = {**summary(row), "segment_list": segs, "previous_manifest_url": prev,
           "may_play": permissions.allowed(s.role, "recording.play"),
           "may_download": permissions.allowed(s.role, "recording.download"),
           "integrity_url": f"/recordings/{rid}/integrity"}
    if permissions.allowed(s.role, "share.manage"):
        from .shares import shares_of

        doc["shares"] = shares_of(b, rid)
    from .retention import context

    doc["retention"] = context(b, row)
    doc["may_categorise"] = permissions.allowed(s.role, "recording.categorise")
    doc["may_extend"] = permissions.allowed(s.role, "retention.extend")
    if request.query_params.get("format") == "json":
        return JSONResponse(doc)
    return render(request, "recording.html", session=s, r=doc, data=doc, shared=False)


def integrity(request: Request) -> Response:
    started = time.perf_counter()
    s = data_session(request)
    row = recording_for(request, s, "recording.view")
    b = backend_of(request)
    doc = review.integrity(b, row["recording_id"])
    b.trail.record(actor(s), "check", f"recording:{row['recording_id']}", ok=doc["ok"],
                   verified_now=doc.get("verified_now"))
    r = JSONResponse(doc)
    r.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"  # scripts/bench review
    return r


@form_post
def recheck(request: Request, s: WebSession, form: FormData) -> Response:
    """Re-verify every segment of the recording from its stored bytes, ignoring cached verdicts (a form on
    the page, CSRF-checked and audited); back to the recording's integrity panel."""
    started = time.perf_counter()
    row = recording_for(request, s, "recording.view")
    check_csrf(request, s, form, "the recording")
    b = backend_of(request)
    doc = review.integrity(b, row["recording_id"], recheck=True)
    b.trail.record(actor(s), "recheck", f"recording:{row['recording_id']}", ok=doc["ok"],
                   verified_now=doc["verified_now"])
    r = RedirectResponse(f"/recordings/{row['recording_id']}#integrity", status_code=303)
    r.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return r


async def thumbnail(request: Request) -> Response:
    """The recording's thumbnail (its first keyframe), or with a sequence in the path one segment's."""
    s = await anyio.to_thread.run_sync(data_session, request)
    row = await anyio.to_thread.run_sync(recording_for, request, s, "recording.view")
    b = backend_of(request)
    seq = request.path_params.get("sequence", row["first_seq"])
    if not row["first_seq"] <= seq <= row["last_seq"]:
        raise ApiError(404, "not_found", f"segment {seq} is not part of recording {row['recording_id']}")
    try:
        jpg = await anyio.to_thread.run_sync(review.thumbnail, b, row["serial"], seq)
    except Exception as e:  # noqa: BLE001 - a damaged segment has no thumbnail, and says why
        log.warning("no thumbnail", extra={"event": "thumbnail_failed",
                                           "data": {"recording_id": row["recording_id"], "error": str(e)}})
        raise ApiError(404, "not_found", f"no thumbnail: segment {seq} cannot be decoded ({e})") from None
    return Response(jpg, media_type="image/jpeg")


def certificate(request: Request) -> Response:
    s = data_session(request)
    row = recording_for(request, s, "recording.view")
    return send_certificate(backend_of(request), row, request.path_params["key_id"])


def send_certificate(b: Any, row: Any, key_id: str) -> Response:
    c = q.certificate(b.db, key_id)
    if c is None or c["serial"] != row["serial"]:
        raise ApiError(404, "not_found", "no such certificate for this recording's camera")
    return Response(c["pem"], media_type="application/x-pem-file")


def agency_ca(request: Request) -> Response:
    """The agency CA certificate, for the browser's check of device certificates. Public, like any CA
    certificate (devices get it at enrolment, exports carry it); no evidence in it."""
    return Response(backend_of(request).ca.cert_pem, media_type="application/x-pem-file")


def segment_part(request: Request) -> Response:
    s = data_session(request)
    part = request.path_params["part"]
    if part not in PARTS:
        raise ApiError(404, "not_found", f"no part {part[:20]!r}; use media, manifest or signature")
    download = request.query_params.get("download") == "1"
    action = ("recording.download" if download else "recording.play") if part == "media" else "recording.view"
    row = recording_for(request, s, action)
    return send_part(backend_of(request), row, request.path_params["sequence"], part, actor(s),
                     previous_ok=not permissions.own_only(s.role), download=download)


def send_part(b: Any, row: Any, seq: int, part: str, who: Any, *, previous_ok: bool, download: bool) -> Response:
    """One part of one segment of the recording ``row`` (or the manifest of the segment just before it,
    for the browser's chain check, if ``previous_ok``); media is audited as a play or download first."""
    seg = segments.get(b.db, row["serial"], seq) if seq < 2**63 else None
    in_recording = seg is not None and seg["recording_id"] == row["recording_id"]
    previous_manifest = seg is not None and seq == row["first_seq"] - 1 and part == "manifest" and previous_ok
    if not (in_recording or previous_manifest):
        raise ApiError(404, "not_found", f"segment {seq} is not part of recording {row['recording_id']}")
    ext, ctype = PARTS[part]
    key = segment_key(row["serial"], seq, ext)
    if part == "media":
        b.trail.record(who, "download" if download else "play", f"segment:{row['serial']}/{seq:010d}",
                       recording_id=row["recording_id"])
    headers = {"Bodycam-SHA256": seg["media_sha256"]} if part == "media" else {}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="seg-{seq:010d}.{ext}"'
    version = pinned.check(b, key, serial=row["serial"], sequence=seq)
    local = getattr(b.store, "local_path", None)
    if local is not None:
        return FileResponse(local(key), media_type=ctype, headers=headers)
    return StreamingResponse(b.store.stream(key, version=version), media_type=ctype,
                             headers={**headers, "Content-Length": str(b.store.size(key, version=version))})




def export_zip(request: Request) -> Response:
    """The recording's evidence bundle (the one `bodycam backend export` writes and `bodycam verify`
    checks offline) as a zip; the export is in the audit trail before a byte is sent."""
    import shutil
    import tempfile
    import zipfile
    from pathlib import Path

    from starlette.background import BackgroundTask

    from ..errors import BackendError
    from ..export import export_recording

    s = data_session(request)
    row = recording_for(request, s, "recording.download")
    b = backend_of(request)
    rid = row["recording_id"]
    tmp = Path(tempfile.mkdtemp(prefix="bodycam-export-"))
    try:
        bundle = tmp / rid
        try:
            export_recording(b, rid, bundle, actor=actor(s))
        except BackendError as e:
            raise ApiError(409, "conflict", f"the bundle could not be made: {e}") from None
        archive = tmp / f"{rid}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:  # video does not compress
            for p in sorted(bundle.rglob("*")):
                if p.is_file():
                    z.write(p, f"{rid}/{p.relative_to(bundle)}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(archive, media_type="application/zip", filename=f"{rid}.zip",
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
