"""The review pages in a real browser (Debian's Chromium driven by Playwright) against a real backend
holding real sealed segments: sign in, find, play a whole multi-segment recording, jump to a marker,
check integrity in the server and in the browser, officers confined to their own recordings, and the
audit trail of all of it. Screenshots go to docs/review/ (docs/review.md shows them)."""

from __future__ import annotations

import json
import time

import pytest
import requests
from backendkit import BackendProcess, people
from playwright.sync_api import sync_playwright
from reviewkit import LyingProxy, launch, seed, shot, sign_in_page, wait_js

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    backend = BackendProcess(tmp / "backend")
    backend.start()
    try:
        yield seed(backend, tmp)
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def trail(backend: BackendProcess) -> list[dict]:
    admin = people(backend, backend.admin_token(f"auditor-{time.monotonic_ns()}", "admin"))
    entries = admin.get(backend.url + "/v1/audit", params={"limit": 10000}).json()["entries"]
    return [json.loads(e["entry"]) for e in entries]


def wait_loaded(page) -> None:
    wait_js(page, "window.bodycamPlayer && window.bodycamPlayer.complete === true")
    wait_js(page, "window.bodycamPlayer.browser !== null && window.bodycamPlayer.server !== null")


def test_sign_in_then_find_by_filter(seeded, page) -> None:
    url = seeded.backend.url
    page.goto(url + "/")
    assert "/login" in page.url
    page.fill("input[name=name]", "rita")
    page.fill("input[name=password]", "wrong password here")
    page.click("button[type=submit]")
    assert "wrong name or password" in page.inner_text("#login-error")
    sign_in_page(page, url, "rita")
    rows = page.locator("#recordings tbody tr")
    assert rows.count() == 2
    assert page.inner_text("#count") == "2 recordings"
    wait_js(page, "[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "recordings")
    page.select_option("select[name=device]", "BC-REV-0002")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**device=BC-REV-0002**")
    assert page.locator("#recordings tbody tr").count() == 1
    assert page.locator("#recordings tbody tr").get_attribute("data-recording") == seeded.recordings["BC-REV-0002"]
    page.fill("input[name=officer]", "olly")
    page.select_option("select[name=device]", "")
    page.check("input[name=markers]")
    page.click("#filters button[type=submit]")
    assert [page.locator("#recordings tbody tr").nth(i).get_attribute("data-recording")
            for i in range(page.locator("#recordings tbody tr").count())] == [seeded.recordings["BC-REV-0001"]]
    page.uncheck("input[name=markers]")
    page.check("input[name=gaps]")
    page.click("#filters button[type=submit]")
    assert page.locator("#recordings tbody tr").count() == 0
    page.goto(url + "/recordings?from=2025-11-22")
    assert page.locator("#recordings tbody tr").count() == 0
    page.goto(url + "/recordings?from=2025-11-21&to=2025-11-21")
    assert page.locator("#recordings tbody tr").count() == 2
    page.goto(url + "/recordings?from=yesterday")
    assert "give a UTC date as YYYY-MM-DD" in page.inner_text("#refusal")


def test_a_whole_recording_plays_across_segment_boundaries_without_a_stall(seeded, page) -> None:
    url = seeded.backend.url
    rid = seeded.recordings["BC-REV-0001"]
    sign_in_page(page, url, "rita")
    page.goto(f"{url}/recordings/{rid}")
    wait_loaded(page)
    state = page.evaluate("({b: window.bodycamPlayer.boundaries, e: window.bodycamPlayer.ends, "
                          "err: window.bodycamPlayer.errors})")
    assert state["err"] == []
    assert len(state["b"]) == len(seeded.segments["BC-REV-0001"]) - 1 >= 2
    end = state["e"][-1]
    assert 5.0 < end < 6.5  # 3 s pre-roll + 4.5 s after the press, 10 fps, minus what the rig held back
    page.evaluate("document.getElementById('video').play()")
    samples = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t, ended = page.evaluate("[document.getElementById('video').currentTime, "
                                 "document.getElementById('video').ended]")
        samples.append((time.monotonic(), t))
        if ended:
            break
        time.sleep(0.1)
    assert page.evaluate("document.getElementById('video').ended"), samples[-5:]
    assert samples[-1][1] == pytest.approx(end, abs=0.15)
    for boundary in state["b"]:  # crossed, in the same playback, with time moving all along
        assert any(t > boundary + 0.2 for _, t in samples) and any(t < boundary - 0.2 for _, t in samples)
    moving = [b for a, b in zip(samples, samples[1:], strict=False) if a[1] > 0 and not b[1] >= a[1] + 0.02]
    assert not [m for m in moving if m[1] < end - 0.15], f"playback stood still: {moving}"
    assert page.evaluate("window.bodycamPlayer.stalls") == 0
    assert page.inner_text("#server-badge") == "valid"
    assert page.inner_text("#browser-badge") == "valid"
    assert page.locator("#alarm").is_hidden()
    assert page.locator("#segments td.browser.good").count() == len(seeded.segments["BC-REV-0001"])
    shot(page, "recording")


def test_a_small_buffer_window_fetches_ahead_evicts_behind_and_still_plays_through(seeded, page) -> None:
    """What lets a 4-hour recording play: only a window around the playing position is in the browser.
    Here 0.5 s ahead and behind, against 2 s segments, so every boundary is crossed with the next segment
    fetched just in time and the played one dropped."""
    url = seeded.backend.url
    rid = seeded.recordings["BC-REV-0002"]
    sign_in_page(page, url, "rita")
    page.goto(f"{url}/recordings/{rid}?ahead=0.5&behind=0.5")
    wait_loaded(page)
    n = len(seeded.segments["BC-REV-0002"])
    assert page.evaluate("window.bodycamPlayer.appended") == 1  # only the first segment so far
    page.evaluate("document.getElementById('video').play()")
    wait_js(page, "document.getElementById('video').ended", timeout=30)
    st = page.evaluate("({a: window.bodycamPlayer.appended, e: window.bodycamPlayer.evicted, "
                       "s: window.bodycamPlayer.stalls, err: window.bodycamPlayer.errors, "
                       "t: document.getElementById('video').currentTime, end: window.bodycamPlayer.ends.slice(-1)[0]})")
    assert st["a"] == n and st["e"] >= n - 2 and st["s"] == 0 and st["err"] == [], st
    assert st["t"] == pytest.approx(st["end"], abs=0.15)
    # back to the start: the evicted first segment is fetched again and plays
    page.evaluate("document.getElementById('video').currentTime = 0.3")
    wait_js(page, "window.bodycamPlayer.appended > " + str(n))
    page.evaluate("document.getElementById('video').play()")
    wait_js(page, "document.getElementById('video').currentTime > 1.0 && !document.getElementById('video').seeking")
    assert page.inner_text("#browser-badge") == "valid" and page.inner_text("#server-badge") == "valid"


def test_jump_to_a_marker_step_a_frame_and_change_speed(seeded, page) -> None:
    url = seeded.backend.url
    rid = seeded.recordings["BC-REV-0001"]
    sign_in_page(page, url, "rita")
    page.goto(f"{url}/recordings/{rid}")
    wait_loaded(page)
    markers = page.evaluate("window.bodycamPlayer.markers")
    assert len(markers) == 1 and markers[0]["note"] == "suspect ran"
    # the keyframe strip: one decoded picture per segment, a click goes to that segment's start
    wait_js(page, "[...document.querySelectorAll('#strip img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#strip img").count() == len(seeded.segments["BC-REV-0001"])
    page.click("#strip img[data-sequence='2']")
    boundary = page.evaluate("window.bodycamPlayer.boundaries[0]")
    wait_js(page, f"Math.abs(document.getElementById('video').currentTime - {boundary}) < 0.05")
    # the marker was pressed 25 frames (2.5 s) after the trigger, which came after 12 frames of pre-roll
    # held from a 3 s buffer: its place on the timeline is where the manifest's UTC says
    page.click("#markers button.jump")
    wait_js(page, f"Math.abs(document.getElementById('video').currentTime - {markers[0]['t']}) < 0.05")
    # the label follows the played frame: under load it may still show the time before the jump for a
    # moment, so it is read once it has settled (or after 10 s, and then judged as it stands)
    label = "document.getElementById('manifest-utc').textContent"
    try:
        wait_js(page, f"document.getElementById('video').seeking === false && "
                      f"{label}.slice(0, 21) === {markers[0]['utc'][:21]!r}", timeout=10)
    except AssertionError:
        pass
    utc = page.evaluate(label)
    assert utc[:21] == markers[0]["utc"][:21], (utc, markers[0])
    before = page.evaluate("document.getElementById('video').currentTime")
    page.keyboard.press(".")
    wait_js(page, f"Math.abs(document.getElementById('video').currentTime - {before + 0.1}) < 0.01")
    page.keyboard.press(",")
    wait_js(page, f"Math.abs(document.getElementById('video').currentTime - {before}) < 0.01")
    page.keyboard.press("]")
    assert page.evaluate("document.getElementById('video').playbackRate") == 1.25
    page.select_option("#speed", "0.25")
    assert page.evaluate("document.getElementById('video').playbackRate") == 0.25
    page.keyboard.press("[")
    page.keyboard.press("[")
    assert page.evaluate("document.getElementById('video').playbackRate") == 0.25
    page.select_option("#speed", "2")
    assert page.evaluate("document.getElementById('video').playbackRate") == 2


def test_an_officer_sees_only_their_own_recordings_by_page_url_and_api(seeded, page) -> None:
    url = seeded.backend.url
    own, other = seeded.recordings["BC-REV-0001"], seeded.recordings["BC-REV-0002"]
    sign_in_page(page, url, "olly")
    assert [page.locator("#recordings tbody tr").nth(i).get_attribute("data-recording")
            for i in range(page.locator("#recordings tbody tr").count())] == [own]
    page.goto(f"{url}/recordings?device=BC-REV-0002")
    assert page.locator("#recordings tbody tr").count() == 0
    r = page.goto(f"{url}/recordings/{other}")
    assert r.status == 403
    assert "assigned to them" in page.inner_text("#refusal")
    for part in ("media", "manifest", "signature"):
        status = page.evaluate(f"fetch('/recordings/{other}/segments/1/{part}').then(r => r.status)")
        assert status == 403, part
    assert page.evaluate(f"fetch('/recordings/{other}/integrity').then(r => r.status)") == 403
    assert page.evaluate(f"fetch('/recordings/{other}/thumbnail.jpg').then(r => r.status)") == 403
    # another recording's segment through this officer's own recording is not served either
    assert page.evaluate(f"fetch('/recordings/{own}/segments/999/media').then(r => r.status)") == 404
    r = page.goto(f"{url}/recordings/{own}")
    assert r.status == 200
    wait_loaded(page)
    assert page.inner_text("#browser-badge") == "valid"
    # the JSON API, with the officer's API token
    token = seeded.backend.admin_token("olly-api", "officer")
    seeded.backend.cli("user", "assign", "olly-api", "BC-REV-0001", "--since", "2000-01-01T00:00:00Z")
    api = people(seeded.backend, token)
    listed = [x["recording_id"] for x in api.get(url + "/v1/recordings").json()["recordings"]]
    assert own in listed and other not in listed
    assert api.get(f"{url}/v1/recordings/{other}").status_code == 403
    assert api.get(f"{url}/v1/segments/BC-REV-0002/1").status_code == 403
    assert api.get(f"{url}/v1/segments/BC-REV-0002/1/media").status_code == 403  # officers do not download
    assert api.get(f"{url}/v1/recordings/{own}").status_code == 200
    assert api.get(f"{url}/v1/devices").status_code == 403


def test_every_sign_in_list_view_and_play_is_in_the_audit_trail_and_on_the_audit_page(seeded, page) -> None:
    url = seeded.backend.url
    rid = seeded.recordings["BC-REV-0002"]
    sign_in_page(page, url, "sam")
    page.goto(f"{url}/recordings/{rid}")
    wait_loaded(page)
    docs = [d for d in trail(seeded.backend) if d["actor"] == "person:sam"]
    actions = {(d["action"], d["target"]) for d in docs}
    assert ("sign_in", "person:sam") in actions
    assert ("list", "recordings") in actions
    assert ("view", f"recording:{rid}") in actions
    for n in range(1, len(seeded.segments["BC-REV-0002"]) + 1):
        assert ("play", f"segment:BC-REV-0002/{n:010d}") in actions
    assert all(d["role"] == "supervisor" and d["utc"] for d in docs)
    failed = [d for d in trail(seeded.backend) if d["action"] == "sign_in_failed"]
    assert any(d["target"] == "person:rita" for d in failed)
    page.click("a[href$='/audit']")
    page.wait_for_url("**/audit")
    assert page.inner_text("#signatures") == "valid" and page.inner_text("#trail") == "verified"
    text = page.inner_text("#audit")
    assert "person:sam" in text and "play" in text and "ingest" in text
    shot(page, "audit")
    page.click("header a[href='/devices']")
    page.wait_for_url("**/devices")
    assert page.locator("#devices tbody tr").count() == 2
    assert page.locator("a.revoke").count() == 0  # a supervisor sees devices, only an admin revokes
    shot(page, "devices")


@pytest.fixture
def tampered(tmp_path):
    """A backend whose store file of segment 2 was altered behind its back (one byte of video)."""
    from reviewkit import seed as seed_all

    backend = BackendProcess(tmp_path / "backend")
    backend.start()
    try:
        s = seed_all(backend, tmp_path)
        path = backend.data / "store" / "devices" / "BC-REV-0001" / "segments" / "seg-0000000002.mp4"
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        yield s
    finally:
        backend.stop()


def test_a_tampered_store_file_is_red_in_the_server_and_in_the_browser_and_a_lying_server_is_caught(
        tampered, browser) -> None:
    url = tampered.backend.url
    rid = tampered.recordings["BC-REV-0001"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    sign_in_page(page, url, "rita")
    assert page.goto(url + "/recordings").status == 200  # the list does not crash
    page.goto(f"{url}/recordings/{rid}")
    wait_loaded(page)
    assert page.inner_text("#server-badge") == "FAILED"
    assert page.inner_text("#browser-badge") == "FAILED"
    assert "seg-0000000002.mp4: SHA-256 mismatch (media altered)" in page.inner_text("#server-reasons")
    assert "segment 2: SHA-256 of the played video differs" in page.inner_text("#browser-reasons")
    assert page.locator('#segments tr[data-sequence="2"] td.browser.bad').count() == 1
    assert page.locator('#segments tr[data-sequence="1"] td.browser.good').count() == 1
    assert page.locator("#alarm").is_hidden()  # both say so: no disagreement
    shot(page, "tampered")
    ctx.close()

    proxy = LyingProxy(url)
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        sign_in_page(page, proxy.url, "rita")
        page.goto(f"{proxy.url}/recordings/{rid}")
        wait_loaded(page)
        assert proxy.lied >= 1
        assert page.inner_text("#server-badge") == "valid"  # what the lying server claims
        assert page.inner_text("#browser-badge") == "FAILED"
        assert page.locator("#alarm").is_visible()
        shot(page, "lying-server")
        ctx.close()
    finally:
        proxy.close()
    # the untouched recording of the other camera is still green
    s = requests.Session()
    from reviewkit import signed_in

    s = signed_in(url, "rita")
    assert s.get(f"{url}/recordings/{tampered.recordings['BC-REV-0002']}/integrity").json()["ok"] is True


@pytest.fixture
def forged_certificate(tmp_path):
    """A backend whose stored device certificate for camera 1 was swapped for one with the same key,
    subject and issuer name, signed by a key that is not the agency CA's."""
    import datetime as dt
    import sqlite3

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from reviewkit import seed as seed_all

    backend = BackendProcess(tmp_path / "backend")
    backend.start()
    try:
        s = seed_all(backend, tmp_path)
        con = sqlite3.connect(backend.data / "backend.sqlite3")
        key_id, pem = con.execute("SELECT key_id, pem FROM certificates WHERE serial = 'BC-REV-0001'").fetchone()
        real = x509.load_pem_x509_certificate(pem.encode())
        now = dt.datetime.now(dt.UTC)
        forged = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.issuer)
                  .public_key(real.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                  .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
        con.execute("UPDATE certificates SET pem = ? WHERE key_id = ?",
                    (forged.public_bytes(serialization.Encoding.PEM).decode(), key_id))
        con.commit()
        con.close()
        yield s
    finally:
        backend.stop()


def test_a_device_certificate_not_signed_by_the_agency_ca_is_red_in_the_browser_and_the_server(
        forged_certificate, browser) -> None:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    b = forged_certificate.backend
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    sign_in_page(page, b.url, "rita")
    page.goto(f"{b.url}/recordings/{forged_certificate.recordings['BC-REV-0001']}")
    wait_loaded(page)
    assert page.inner_text("#browser-badge") == "FAILED"
    assert "device certificate is not signed by the agency CA" in page.inner_text("#browser-reasons")
    assert page.inner_text("#server-badge") == "FAILED"
    assert "not signed by the agency CA" in page.inner_text("#server-reasons")
    ca = x509.load_pem_x509_certificate((b.data / "keys" / "ca.cert.pem").read_bytes())
    want = hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    wait_js(page, "document.getElementById('ca-fingerprint').textContent.includes(':')")
    assert page.inner_text("#ca-fingerprint").replace(":", "") == want
    # the other camera's certificate is the CA's own: green in the same browser
    page.goto(f"{b.url}/recordings/{forged_certificate.recordings['BC-REV-0002']}")
    wait_loaded(page)
    assert page.inner_text("#browser-badge") == "valid" and page.inner_text("#server-badge") == "valid"
    ctx.close()


def test_a_view_only_share_link_plays_is_audited_and_is_refused_once_revoked_or_expired(seeded, browser) -> None:
    import sqlite3

    url = seeded.backend.url
    rid = seeded.recordings["BC-REV-0002"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    sign_in_page(page, url, "sam")
    page.goto(f"{url}/recordings/{rid}")
    page.fill("#share-form input[name=note]", "CPS 01YE1234525")
    page.fill("#share-form input[name=days]", "7")
    page.click("#share-form button[type=submit]")
    link = page.input_value("#share-link")
    assert link.startswith(f"{url}/s/")
    public_id = link and page.inner_text("main").split("share:")[1].split(".")[0].strip()
    # someone with no account, in another browser profile
    guest = browser.new_context(viewport={"width": 1280, "height": 900})
    g = guest.new_page()
    g.goto(link)
    wait_loaded(g)
    assert "view-only" in g.inner_text("#shared")
    assert g.inner_text("#browser-badge") == "valid" and g.inner_text("#server-badge") == "valid"
    assert g.locator("a[href*='download=1']").count() == 0 and g.locator("#export").count() == 0
    assert g.locator("header nav").count() == 0
    g.evaluate("document.getElementById('video').play()")
    wait_js(g, "document.getElementById('video').currentTime > 1")
    shot(g, "shared")
    token = link.rsplit("/", 1)[1]
    assert g.url == f"{link}/r/{rid}"
    assert g.evaluate(f"fetch('/s/{token}/r/{rid}/segments/99/media').then(r => r.status)") == 404
    other = seeded.recordings["BC-REV-0001"]
    assert g.evaluate(f"fetch('/s/{token}/r/{other}/segments/1/media').then(r => r.status)") == 404
    assert g.evaluate("fetch('/recordings').then(r => r.redirected && r.url.includes('/login'))")
    docs = [d for d in trail(seeded.backend) if d["actor"] == f"share:{public_id}"]
    assert {d["action"] for d in docs} >= {"view", "play", "check"}
    assert any(d["action"] == "share" and d["data"]["share"] == public_id and d["actor"] == "person:sam"
               for d in trail(seeded.backend))
    # revoked: refused at once, and the refusal is audited
    page.goto(f"{url}/recordings/{rid}")
    page.click(f"#shares tr[data-share='{public_id}'] button")
    assert page.inner_text(f"#shares tr[data-share='{public_id}'] td.state") == "revoked"
    r = g.goto(link)
    assert r.status == 410 and "it was revoked" in g.inner_text("#refusal")
    assert g.evaluate(f"fetch('/s/{token}/r/{rid}/segments/1/media').then(r => r.status)") == 410
    # expired: a second link, its end moved into the past in the database (time passing, quickly)
    page.goto(f"{url}/recordings/{rid}")
    page.fill("#share-form input[name=days]", "1")
    page.click("#share-form button[type=submit]")
    link2 = page.input_value("#share-link")
    with sqlite3.connect(seeded.backend.data / "backend.sqlite3") as con:
        con.execute("UPDATE shares SET expires_ns = 1000 WHERE revoked_ns IS NULL")
    r = g.goto(link2)
    assert r.status == 410 and "it expired" in g.inner_text("#refusal")
    refused = [d for d in trail(seeded.backend) if d["action"] == "share_refused"]
    assert {d["data"]["reason"] for d in refused} == {"it was revoked", "it expired"}
    assert signed_in_api_refuses_share_creation(seeded)
    guest.close()
    ctx.close()


def signed_in_api_refuses_share_creation(seeded) -> bool:
    """A reviewer cannot create share links (supervisors and admins can)."""
    from reviewkit import csrf_of, signed_in

    url = seeded.backend.url
    s = signed_in(url, "rita")
    token = csrf_of(s.get(url + "/recordings").text)
    r = s.post(f"{url}/recordings/{seeded.recordings['BC-REV-0002']}/shares", data={"csrf": token, "days": "1"})
    return r.status_code == 403 and "share.manage" in r.text
