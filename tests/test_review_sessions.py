"""Sessions of the review pages on a real SQLite database with an injected clock: idle and absolute
expiry, sign-out, a disabled account, throttling windows, and what is (not) stored."""

from __future__ import annotations

import pytest
from bodycam_backend.accounts import Sessions, SignInError, add_user, set_password
from bodycam_backend.config import ReviewConfig
from bodycam_backend.data import connect
from pgkit import ENGINES, database_table

MIN = 60 * 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000 * 1_000_000_000

    def __call__(self) -> int:
        return self.t


@pytest.fixture(params=ENGINES)
def db(request, tmp_path):
    d = connect(database_table(request, request.param).get("url", ""),
                sqlite_path=tmp_path / "backend.sqlite3")  # migrated to HEAD
    add_user(d, "rita", "reviewer", "a long enough password")
    yield d
    d.close()


def test_idle_and_absolute_expiry(db) -> None:
    clock = Clock()
    s = Sessions(db, ReviewConfig(idle_minutes=30, absolute_hours=2), clock=clock)
    cookie, sess = s.sign_in("rita", "a long enough password", "10.0.0.1")
    assert s.get(cookie).name == "rita" and sess.role == "reviewer"
    for _ in range(3):  # used every 29 minutes: stays signed in...
        clock.t += 29 * MIN
        assert s.get(cookie) is not None
    clock.t += 31 * MIN  # ...until left alone for more than 30
    assert s.get(cookie) is None
    cookie, _ = s.sign_in("rita", "a long enough password", "10.0.0.1")
    for _ in range(4):
        clock.t += 29 * MIN
        assert s.get(cookie) is not None
    clock.t += 5 * MIN  # 2 h 1 min after sign-in: the absolute limit, however busy
    assert s.get(cookie) is None


def test_only_hashes_are_stored_and_sign_out_and_password_change_end_sessions(db) -> None:
    s = Sessions(db, ReviewConfig(), clock=Clock())
    cookie, sess = s.sign_in("rita", "a long enough password", "10.0.0.1")
    rows = db.query("SELECT * FROM web_sessions")
    assert len(rows) == 1 and cookie not in [str(v) for v in tuple(rows[0])]
    stored = db.one("SELECT password_hash FROM person_passwords WHERE name='rita'")[0]
    assert stored.startswith("$argon2id$") and "a long enough password" not in stored
    s.sign_out(sess)
    assert s.get(cookie) is None
    cookie, _ = s.sign_in("rita", "a long enough password", "10.0.0.1")
    set_password(db, "rita", "another long password")
    assert s.get(cookie) is None
    with pytest.raises(SignInError):
        s.sign_in("rita", "a long enough password", "10.0.0.1")
    cookie, _ = s.sign_in("rita", "another long password", "10.0.0.1")
    db.execute("UPDATE people SET disabled=1 WHERE name='rita'")
    assert s.get(cookie) is None


def test_throttling_counts_per_account_and_per_address_within_the_window(db) -> None:
    clock = Clock()
    s = Sessions(db, ReviewConfig(max_failed_logins=2, lockout_minutes=10), clock=clock)
    for _ in range(2):
        with pytest.raises(SignInError, match="wrong name or password"):
            s.sign_in("rita", "guess", "10.0.0.1")
    with pytest.raises(SignInError, match="too many failed sign-ins"):
        s.sign_in("rita", "a long enough password", "10.0.0.2")
    clock.t += 11 * MIN
    assert s.sign_in("rita", "a long enough password", "10.0.0.2")[1].name == "rita"
    # one address guessing many names is stopped too (4x the per-account limit)
    for n in range(8):
        with pytest.raises(SignInError, match="wrong name or password"):
            s.sign_in(f"nobody{n}", "guess", "10.0.0.9")
    with pytest.raises(SignInError, match="too many failed sign-ins"):
        s.sign_in("rita", "a long enough password", "10.0.0.9")
    assert s.sign_in("rita", "a long enough password", "10.0.0.3")[1].name == "rita"
