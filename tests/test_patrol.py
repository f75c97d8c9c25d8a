"""The shipped patrol scenario, headless, as CI runs it: real daemon, real backend, about 90 s.

It is the newcomer's path through the whole product: a full 30 s pre-event buffer, two recordings
(a marker, stealth), verify, then the dock uploads everything to the embedded backend, each receipt is
checked before the camera frees its copy, and the device's evidence still verifies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bodycam.verify import verify_paths

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_patrol_scenario_passes_headless(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bodycam.cli", "sim", "--scenario",
                          str(ROOT / "config" / "scenarios" / "patrol.toml"), "--data", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "PASSED: scenario 'patrol'" in out.stdout
    assert "evidence in" in out.stdout  # it tells the user where the evidence is
    report = verify_paths([tmp_path / "device"])
    assert report.ok, report.render_text()
