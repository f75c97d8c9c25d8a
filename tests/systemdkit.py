"""systemd-analyze for the unit tests of the camera (tests/test_units.py) and of the backend fleet
(tests/test_deploy.py): one way to run it and one way to read a unit's exposure."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: apt-get install systemd (scripts/_bootstrap.sh does this as root)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False)


def exposure(unit: Path) -> float:
    """The unit alone, as it is installed (a stray .d/ beside it would be read too)."""
    with tempfile.TemporaryDirectory() as d:
        alone = Path(d) / unit.name
        shutil.copy(unit, alone)
        proc = analyze("security", "--offline=yes", "--no-pager", str(alone))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))
