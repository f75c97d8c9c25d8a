"""HTTP routes (Starlette): public, device (tus + finalize), and people's JSON API.

The contract is docs/backend-api.md; each handler is thin and delegates to one module (enrol, auth,
tus, ingest, audit). People's views and downloads are written to the audit trail before any data
is returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from bodycam import __version__
from bodycam.clock import iso_utc
from bodycam.storage.durable import fsync_dir
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import anchor, liveness, openapi, permissions, pinned, review, web
from . import enrol as enrolmod
from .audit import Actor
from .auth import DeviceIdentity, Person
from .context import Backend
from .data import device_audit, devices, segments
from .data import review as review_q
from .errors import ApiError
from .offloop import db_call
from .parsing import INT64_MAX, decimal, is_decimal, loads
from .store import segment_key
from .tus import tus_headers
from .web import common as web_common
from .web import recordings as web_recordings

log = logging.getLogger("bodycam.backend.api")


# --- helpers --------------------------------------------------------------------------------------


async def read_json(request: Request, limit: int, who: DeviceIdentity | None = None) -> dict[str, Any]:
    """The JSON object in the body; for a device, only once the body matches its signed Content-Digest."""
    declared = request.headers.get("content-length")
    if declared is not None and (not is_decimal(declared) or int(declared) > limit):
        raise ApiError(413, "upload_too_large", f"JSON body over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "upload_too_large", f"JSON body over the limit of {limit} bytes")
    if who is not None:
        who.check_body(hashlib.sha256(body).digest())
    if not body:
        return {}
    try:
        doc = loads(body)
    except ValueError as e:
        raise ApiError(400, "bad_request", f"body is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    return doc


def _sequence(request: Request) -> int:
    """A path's sequence number; one no segment can have (past 2^63) is simply not found."""
    seq = request.path_params["sequence"]
    if seq > INT64_MAX:
        raise ApiError(404, "not_found", f"no segment with sequence {str(seq)[:30]}")
    return seq


def backend_of(request: Request) -> Backend:
    return request.app.state.backend


def request_target(request: Request) -> str:
    """The path and query exactly as the client sent them (still percent-encoded): what it signed."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


async def device(request: Request) -> DeviceIdentity:
    """Who signed this request. In a database thread: the certificate lookup (revocation, at once) and the
    nonce insert wait there, not on the event loop every other upload is served by."""
    return await db_call(backend_of(request).auth.device, request.method, request_target(request),
                         request.headers)


def person(request: Request, role: str = "reviewer") -> tuple[Person, Actor]:
    p = backend_of(request).auth.person(request.headers)
    p.require(role)
    return p, Actor(f"person:{p.name}", p.role)


def person_may(request: Request, action: str) -> tuple[Person, Actor]:
    """The caller, if the permissions module lets their role do ``action``."""
    p = backend_of(request).auth.person(request.headers)
    p.may(action)
    return p, Actor(f"person:{p.name}", p.role)


def check_owner(b: Backend, p: Person, serial: str, first_utc_ns: int | None) -> None:
    """An officer sees only recordings made on a camera assigned to them (permissions.may_see)."""
    if permissions.own_only(p.role) and not permissions.may_see(
            p.name, p.role, review.officer_of(b, serial, first_utc_ns)):
        raise ApiError(403, "forbidden", f"{p.name} ({p.role}) may only see recordings made on a camera "
                       "assigned to them")


def _serial(serial: str) -> str:
    try:
        return enrolmod.check_serial(serial)
    except ValueError as e:
        raise ApiError(400, "bad_request", str(e)) from None


def _utc(ns: int | None) -> str | None:
    return iso_utc(ns) if ns else None


# --- public ---------------------------------------------------------------------------------------


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi.document(optional=request.app.state.bench_put))


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "version": __version__})


async def time_now(request: Request) -> Response:
    t = time.time_ns()
    return JSONResponse({"utc": iso_utc(t), "utc_ns": t})


async def backend_info(request: Request) -> Response:
    b = backend_of(request)
    return JSONResponse(
        {
            "backend_key_id": b.signer.key_id,
            "backend_public_key_pem": b.backend_public_pem,
            "ca_certificate_pem": b.ca.cert_pem,
            "agency": b.cfg.agency.name,
        }
    )


async def enrol(request: Request) -> Response:
    b = backend_of(request)
    body = await read_json(request, b.cfg.limits.max_json_bytes)

    def run() -> dict[str, Any]:
        out = enrolmod.enrol(b.db, b.ca, body, certificate_days=b.cfg.enrolment.certificate_days)
        b.trail.record(
            Actor(f"device:{out['serial']}", "device"),
            "enrol",
            f"device:{out['serial']}",
            key_id=out["key_id"],
        )
        log.info(
            "device enrolled",
            extra={"event": "enrol", "data": {"device": out["serial"], "key_id": out["key_id"]}},
        )
        return {**out, "backend_key_id": b.signer.key_id, "backend_public_key_pem": b.backend_public_pem}

    return JSONResponse(await anyio.to_thread.run_sync(run), status_code=201)


# --- devices --------------------------------------------------------------------------------------


async def device_session(request: Request) -> Response:
    who = await device(request)
    return JSONResponse(backend_of(request).auth.issue_session(who))


async def device_status(request: Request) -> Response:
    who = await device(request)
    b = backend_of(request)

    def status() -> dict[str, Any]:
        return {
            "serial": who.serial,
            "status": "active",
            "last_sequence": segments.last_sequence(b.db, who.serial),
            "gaps": segments.open_gaps(b.db, who.serial),
            "audit_last_seq": device_audit.last_seq(b.db, who.serial),
        }

    return JSONResponse(await db_call(status))


async def device_segment(request: Request) -> Response:
    who = await device(request)
    b = backend_of(request)
    seq = _sequence(request)

    def receipt() -> dict[str, Any]:
        seg = segments.get(b.db, who.serial, seq)
        if seg is None:
            raise ApiError(404, "not_found", "no such segment at the backend; upload it")
        return {
            "receipt": seg["receipt"],
            "signature": seg["receipt_sig"],
            "backend_key_id": b.signer.key_id,
            "duplicate": True,
            "gaps": segments.open_gaps(b.db, who.serial),
        }

    return JSONResponse(await db_call(receipt))


async def uploads(request: Request) -> Response:
    b = backend_of(request)
    if request.method == "OPTIONS":
        return b.tus.options()
    created = await b.tus.create(request, partial(b.auth.device, request.method, request_target(request),
                                                  request.headers))
    who = created.who
    if created.finalize_with is None:
        return created.response()
    # The whole segment and its signed manifest came in one request: verify, store and answer with the
    # receipt now, saving the finalize round trip (docs/backend-api.md section 7).
    t = time.perf_counter()
    return finalize_timed(created.response(await b.ingest.finalize_created(created, who)), t)


async def upload(request: Request) -> Response:
    b = backend_of(request)
    uid = request.path_params["upload_id"]
    who = await device(request)
    if request.method == "HEAD":
        return await b.tus.head(request, uid, who)
    if request.method == "PATCH":
        return await b.tus.patch(request, uid, who)
    return await b.tus.delete(request, uid, who)


async def finalize(request: Request) -> Response:
    b = backend_of(request)
    who = await device(request)
    body = await read_json(request, b.cfg.limits.max_json_bytes, who)
    t = time.perf_counter()
    return finalize_timed(JSONResponse(await b.ingest.finalize(request.path_params["upload_id"], who, body)), t)


def finalize_timed(response: Response, started: float) -> Response:
    """Say how long verifying and storing took (W3C Server-Timing ``finalize``, ms): what the bench reports as
    finalize time, measured where the work happens rather than guessed from the client's side."""
    response.headers["Server-Timing"] = f"finalize;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


async def bench_put(request: Request) -> Response:
    """Baseline for `scripts/bench offload`: the same bytes as a plain PUT, stored the least way a server
    may before answering 201: written, fsynced, and its new name made durable (fsync of the directory).
    The file is left in staging as stored evidence is left in the store (freeing 8 MB inside the request
    would charge the baseline for disk work the tus path never does); the backend removes them at its
    next start. Only routed when [server] bench_put = true."""
    b = backend_of(request)
    path = b.tus.staging / f"bench-{secrets.token_hex(8)}.put"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    n = 0
    try:
        async for chunk in request.stream():
            os.pwrite(fd, chunk, n)
            n += len(chunk)
        await anyio.to_thread.run_sync(os.fsync, fd)
        await anyio.to_thread.run_sync(fsync_dir, path.parent)
    finally:
        os.close(fd)
    return JSONResponse({"bytes": n}, status_code=201)


# --- people ---------------------------------------------------------------------------------------


def _device_doc(b: Backend, row: Any, *, pem: bool = False) -> dict[str, Any]:
    certs = [
        {
            "key_id": c["key_id"],
            "not_after": _utc(c["not_after_ns"]),
            "issued": _utc(c["issued_ns"]),
            **({"certificate_pem": c["pem"]} if pem else {}),
        }
        for c in devices.certificates_of(b.db, row["serial"])
    ]
    return {
        "serial": row["serial"],
        "status": row["status"],
        "enrolled_utc": _utc(row["enrolled_ns"]),
        "revoked_utc": _utc(row["revoked_ns"]),
        "last_sequence": segments.last_sequence(b.db, row["serial"]),
        "open_gaps": segments.open_gaps(b.db, row["serial"]),
        "certificates": certs,
    }


def list_devices(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person_may(request, "devices.view")
    b.trail.record(actor, "list", "devices")
    return JSONResponse(
        {"devices": [_device_doc(b, r) for r in devices.all_devices(b.db)]}
    )


def get_device(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person_may(request, "devices.view")
    serial = _serial(request.path_params["serial"])
    row = devices.get(b.db, serial)
    if row is None:
        raise ApiError(404, "not_found", f"no device {serial}")
    b.trail.record(actor, "view", f"device:{serial}")
    return JSONResponse(_device_doc(b, row, pem=True))


def enrol_token(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person(request, "admin")
    serial = _serial(request.path_params["serial"])
    token, expires = enrolmod.issue_token(
        b.db, serial, ttl_hours=b.cfg.enrolment.token_ttl_hours, created_by=actor.name
    )
    b.trail.record(actor, "enrol_token", f"device:{serial}", expires_utc=iso_utc(expires))
    return JSONResponse({"serial": serial, "token": token, "expires_utc": iso_utc(expires)}, status_code=201)


def revoke(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person(request, "admin")
    serial = _serial(request.path_params["serial"])
    if devices.get(b.db, serial) is None:
        raise ApiError(404, "not_found", f"no device {serial}")
    changed = enrolmod.revoke(b.db, serial)
    b.trail.record(actor, "revoke", f"device:{serial}", changed=changed)
    log.warning("device revoked", extra={"event": "revoke", "data": {"device": serial, "by": actor.name}})
    return JSONResponse({"serial": serial, "status": "revoked"})


def _recording_summary(r: Any) -> dict[str, Any]:
    return {
        "recording_id": r["recording_id"],
        "device_serial": r["serial"],
        "segments": r["n"],
        "first_sequence": r["lo"],
        "last_sequence": r["hi"],
        "first_utc": _utc(r["t0"]),
        "last_utc": _utc(r["t1"]),
        "bytes": r["bytes"],
    }


API_PAGE = 100
API_PAGE_MAX = 1000


def _page_param(request: Request, name: str, default: int, most: int) -> int:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    if not is_decimal(raw) or not 1 <= int(raw) <= most:
        raise ApiError(400, "bad_request", f"{name}={raw[:20]!r}: give a whole number from 1 to {most}")
    return int(raw)


def list_recordings(request: Request) -> Response:
    """One page of the recordings index (the review pages' own query), newest first: a force's archive
    holds millions of segments, so the list is never sent whole."""
    b = backend_of(request)
    p, actor = person_may(request, "recordings.list")
    dev = request.query_params.get("device")
    f = review_q.Filters(
        device=_serial(dev) if dev else "",
        officer_only=p.name if permissions.own_only(p.role) else None,
        page=_page_param(request, "page", 1, 1_000_000),
        per_page=_page_param(request, "per_page", API_PAGE, API_PAGE_MAX),
    )
    review.index(b)
    rows, total = review_q.list_recordings(b.db, f)
    b.trail.record(actor, "list", f"recordings:{dev or '*'}", page=f.page, total=total)
    return JSONResponse({"recordings": [web_recordings.summary(r) for r in rows], "total": total,
                         "page": f.page, "per_page": f.per_page})


def recording_detail(b: Backend, recording_id: str) -> dict[str, Any]:
    rows = segments.recordings(b.db, recording_id=recording_id)
    if not rows:
        raise ApiError(404, "not_found", f"no recording {recording_id!r}")
    r = rows[0]
    segs = segments.of_recording(b.db, recording_id)
    serial = r["serial"]
    gaps = segments.gaps_between(b.db, serial, r["lo"] - 1, r["hi"] + 1)
    flags = segments.flags_between(b.db, serial, r["lo"], r["hi"])
    return {
        **_recording_summary(r),
        "segments": [
            {
                "sequence": s["sequence"],
                "segment_index": s["segment_index"],
                "key_id": s["key_id"],
                "media_sha256": s["media_sha256"],
                "media_size": s["media_size"],
                "manifest_sha256": s["manifest_sha256"],
                "receipt_id": json.loads(s["receipt"])["receipt_id"],
                "stored_utc": _utc(s["stored_ns"]),
                "first_utc": _utc(s["first_utc_ns"]),
                "last_utc": _utc(s["last_utc_ns"]),
            }
            for s in segs
        ],
        "gaps": [_gap_doc(g) for g in gaps],
        "flags": [_flag_doc(f) for f in flags],
    }


def get_recording(request: Request) -> Response:
    b = backend_of(request)
    p, actor = person_may(request, "recording.view")
    rid = request.path_params["recording_id"]
    doc = recording_detail(b, rid)
    check_owner(b, p, doc["device_serial"], _recording_start(b, rid))
    b.trail.record(actor, "view", f"recording:{rid}")
    return JSONResponse(doc)


def _recording_start(b: Backend, recording_id: str) -> int | None:
    return review_q.recording_start(b.db, recording_id)


def _segment_row(b: Backend, request: Request) -> Any:
    serial = _serial(request.path_params["serial"])
    seg = segments.get(b.db, serial, _sequence(request))
    if seg is None:
        raise ApiError(404, "not_found", f"no segment {serial}/{request.path_params['sequence']}")
    return seg


def get_segment(request: Request) -> Response:
    b = backend_of(request)
    p, actor = person_may(request, "recording.view")
    seg = _segment_row(b, request)
    check_owner(b, p, seg["serial"], _recording_start(b, seg["recording_id"]))
    key = segment_key(seg["serial"], seg["sequence"], "json")
    manifest = json.loads(pinned.read(b, key, serial=seg["serial"], sequence=seg["sequence"]))
    b.trail.record(
        actor, "view", f"segment:{seg['serial']}/{seg['sequence']:010d}", recording_id=seg["recording_id"]
    )
    return JSONResponse(
        {
            "device_serial": seg["serial"],
            "sequence": seg["sequence"],
            "recording_id": seg["recording_id"],
            "media_sha256": seg["media_sha256"],
            "media_size": seg["media_size"],
            "manifest_sha256": seg["manifest_sha256"],
            "stored_utc": _utc(seg["stored_ns"]),
            "manifest": manifest,
            "receipt": seg["receipt"],
            "receipt_signature": seg["receipt_sig"],
        }
    )


PARTS = {
    "media": ("mp4", "video/mp4"),
    "manifest": ("json", "application/json"),
    "signature": ("sig", "application/octet-stream"),
}


def download(request: Request) -> Response:
    b = backend_of(request)
    p, actor = person_may(request, "recording.download" if request.path_params["part"] == "media"
                          else "recording.view")
    part = request.path_params["part"]
    if part not in PARTS:
        raise ApiError(404, "not_found", f"no part {part!r}; use media, manifest or signature")
    seg = _segment_row(b, request)
    check_owner(b, p, seg["serial"], _recording_start(b, seg["recording_id"]))
    ext, ctype = PARTS[part]
    key = segment_key(seg["serial"], seg["sequence"], ext)
    name = f"seg-{seg['sequence']:010d}.{ext}"
    b.trail.record(
        actor,
        "download",
        f"segment:{seg['serial']}/{seg['sequence']:010d}",
        part=part,
        recording_id=seg["recording_id"],
    )
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if part == "media":
        headers["Bodycam-SHA256"] = seg["media_sha256"]
    local = getattr(b.store, "local_path", None)
    if local is not None:
        return FileResponse(local(key), media_type=ctype, headers=headers)
    chunks, size = pinned.stream(b, key, serial=seg["serial"], sequence=seg["sequence"])
    return StreamingResponse(chunks, media_type=ctype, headers={**headers, "Content-Length": str(size)})


def _gap_doc(g: Any) -> dict[str, Any]:
    return {
        "device_serial": g["serial"],
        "sequence": g["sequence"],
        "opened_utc": _utc(g["opened_ns"]),
        "closed_utc": _utc(g["closed_ns"]),
    }


def _flag_doc(f: Any) -> dict[str, Any]:
    return {
        "id": f["id"],
        "device_serial": f["serial"],
        "sequence": f["sequence"],
        "upload_id": f["upload_id"],
        "reason": f["reason"],
        "message": f["message"],
        "utc": _utc(f["created_ns"]),
    }


def list_gaps(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person(request)
    dev = request.query_params.get("device")
    rows = segments.gaps(b.db, serial=_serial(dev) if dev else None,
                         open_only=request.query_params.get("open") in ("1", "true"))
    b.trail.record(actor, "list", "gaps")
    return JSONResponse({"gaps": [_gap_doc(g) for g in rows]})


def list_flags(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person(request)
    dev = request.query_params.get("device")
    rows = segments.flags(b.db, serial=_serial(dev) if dev else None)
    b.trail.record(actor, "list", "flags")
    return JSONResponse({"flags": [_flag_doc(f) for f in rows]})


def get_audit(request: Request) -> Response:
    b = backend_of(request)
    _, actor = person_may(request, "audit.view")
    after = decimal(request.query_params.get("after", "0"), "after")
    limit = min(decimal(request.query_params.get("limit", "1000"), "limit"), 10000)
    b.trail.record(actor, "view", "audit")
    return JSONResponse({"entries": b.trail.entries(after=after, limit=limit)})


def audit_verify(request: Request) -> Response:
    """Slow (the whole trail), so a sync view: Starlette runs it in a worker thread."""
    b = backend_of(request)
    _, actor = person_may(request, "audit.view")
    b.trail.record(actor, "view", "audit:verify")
    check = anchor.verify_trail(b)
    return JSONResponse({"ok": check.ok, "entries": check.entries, "checkpoints": check.checkpoints,
                         "errors": check.errors[:100]})


# --- the app --------------------------------------------------------------------------------------


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = dict(exc.headers)
    if request.url.path.startswith("/v1/uploads"):
        headers.update(tus_headers())
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error(
        "internal error", exc_info=exc, extra={"event": "internal_error", "data": {"path": request.url.path}}
    )
    return JSONResponse(
        {"error": "internal", "message": "internal error; see the backend log", "status": 500},
        status_code=500,
    )


async def not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
    return JSONResponse(
        {
            "error": code,
            "message": f"{request.method} {request.url.path}: {code.replace('_', ' ')}",
            "status": status,
        },
        status_code=status,
    )


async def sign_in_needed(request: Request, exc: Exception) -> Response:
    return web_common.redirect_to_login(request)


@asynccontextmanager
async def _serving(backend: Backend, app: Starlette) -> AsyncIterator[None]:
    """What runs beside the requests: saying this instance is alive, anchoring the audit trail's head."""
    async with liveness.beating_while_serving(backend), anchor.checkpoints_while_serving(backend, app):
        yield


def build_app(backend: Backend, *, bench_put_route: bool = False) -> Starlette:
    routes = [
        Route("/openapi.json", openapi_json),
        Route("/healthz", healthz),
        Route("/v1/time", time_now),
        Route("/v1/backend", backend_info),
        Route("/v1/enrol", enrol, methods=["POST"]),
        Route("/v1/device/session", device_session, methods=["POST"]),
        Route("/v1/device/status", device_status),
        Route("/v1/device/segments/{sequence:int}", device_segment),
        Route("/v1/uploads", uploads, methods=["OPTIONS", "POST"]),
        Route("/v1/uploads/{upload_id}", upload, methods=["HEAD", "PATCH", "DELETE"]),
        Route("/v1/uploads/{upload_id}/finalize", finalize, methods=["POST"]),
        Route("/v1/devices", list_devices),
        Route("/v1/devices/{serial}", get_device),
        Route("/v1/devices/{serial}/enrol-token", enrol_token, methods=["POST"]),
        Route("/v1/devices/{serial}/revoke", revoke, methods=["POST"]),
        Route("/v1/recordings", list_recordings),
        Route("/v1/recordings/{recording_id}", get_recording),
        Route("/v1/segments/{serial}/{sequence:int}", get_segment),
        Route("/v1/segments/{serial}/{sequence:int}/{part}", download),
        Route("/v1/gaps", list_gaps),
        Route("/v1/flags", list_flags),
        Route("/v1/audit", get_audit),
        Route("/v1/audit/verify", audit_verify),
    ]
    if bench_put_route:
        routes.append(Route("/v1/bench/put", bench_put, methods=["PUT"]))
    routes += web.routes()
    app = Starlette(
        routes=routes,
        middleware=[Middleware(web.SecurityHeaders)],
        exception_handlers={ApiError: api_error, Exception: internal_error, 404: not_found, 405: not_found,
                            web_common.SignInNeeded: sign_in_needed},
        lifespan=partial(_serving, backend),
    )
    app.state.backend = backend
    app.state.bench_put = bench_put_route
    return app
