"""The review pages on the HTTP layer, against a real backend process: nothing without a session, CSRF on
every state-changing form, the role matrix on every route, the security headers, cookie attributes,
and login throttling held in the database."""

from __future__ import annotations

import re

import pytest
import requests
from backendkit import BackendProcess
from pgkit import ENGINES, database_table
from reviewkit import PASSWORD, PEOPLE, csrf_of, seed, signed_in, user_add

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=ENGINES)
def seeded(request, tmp_path_factory):
    """The whole module on SQLite and on PostgreSQL (throttling and sessions live in the database)."""
    tmp = tmp_path_factory.mktemp("review-http")
    backend = BackendProcess(tmp / "backend", review={"max_failed_logins": 3},
                             database=database_table(request, request.param))
    backend.start()
    try:
        yield seed(backend, tmp)
    finally:
        backend.stop()


def routes(rid: str) -> dict[str, str]:
    return {
        "list": "/recordings",
        "list_json": "/recordings?format=json",
        "view": f"/recordings/{rid}",
        "integrity": f"/recordings/{rid}/integrity",
        "thumbnail": f"/recordings/{rid}/thumbnail.jpg",
        "manifest": f"/recordings/{rid}/segments/1/manifest",
        "play": f"/recordings/{rid}/segments/1/media",
        "download": f"/recordings/{rid}/segments/1/media?download=1",
        "audit": f"/recordings/{rid}/audit",
        "export": f"/recordings/{rid}/export.zip",
    }


def test_no_page_or_evidence_without_a_session(seeded) -> None:
    url = seeded.backend.url
    for name, path in routes(seeded.recordings["BC-REV-0001"]).items():
        r = requests.get(url + path, allow_redirects=False)
        if name in ("list", "list_json", "view", "audit"):
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), (name, r.status_code)
        else:
            assert r.status_code == 401, (name, r.status_code)
        assert b"ftyp" not in r.content[:64]
    for path in ("/devices", "/audit", "/devices/BC-REV-0001/revoke"):
        r = requests.get(url + path, allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    r = requests.post(url + "/devices/BC-REV-0001/revoke", data={"confirm": "yes"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert requests.get(url + "/", allow_redirects=False).headers["location"] == "/login"
    # a made-up or stolen-from-the-database value is no session
    s = requests.Session()
    s.cookies.set("bodycam_session", "x" * 43)
    assert s.get(url + routes(seeded.recordings["BC-REV-0001"])["play"]).status_code == 401


# role -> routes it may use (the rest must be refused with 403); officer olly owns BC-REV-0001
ALLOWED = {
    "admin": {"list", "list_json", "view", "integrity", "thumbnail", "manifest", "play", "download", "audit",
              "export"},
    "supervisor": {"list", "list_json", "view", "integrity", "thumbnail", "manifest", "play", "download", "audit",
                   "export"},
    "reviewer": {"list", "list_json", "view", "integrity", "thumbnail", "manifest", "play", "download", "export"},
    "officer": {"list", "list_json", "view", "integrity", "thumbnail", "manifest", "play"},
    "auditor": {"list", "list_json", "view", "integrity", "thumbnail", "manifest", "audit"},
}


@pytest.mark.parametrize("name", list(PEOPLE))
def test_every_route_checks_the_role(seeded, name) -> None:
    url = seeded.backend.url
    role = PEOPLE[name]
    s = signed_in(url, name)
    for rid_serial in ("BC-REV-0001", "BC-REV-0002"):
        own = role != "officer" or {"BC-REV-0001": "olly", "BC-REV-0002": "ben"}[rid_serial] == name
        for route, path in routes(seeded.recordings[rid_serial]).items():
            r = s.get(url + path, allow_redirects=False)
            if route in ("list", "list_json"):
                assert r.status_code == 200
                continue
            want = 200 if route in ALLOWED[role] and own else 403
            assert r.status_code == want, (name, rid_serial, route, r.status_code, r.text[:200])
    listed = {x["recording_id"] for x in s.get(url + "/recordings?format=json").json()["recordings"]}
    if role == "officer":
        assert listed == {seeded.recordings["BC-REV-0001" if name == "olly" else "BC-REV-0002"]}
    else:
        assert listed == set(seeded.recordings.values())


def test_security_headers_and_no_caching_of_pages_or_evidence(seeded) -> None:
    url = seeded.backend.url
    s = signed_in(url, "rita")
    for path in list(routes(seeded.recordings["BC-REV-0001"]).values()) + ["/login"]:
        r = s.get(url + path)
        if r.status_code == 403:
            continue
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store", path
    page = s.get(url + routes(seeded.recordings["BC-REV-0001"])["view"]).text
    assert "<script>" not in page and " on" + "click=" not in page  # no inline script anywhere
    assert re.findall(r"<script[^>]*>", page) == ['<script type="application/json" id="recording-data">',
                                                 '<script src="/static/check.js">',
                                                 '<script src="/static/player.js">']
    static = s.get(url + "/static/player.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_session_cookie_attributes_and_secure_behind_tls(seeded) -> None:
    url = seeded.backend.url
    for proto, secure in (("http", False), ("https", True)):
        form = requests.get(url + "/login", headers={"X-Forwarded-Proto": proto})
        login_cookie = form.raw.headers.getlist("set-cookie")[0]
        assert ("; secure" in login_cookie.lower()) is secure
        # (a client would send a Secure cookie only over TLS: the TLS proxy is played by this header)
        r = requests.post(url + "/login", data={"name": "rita", "password": PASSWORD, "csrf": csrf_of(form.text)},
                          headers={"X-Forwarded-Proto": proto, "Cookie": login_cookie.split(";")[0]},
                          allow_redirects=False)
        assert r.status_code == 303
        cookie = [c for c in r.raw.headers.getlist("set-cookie") if c.startswith("bodycam_session=")][0]
        low = cookie.lower()
        assert "httponly" in low and "samesite=strict" in low and "path=/" in low
        assert ("; secure" in low) is secure, cookie


def test_csrf_is_required_on_sign_in_and_sign_out(seeded) -> None:
    url = seeded.backend.url
    s = requests.Session()
    s.get(url + "/login")
    r = s.post(url + "/login", data={"name": "rita", "password": PASSWORD, "csrf": "forged"}, allow_redirects=False)
    assert r.status_code == 403 and "bodycam_session" not in r.cookies
    r = requests.post(url + "/login", data={"name": "rita", "password": PASSWORD}, allow_redirects=False)
    assert r.status_code == 403
    s = signed_in(url, "rita")
    page = s.get(url + "/recordings").text
    token = csrf_of(page)
    assert s.post(url + "/logout", data={}, allow_redirects=False).status_code == 403
    assert s.post(url + "/logout", data={"csrf": token}, headers={"Origin": "http://evil.example"},
                  allow_redirects=False).status_code == 403
    assert s.get(url + "/recordings?format=json").status_code == 200  # still signed in
    r = s.post(url + "/logout", data={"csrf": token}, allow_redirects=False)
    assert r.status_code == 303
    assert s.get(url + "/recordings", allow_redirects=False).status_code == 303  # signed out, server side


def test_sign_in_is_throttled_per_account_in_the_database(seeded) -> None:
    url = seeded.backend.url
    assert user_add(seeded.backend, "tess", "reviewer").returncode == 0
    for _ in range(3):
        s = requests.Session()
        form = s.get(url + "/login").text
        r = s.post(url + "/login", data={"name": "tess", "password": "not it at all", "csrf": csrf_of(form)})
        assert r.status_code == 401 and "wrong name or password" in r.text
    s = requests.Session()
    form = s.get(url + "/login").text
    r = s.post(url + "/login", data={"name": "tess", "password": PASSWORD, "csrf": csrf_of(form)})
    assert r.status_code == 401 and "too many failed sign-ins" in r.text
    # the count is in the database: a restarted backend still refuses
    seeded.backend.stop()
    seeded.backend.start()
    s = requests.Session()
    form = s.get(url + "/login").text
    r = s.post(url + "/login", data={"name": "tess", "password": PASSWORD, "csrf": csrf_of(form)})
    assert "too many failed sign-ins" in r.text
    # another account is not locked by it
    assert signed_in(url, "rita").get(url + "/recordings?format=json").status_code == 200


def test_the_exported_zip_verifies_offline_and_the_export_is_audited(seeded, tmp_path) -> None:
    import subprocess
    import sys
    import zipfile

    url = seeded.backend.url
    rid = seeded.recordings["BC-REV-0001"]
    s = signed_in(url, "rita")
    r = s.get(f"{url}/recordings/{rid}/export.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f'filename="{rid}.zip"' in r.headers["content-disposition"]
    (tmp_path / "b.zip").write_bytes(r.content)
    with zipfile.ZipFile(tmp_path / "b.zip") as z:
        z.extractall(tmp_path / "out")
    bundle = tmp_path / "out" / rid
    for seg in seeded.segments["BC-REV-0001"]:
        assert (bundle / seg.media.name).read_bytes() == seg.media.read_bytes()
    v = subprocess.run([sys.executable, "-m", "bodycam.cli", "verify", str(bundle), "--key",
                        str(bundle / "BC-REV-0001.cert.pem")], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and v.stdout.startswith("verify: OK"), v.stdout + v.stderr
    admin = signed_in(url, "aud")
    got = admin.get(url + "/audit?format=json")
    assert got.status_code == 200, got.text[:500]
    entries = got.json()["entries"]
    assert any(e["action"] == "export" and e["actor"] == "person:rita" and e["target"] == f"recording:{rid}"
               for e in entries)


def test_user_add_refuses_bad_input_with_one_line(seeded) -> None:
    r = user_add(seeded.backend, "short", "reviewer", password="tiny")
    assert r.returncode == 2 and r.stderr.strip() == "bodycam: the password must have at least 10 characters"
    r = user_add(seeded.backend, "rita", "reviewer")
    assert r.returncode == 2 and "exists already" in r.stderr and "Traceback" not in r.stderr
    r = seeded.backend.cli("user", "assign", "nobody", "BC-REV-0001", check=False)
    assert r.returncode == 2 and "no account named 'nobody'" in r.stderr
    r = seeded.backend.cli("user", "assign", "olly", "BC-REV-0001", "--since", "monday", check=False)
    assert r.returncode == 2 and "give ISO 8601 UTC" in r.stderr
    listing = seeded.backend.cli("user", "list").stdout
    assert re.search(r"^olly\tofficer\tactive\tpassword\tBC-REV-0001 since 2000-01-01T00:00:00.000Z$", listing, re.M)


def test_devices_page_and_revoke_admin_only_confirmed_csrf_checked_and_audited(seeded) -> None:
    url = seeded.backend.url
    rita = signed_in(url, "rita")
    devices = rita.get(url + "/devices?format=json").json()["devices"]
    by = {d["serial"]: d for d in devices}
    assert by["BC-REV-0001"]["status"] == "active" and by["BC-REV-0001"]["officer"] == "olly"
    assert by["BC-REV-0001"]["last_upload_utc"] and by["BC-REV-0001"]["open_gaps"] == 0
    assert "revoke" not in rita.get(url + "/devices").text
    assert rita.get(url + "/devices/BC-REV-0002/revoke").status_code == 403
    assert rita.post(url + "/devices/BC-REV-0002/revoke", data={"csrf": csrf_of(rita.get(url + "/devices").text),
                                                               "confirm": "yes"}).status_code == 403
    assert signed_in(url, "olly").get(url + "/devices", allow_redirects=False).status_code == 403
    ada = signed_in(url, "ada")
    confirm = ada.get(url + "/devices/BC-REV-0002/revoke")
    assert confirm.status_code == 200 and "I confirm" in confirm.text
    token = csrf_of(confirm.text)
    assert ada.post(url + "/devices/BC-REV-0002/revoke", data={"confirm": "yes"}).status_code == 403
    assert ada.post(url + "/devices/BC-REV-0002/revoke", data={"csrf": token}).status_code == 400
    assert ada.get(url + "/devices?format=json").json()["devices"][1]["status"] == "active"
    r = ada.post(url + "/devices/BC-REV-0002/revoke", data={"csrf": token, "confirm": "yes"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/devices"
    by = {d["serial"]: d for d in ada.get(url + "/devices?format=json").json()["devices"]}
    assert by["BC-REV-0002"]["status"] == "revoked" and by["BC-REV-0002"]["revoked_utc"]
    assert by["BC-REV-0001"]["status"] == "active"
    # the camera is refused at once by the device API; its footage stays viewable and verifiable
    dev = requests.get(url + "/v1/device/status")
    assert dev.status_code == 401
    integrity = ada.get(f"{url}/recordings/{seeded.recordings['BC-REV-0002']}/integrity").json()
    assert integrity["ok"] is True and integrity["revoked"] is True
    # audited, and the global audit page (auditors, admins) shows it with the chain verified
    aud = signed_in(url, "aud")
    page = aud.get(url + "/audit")
    assert page.status_code == 200 and 'id="trail">verified<' in page.text
    entries = aud.get(url + "/audit?format=json").json()["entries"]
    revoke = [e for e in entries if e["action"] == "revoke"]
    assert revoke and revoke[0]["actor"] == "person:ada" and revoke[0]["target"] == "device:BC-REV-0002"
    assert rita.get(url + "/audit", allow_redirects=False).status_code == 403
    assert aud.get(url + "/audit?before=x").status_code == 400


def test_admins_manage_accounts_in_the_page_and_a_disabled_account_is_signed_out(seeded) -> None:
    url = seeded.backend.url
    ada, rita = signed_in(url, "ada"), signed_in(url, "rita")
    assert rita.get(url + "/people", allow_redirects=False).status_code == 403
    page = ada.get(url + "/people")
    assert page.status_code == 200 and 'data-person="olly"' in page.text
    token = csrf_of(page.text)
    assert rita.post(url + "/people", data={"csrf": csrf_of(rita.get(url + "/recordings").text), "name": "x",
                                           "role": "admin", "password": PASSWORD}).status_code == 403
    assert ada.post(url + "/people", data={"name": "pat", "role": "officer", "password": PASSWORD}).status_code == 403
    short = ada.post(url + "/people", data={"csrf": token, "name": "pat", "role": "officer", "password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text
    r = ada.post(url + "/people", data={"csrf": token, "name": "pat", "role": "officer", "password": PASSWORD},
                 allow_redirects=False)
    assert r.status_code == 303
    r = ada.post(url + "/people/pat/assign", data={"csrf": token, "serial": "BC-REV-0002", "since": "2025-11-21T04:40"},
                 allow_redirects=False)
    assert r.status_code == 303
    pat = signed_in(url, "pat")
    # ben wore BC-REV-0002 from 2000; pat from 04:40 on 2025-11-21, before the recording began (04:40:00.1)
    listed = [x["recording_id"] for x in pat.get(url + "/recordings?format=json").json()["recordings"]]
    assert listed == [seeded.recordings["BC-REV-0002"]]
    assert ada.post(url + "/people/pat/disable", data={"csrf": token}, allow_redirects=False).status_code == 303
    assert pat.get(url + "/recordings", allow_redirects=False).status_code == 303  # signed out at once
    assert ada.post(url + "/people/ada/disable", data={"csrf": token}).status_code == 400
    assert ada.post(url + "/people/nobody/disable", data={"csrf": token}).status_code == 404
    assert ada.post(url + "/people/pat/enable", data={"csrf": token}, allow_redirects=False).status_code == 303
    assert signed_in(url, "pat").get(url + "/recordings?format=json").status_code == 200
    # give BC-REV-0002 back to ben for the other tests of this module (the same start replaces pat)
    r = ada.post(url + "/people/ben/assign", data={"csrf": token, "serial": "BC-REV-0002", "since": "2025-11-21T04:40"},
                 allow_redirects=False)
    assert r.status_code == 303
    assert signed_in(url, "pat").get(url + "/recordings?format=json").json()["recordings"] == []
    entries = signed_in(url, "aud").get(url + "/audit?format=json").json()["entries"]
    actions = {(e["action"], e["target"]) for e in entries if e["actor"] == "person:ada"}
    assert {("user_add", "person:pat"), ("assign", "device:BC-REV-0002"), ("user_disable", "person:pat"),
            ("user_enable", "person:pat")} <= actions
