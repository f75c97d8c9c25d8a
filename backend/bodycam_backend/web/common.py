"""What every review view needs: the signed-in person, CSRF checks, templates and the audit actor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from .. import permissions
from ..accounts import Sessions, WebSession
from ..audit import Actor
from ..context import Backend
from ..errors import ApiError

COOKIE = "bodycam_session"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["allowed"] = permissions.allowed


class SignInNeeded(Exception):
    """A page was asked for without a live session: the page answer is a redirect to /login."""


def backend_of(request: Request) -> Backend:
    return request.app.state.backend


def sessions(request: Request) -> Sessions:
    app = request.app
    if getattr(app.state, "sessions", None) is None:
        b = backend_of(request)
        app.state.sessions = Sessions(b.db, b.cfg.review)
    return app.state.sessions


def secure(request: Request) -> bool:
    """Behind TLS (directly or at a proxy that says so), so the cookie must be Secure."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def current(request: Request) -> WebSession | None:
    return sessions(request).get(request.cookies.get(COOKIE))


def page_session(request: Request) -> WebSession:
    """The session of a page request; without one the page redirects to the sign-in page."""
    s = current(request)
    if s is None:
        raise SignInNeeded()
    return s


def data_session(request: Request) -> WebSession:
    """The session of a data request (media, JSON); without one: 401, never a redirect to a page."""
    s = current(request)
    if s is None:
        raise ApiError(401, "unauthenticated", "sign in at /login first")
    return s


def actor(s: WebSession) -> Actor:
    return Actor(f"person:{s.name}", s.role)


def same_origin(request: Request) -> bool:
    """A state-changing request must come from our own pages (a browser always sends Origin on POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, template, context, status_code=status)


def redirect_to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def refused(request: Request, e: ApiError, s: WebSession | None) -> Response:
    return render(request, "error.html", status=e.status, message=e.message, session=s)


def as_page(request: Request, s: WebSession, view: Callable[..., Response], *args: Any) -> Response:
    """``view(request, s, *args)``, a refusal answered as an HTML page with the reason (not JSON)."""
    try:
        return view(request, s, *args)
    except ApiError as e:
        return refused(request, e, s)


FormView = Callable[[Request, WebSession, FormData], Response]


def form_post(view: FormView) -> Callable[[Request], Awaitable[Response]]:
    """A form's POST (or its GET): the session is looked up and the view run in a worker thread, and only
    the body is read on the event loop, so a slow database stalls no device upload on this instance.
    No body is read without a session; a refusal is an HTML page with the reason."""

    @wraps(view)
    async def run(request: Request) -> Response:
        s = await anyio.to_thread.run_sync(page_session, request)
        form = await request.form()
        return await anyio.to_thread.run_sync(as_page, request, s, view, form)

    return run


def check_csrf(request: Request, s: WebSession, form: FormData, page: str) -> None:
    if not same_origin(request) or not s.csrf_ok(str(form.get("csrf", ""))):
        raise ApiError(403, "forbidden", f"missing or wrong CSRF token; open {page} again and retry")
