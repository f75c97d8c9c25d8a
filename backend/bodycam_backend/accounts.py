"""Signing people in: argon2 password hashes, database sessions, CSRF secrets and login throttling.

A session is a random id in a cookie; only its SHA-256 is stored, so a copy of the database cannot be
replayed as a cookie. Sessions, like failed sign-ins, live in the database, so they hold across backend
instances behind a load balancer and across restarts. A session ends when unused for ``idle`` or
``absolute`` after sign-in, whichever comes first, and at once when its account is disabled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .config import ReviewConfig
from .data import people as q
from .db import now_ns
from .permissions import ROLES

_HASHER = PasswordHasher()
# Compared against when the account does not exist, so a wrong name costs as long as a wrong password.
_DUMMY = _HASHER.hash("not a password of anyone")
MIN_PASSWORD = 10


class SignInError(ValueError):
    """A sign-in refused; the message is safe to show (it never says whether the account exists)."""


@dataclass(frozen=True)
class WebSession:
    id_sha256: str
    name: str
    role: str
    csrf: str

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf.encode())  # type: ignore[union-attr]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")


def add_user(db: Any, name: str, role: str, password: str) -> None:
    """An account that can sign in to the review pages (and an API token that is never shown)."""
    from .auth import create_person

    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    check_password_rules(password)
    create_person(db, name, role)
    q.set_password(db, name, _HASHER.hash(password), now_ns())


def set_password(db: Any, name: str, password: str) -> None:
    if q.account(db, name) is None:
        raise ValueError(f"no account named {name!r}")
    check_password_rules(password)
    q.set_password(db, name, _HASHER.hash(password), now_ns())
    q.drop_sessions_of(db, name)


class Sessions:
    def __init__(self, db: Any, cfg: ReviewConfig, *, clock: Callable[[], int] = now_ns) -> None:
        """``clock``: UTC ns, injected so tests of expiry need not wait."""
        self.db = db
        self.clock = clock
        self.idle_ns = int(cfg.idle_minutes * 60e9)
        self.absolute_ns = int(cfg.absolute_hours * 3600e9)
        self.max_failures = cfg.max_failed_logins
        self.window_ns = int(cfg.lockout_minutes * 60e9)

    def sign_in(self, name: str, password: str, address: str) -> tuple[str, WebSession]:
        """(cookie value, session), or SignInError. Too many recent failures for the name or the
        address refuse even a right password, so guessing cannot continue by luck."""
        t = self.clock()
        since = t - self.window_ns
        if (q.failures_since(self.db, f"name:{name}", since) >= self.max_failures
                or q.failures_since(self.db, f"addr:{address}", since) >= 4 * self.max_failures):
            raise SignInError(f"too many failed sign-ins; wait {self.window_ns / 60e9:g} minutes and try again")
        row = q.account(self.db, name)
        stored = row["password_hash"] if row is not None and row["password_hash"] else _DUMMY
        try:
            good = _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            good = False
        if not good or row is None or row["disabled"]:
            q.add_failure(self.db, [f"name:{name}", f"addr:{address}"], t)
            raise SignInError("wrong name or password")
        q.forget_failures(self.db, f"name:{name}")
        if _HASHER.check_needs_rehash(stored):
            q.set_password(self.db, name, _HASHER.hash(password), t)
        q.drop_expired_sessions(self.db, t, self.idle_ns)
        q.forget_failures(self.db, "", before_ns=since)
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        q.add_session(self.db, _sha(cookie), name, csrf, t, t + self.absolute_ns, address)
        return cookie, WebSession(_sha(cookie), name, row["role"], csrf)

    def get(self, cookie: str | None) -> WebSession | None:
        """The live session for this cookie (and it is touched), or None."""
        if not cookie:
            return None
        sid = _sha(cookie)
        row = q.session(self.db, sid)
        if row is None:
            return None
        t = self.clock()
        if row["disabled"] or row["expires_ns"] < t or row["last_ns"] + self.idle_ns < t:
            q.drop_session(self.db, sid)
            return None
        if t - row["last_ns"] > 10_000_000_000:  # write at most every 10 s per session
            q.touch_session(self.db, sid, t)
        return WebSession(sid, row["name"], row["role"], row["csrf"])

    def sign_out(self, s: WebSession) -> None:
        q.drop_session(self.db, s.id_sha256)
