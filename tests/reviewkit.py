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
