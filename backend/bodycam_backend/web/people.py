"""Accounts, for admins: list them, add one (with a password), disable or enable one (a disabled
account's sessions end at once), record which camera an officer wears. The same rules as
`bodycam backend user ...`; every change is audited."""

from __future__ import annotations

from typing import Any

from bodycam.clock import iso_utc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import permissions
from ..accounts import add_user
from ..data import people as q
from ..db import now_ns
from ..enrol import check_serial
from ..errors import ApiError
from .common import actor, backend_of, check_csrf, form_post, render
from .recordings import _when, page


@page
def listing(request: Request, s: Any) -> Response:
    permissions.require(s.name, s.role, "people.manage")
    b = backend_of(request)
    worn: dict[str, list[str]] = {}
    for a in q.assignments(b.db):
        if a["until_ns"] is None:
            worn.setdefault(a["name"], []).append(f"{a['serial']} since {iso_utc(a['from_ns'])}")
    people = [{"name": r["name"], "role": r["role"], "disabled": bool(r["disabled"]),
               "password": r["password_ns"] is not None, "wears": ", ".join(worn.get(r["name"], []))}
              for r in q.accounts(b.db)]
    b.trail.record(actor(s), "list", "people")
    return render(request, "people.html", session=s, people=people, roles=permissions.ROLES)


def _checked(request: Request, s: Any, form: FormData) -> None:
    permissions.require(s.name, s.role, "people.manage")
    check_csrf(request, s, form, "the people page")


def _done() -> Response:
    return RedirectResponse("/people", status_code=303)


@form_post
def create(request: Request, s: Any, form: FormData) -> Response:
    _checked(request, s, form)
    name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
    if not 0 < len(name) <= 64:
        raise ApiError(400, "bad_request", "a name is 1 to 64 characters")
    try:
        add_user(backend_of(request).db, name, role, str(form.get("password", "")))
    except ValueError as e:
        raise ApiError(400, "bad_request", str(e)) from None
    backend_of(request).trail.record(actor(s), "user_add", f"person:{name}", role=role, via="review page")
    return _done()


@form_post
def set_disabled(request: Request, s: Any, form: FormData) -> Response:
    _checked(request, s, form)
    name = request.path_params["name"]
    if request.path_params["action"] not in ("disable", "enable"):
        raise ApiError(404, "not_found", "use /people/NAME/disable or /people/NAME/enable")
    disable = request.path_params["action"] == "disable"
    if name == s.name and disable:
        raise ApiError(400, "bad_request", "you cannot disable your own account")
    b = backend_of(request)
    if not q.set_disabled(b.db, name, disable):
        raise ApiError(404, "not_found", f"no account named {name[:64]!r}")
    if disable:
        q.drop_sessions_of(b.db, name)
    b.trail.record(actor(s), "user_disable" if disable else "user_enable", f"person:{name}")
    return _done()


@form_post
def assign(request: Request, s: Any, form: FormData) -> Response:
    _checked(request, s, form)
    name = request.path_params["name"]
    b = backend_of(request)
    if q.account(b.db, name) is None:
        raise ApiError(404, "not_found", f"no account named {name[:64]!r}")
    try:
        serial = check_serial(str(form.get("serial", "")).strip())
    except ValueError as e:
        raise ApiError(400, "bad_request", str(e)) from None
    since = _when(str(form.get("since", "")).strip(), "since") or now_ns()
    q.assign(b.db, serial, name, since)
    b.trail.record(actor(s), "assign", f"device:{serial}", person=name, since_utc=iso_utc(since),
                   via="review page")
    return _done()
