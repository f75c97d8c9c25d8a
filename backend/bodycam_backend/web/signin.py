"""Sign-in and sign-out; ``/`` sends a person to the recordings or to the sign-in page.

The sign-in form has its own CSRF token (a cookie and a field that must match, both SameSite=Strict),
so another site cannot sign a browser in to an account of its choosing.
"""

from __future__ import annotations

import hmac
import secrets

import anyio
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..accounts import SignInError, WebSession
from ..audit import Actor
from .common import (
    COOKIE,
    address,
    backend_of,
    check_csrf,
    current,
    form_post,
    render,
    same_origin,
    secure,
    sessions,
)

LOGIN_CSRF = "bodycam_login_csrf"


def home(request: Request) -> Response:
    return RedirectResponse("/recordings" if current(request) else "/login", status_code=303)


def _next(value: str | None) -> str:
    """Only a local path: a sign-in never redirects to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/recordings"


def _form(request: Request, *, error: str = "", status: int = 200, name: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    r = render(request, "login.html", status=status, csrf=token, error=error, name=name,
               next=_next(request.query_params.get("next")), session=None)
    r.set_cookie(LOGIN_CSRF, token, max_age=3600, httponly=True, samesite="strict", secure=secure(request),
                 path="/login")
    return r


async def login(request: Request) -> Response:
    if request.method == "GET":
        return _form(request)
    form = await request.form()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    given, cookie = str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF, "")
    if not same_origin(request) or not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
        return _form(request, error="the form expired or came from another site; sign in again", status=403)
    b = backend_of(request)
    addr = address(request)
    try:
        value, s = await anyio.to_thread.run_sync(sessions(request).sign_in, name, password, addr)
    except SignInError as e:
        reason = str(e)
        await anyio.to_thread.run_sync(
            lambda: b.trail.record(Actor("anonymous", "none"), "sign_in_failed", f"person:{name[:100]}",
                                   address=addr, reason=reason))
        return _form(request, error=reason, status=401, name=name)
    await anyio.to_thread.run_sync(
        lambda: b.trail.record(Actor(f"person:{s.name}", s.role), "sign_in", f"person:{s.name}", address=addr))
    r = RedirectResponse(_next(str(form.get("next", ""))), status_code=303)
    r.set_cookie(COOKIE, value, httponly=True, samesite="strict", secure=secure(request), path="/")
    r.delete_cookie(LOGIN_CSRF, path="/login")
    return r


@form_post
def logout(request: Request, s: WebSession, form: FormData) -> Response:
    check_csrf(request, s, form, "the page")
    sessions(request).sign_out(s)
    backend_of(request).trail.record(Actor(f"person:{s.name}", s.role), "sign_out", f"person:{s.name}")
    r = RedirectResponse("/login", status_code=303)
    r.delete_cookie(COOKIE, path="/")
    return r
