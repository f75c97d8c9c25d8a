"""systemd units: `systemd-analyze verify` is silent on every unit, and bodycam.service's exposure
(`systemd-analyze security --offline=yes`) is no worse than the figure the README states (1.5); with the
set-clock drop-in (CAP_SYS_TIME) it measures 2.2, held at most 2.5.

verify checks that ExecStart= binaries exist, so it runs against a fake root holding this host's
stock units, our units, and stub executables for every command our units name.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from systemdkit import analyze, exposure

REPO = Path(__file__).resolve().parents[1]
UNITS = sorted(u for u in (REPO / "systemd").glob("bodycam*.*") if u.is_file())
SET_CLOCK = REPO / "systemd/dropins/bodycam-set-clock.conf"
MAX_EXPOSURE_WITH_SET_CLOCK = 2.5


def readme_exposure() -> float:
    """The exposure README.md promises for the units in systemd/ (its own words, so they cannot drift)."""
    m = re.search(r"`systemd-analyze security` exposure (\d+\.\d+)", (REPO / "README.md").read_text())
    assert m, "README.md no longer states the units' systemd-analyze security exposure"
    return float(m.group(1))



@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unit-root")
    stock = Path("/usr/lib/systemd/system")
    assert stock.is_dir(), "no stock systemd units on this machine (apt-get install systemd)"
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    for unit in UNITS:
        shutil.copy(unit, root / "usr/lib/systemd/system" / unit.name)
        for line in unit.read_text().splitlines():
            m = re.match(r"^Exec\w*=[-+!@:]*(/\S+)", line)
            if m:
                exe = root / m.group(1).lstrip("/")
                exe.parent.mkdir(parents=True, exist_ok=True)
                exe.write_text("#!/bin/sh\n")
                exe.chmod(0o755)
    return root


def test_every_unit_is_there() -> None:
    names = {u.name for u in UNITS}
    assert {
        "bodycam.service",
        "bodycam-firstboot.service",
        "bodycam-enrol.service",
        "bodycam-enrol.timer",
    } <= names


@pytest.mark.parametrize("unit", [u.name for u in UNITS])
def test_verify_is_silent(fake_root: Path, unit: str) -> None:
    proc = analyze("verify", f"--root={fake_root}", unit)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )


def test_verify_would_catch_a_bad_line(fake_root: Path) -> None:
    """The test above is only worth something if verify complains about mistakes (it exits 0 anyway)."""
    bad = fake_root / "usr/lib/systemd/system/bad-example.service"
    bad.write_text(
        (REPO / "systemd/bodycam.service").read_text().replace("WatchdogSec=10s", "WatchdogSec=soon")
    )
    try:
        proc = analyze("verify", f"--root={fake_root}", bad.name)
        assert "WatchdogSec" in proc.stdout + proc.stderr or "sec value" in proc.stdout + proc.stderr
    finally:
        bad.unlink()



def test_daemon_exposure_is_what_the_readme_says() -> None:
    score = exposure(REPO / "systemd/bodycam.service")
    print(f"bodycam.service exposure {score}")
    assert score <= readme_exposure(), f"bodycam.service rates {score}; README.md says {readme_exposure()}"


def test_set_clock_drop_in_stays_under_2_5(fake_root: Path) -> None:
    """A config with [offload] set_clock gets a CAP_SYS_TIME drop-in; it must still verify and rate <= 2.5."""
    drop = fake_root / "usr/lib/systemd/system/bodycam.service.d"
    drop.mkdir()
    shutil.copy(SET_CLOCK, drop / "set-clock.conf")
    try:
        proc = analyze("verify", f"--root={fake_root}", "bodycam.service")
        assert not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
        proc = analyze("security", "--offline=yes", f"--root={fake_root}", "--no-pager", "bodycam.service")
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        assert m and readme_exposure() < float(m.group(1)) <= MAX_EXPOSURE_WITH_SET_CLOCK, proc.stdout
        assert "CAP_SYS_TIME" in proc.stdout
    finally:
        shutil.rmtree(drop)


def test_enrol_exposure_is_what_the_readme_says() -> None:
    assert exposure(REPO / "systemd/bodycam-enrol.service") <= readme_exposure()


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_daemon_unit_contract() -> None:
    """The properties the issue asks for, read back from the unit file."""
    s = _settings("bodycam.service")
    assert s["Type"] == ["notify"] and s["Restart"] == ["always"] and s["WatchdogSec"]
    assert s["User"] == ["bodycam"] and set(s["SupplementaryGroups"][0].split()) == {"video", "gpio", "audio"}
    assert s["ProtectSystem"] == ["strict"] and s["ReadWritePaths"] == ["/var/lib/bodycam"]
    assert s["NoNewPrivileges"] == ["yes"] and s["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert allowed == {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip", "char-alsa"}
    assert "PrivateDevices" not in s  # it would hide /dev/video*
    assert s["ExecStart"] == ["/opt/bodycam/venv/bin/bodycam run --config /etc/bodycam/device.toml"]
    assert "bodycam-firstboot.service" in s["Requires"][0]


def test_firstboot_unit_runs_the_script_once() -> None:
    s = _settings("bodycam-firstboot.service")
    assert s["ExecStart"] == ["/usr/bin/python3 /usr/lib/bodycam/firstboot"]
    assert s["ConditionPathExists"] == ["!/var/lib/bodycam-firstboot/done"]
    assert "bodycam.service" in s["Before"][0]


def test_enrol_timer_never_reruns_a_failed_first_boot() -> None:
    """The timer fires every 2 min; if the enrol unit pulled first boot in, a failed one would loop."""
    s = _settings("bodycam-enrol.service")
    assert "Requires" not in s and not any("firstboot" in w for w in s.get("Wants", []))
    assert "bodycam-firstboot.service" in s["After"][0]
    assert "/var/lib/bodycam-firstboot/done" in s["ConditionPathExists"]
