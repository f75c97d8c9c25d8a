"""Test kit for the review pages: a real backend holding real sealed segments from the recording rig,
people with passwords and camera assignments, and Debian's Chromium driven by Playwright (PyPI).

Nothing is downloaded at test time: Playwright starts /usr/bin/chromium (installed by
scripts/_bootstrap.sh), never a browser of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from backendkit import BackendProcess, enrolled_device, segments_of
from rig import Rig

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "review"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
PASSWORD = "correct horse battery"
PEOPLE = {"ada": "admin", "sam": "supervisor", "rita": "reviewer", "olly": "officer", "ben": "officer",
          "aud": "auditor"}


def record_with_marker(tmp: Path, serial: str, *, officer: str, after: int = 45, marker_at: int = 25) -> Rig:
    """A real multi-segment recording (10 fps, 2 s segments, 3 s pre-roll) with one officer's marker."""
    rig = Rig(tmp, device={"serial": serial, "officer_id": officer})
    rig.frames(12)
    rig.trigger()
    rig.frames(marker_at)
    rig.recorder.marker(mono_ns=rig.clock.monotonic_ns(), utc_ns=rig.clock.utc_ns(), note="suspect ran")
    rig.frames(after - marker_at)
    rig.recorder.stop()
    return rig


def user_add(backend: BackendProcess, name: str, role: str, password: str = PASSWORD) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bodycam.cli", "backend", "user", "add", name, "--role", role, "--password-stdin",
         "--config", str(backend.config)], input=password + "\n", capture_output=True, text=True, timeout=60)


@dataclass
class Seeded:
    backend: BackendProcess
    recordings: dict[str, str] = field(default_factory=dict)  # serial -> recording id
    segments: dict[str, list[Any]] = field(default_factory=dict)  # serial -> rig Segments


def seed(backend: BackendProcess, tmp: Path) -> Seeded:
    """Two cameras, each worn by its own officer, each with one uploaded multi-segment recording."""
    out = Seeded(backend)
    for name, role in PEOPLE.items():
        r = user_add(backend, name, role)
        assert r.returncode == 0, r.stderr
    for serial, officer in (("BC-REV-0001", "olly"), ("BC-REV-0002", "ben")):
        rig = record_with_marker(tmp / serial, serial, officer=officer)
        dev = enrolled_device(backend, rig)
        segs = segments_of(rig)
        for seg in segs:
            r = dev.upload(seg)
            assert r.status_code == 200, r.text
        backend.cli("user", "assign", officer, serial, "--since", "2000-01-01T00:00:00Z")
        out.segments[serial] = segs
        out.recordings[serial] = f"{serial}-{segs[0].sequence:010d}"
    return out


def signed_in(url: str, name: str, password: str = PASSWORD) -> requests.Session:
    """A requests session signed in through the real form (its CSRF cookie and field)."""
    s = requests.Session()
    page = s.get(url + "/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = s.post(url + "/login", data={"name": name, "password": password, "csrf": token, "next": "/recordings"},
               allow_redirects=False)
    assert r.status_code == 303, r.text
    return s


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def sign_in_page(page: Any, url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(url + "/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/recordings**")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


class LyingProxy:
    """Stands between the browser and a real backend and tells the page every check passed: the
    integrity verdict is rewritten to all green, and the segment hashes it reports to those of the bytes
    it serves. The browser's own check must still see what the bytes are."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import json
        import threading

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length",)}
                r = requests.request(self.command, upstream + self.path, headers=headers, data=body,
                                     allow_redirects=False, timeout=30)
                content = r.content
                if self.path.split("?")[0].endswith("/integrity") and r.status_code == 200:
                    doc = r.json()
                    doc.update(ok=True, errors=[], missing_sequences=[])
                    for s in doc["segments"]:
                        s.update(ok=True, problems=[])
                    content = json.dumps(doc).encode()
                    proxy.lied += 1
                self.send_response(r.status_code)
                for k, v in r.raw.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_HEAD = _forward

        self.lied = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_js(page: Any, expression: str, timeout: float = 30.0) -> Any:
    """Poll a JavaScript expression until truthy. (Playwright's wait_for_function evaluates a string with
    eval inside the page, which the pages' Content-Security-Policy rightly forbids; evaluate() does not.)"""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)
