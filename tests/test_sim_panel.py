"""The panel as an officer or reviewer reads it: words instead of internal names, a hold that shows
its progress, feedback for every key, an exit summary whose counts match the files, and a short
refusal when another simulator owns the data directory. Driven for real: the daemon and the panel in
a pty, as `./scripts/sim` runs them."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from bodycam.daemon.words import clock_words, dock_words, key_name, press_words
from bodycam.sim.panel import PanelView, render
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
SMOKE_DEVICE = ROOT / "config" / "scenarios" / "smoke-device.toml"
ENV = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(ROOT / "firmware")}
INTERNAL = ("ignored_hint", "start_recording", "stop_recording", "toggle_stealth", "last_sync_utc",
            "measured_offset_ms", "offset_ms", "previous_boot_sync", "[docked]")


def draw(view: PanelView, width: int = 100) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(render(view))
    return console.export_text()


def test_replies_and_clock_read_as_words() -> None:
    ignored = {"press": {"intent": "ignored_hint", "state_before": "buffering", "state": "buffering"}}
    assert press_words(ignored) == "does nothing while buffering (one short tone)"
    started = {"press": {"intent": "start_recording", "state_before": "buffering", "state": "recording"}}
    assert press_words(started) == "recording started (buffering -> recording)"
    assert dock_words({"state": "docked", "docked": True}).startswith("in the dock, docked")
    synced = {"status": "synced", "last_sync_utc": "2026-12-01T20:57:23.875Z", "measured_offset_ms": 0.082,
              "offset_ms": 0.082}
    assert clock_words(synced) == "synced with the backend at 20:57:23 UTC, off by +0.1 ms"
    assert clock_words({**synced, "offset_ms": 0.0}).endswith("(+0.0 ms after correction)")
    assert clock_words({"status": "not_set"}).startswith("not set")
    earlier = {"status": "unsynced", "previous_boot_sync": {"last_sync_utc": "2026-11-30T08:00:01.000Z"}}
    assert clock_words(earlier).endswith("last synced 2026-11-30 08:00:01 UTC")
    assert (key_name("x"), key_name("\n"), key_name("\x01")) == ("x", "Enter", "Ctrl-A")


def test_the_panel_draws_no_internal_names_and_shows_a_hold() -> None:
    status = {"state": "recording", "clock": {"status": "synced", "last_sync_utc": "2026-12-01T20:57:23.875Z",
                                              "measured_offset_ms": 1.5, "offset_ms": 1.5},
              "segments_sealed": 3, "segments_on_disk": 1, "segments_offloaded": 2, "pending_uploads": 1}
    view = PanelView(status=status, holding=("record", 1.5, 3.0), now=0.1)
    view.activity.append("10:00:00  s  single press (marker) -> "
                         + press_words({"press": {"intent": "ignored_hint", "state_before": "buffering"}}))
    text = draw(view, width=130)
    assert not [w for w in INTERNAL if w in text], text
    assert re.search(r"Holding\s+█{10}░{10} 1\.5 / 3 s  record button \(then recording stops\)", text)
    assert "3 segments sealed this run; on the device: 1 on disk, 2 offloaded, 1 to upload" in text


def test_the_sound_row_shows_a_live_level_and_whether_sound_is_recorded() -> None:
    base = {"source": "synthetic", "pre_event_audio": False, "xruns": 0, "missing_samples": 0, "fault": None}
    quiet = draw(PanelView(status={"state": "buffering", "audio": {**base, "level_dbfs": -60.0, "recording": False}}))
    loud = draw(PanelView(status={"state": "recording", "audio": {**base, "level_dbfs": -6.0, "recording": True}}))
    assert re.search(r"Sound\s+░{20}\s+-60\.0 dBFS  not recording sound \(pre-event: video only\)", quiet)
    assert re.search(r"Sound\s+█{18}░{2}\s+-6\.0 dBFS  ● recording sound", loud)
    waiting = draw(PanelView(status={"state": "recording", "audio": {**base, "level_dbfs": -20.0, "recording": False}}))
    assert "sound starts at the press" in waiting
    lost = draw(PanelView(status={"state": "recording", "audio": {**base, "level_dbfs": -20.0, "recording": True,
                                                                  "xruns": 2, "missing_samples": 960}}))
    assert "2 xruns, 960 samples lost" in lost
    assert "off (no microphone: video only)" in draw(PanelView(status={"state": "buffering", "audio": None}))


class Pty:
    """`bodycam sim --panel` in a pseudo-terminal, read as a person would see it (escapes stripped)."""

    def __init__(self, data: Path, cols: int = 100) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execvpe(sys.executable, [sys.executable, "-m", "bodycam.cli", "sim", "--panel", "--config",
                                        str(SMOKE_DEVICE), "--data", str(data)],
                       {**ENV, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": "45"})
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 45, cols, 0, 0))
        self.screen = ""

    def until(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            if m := re.search(pattern, self.screen):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen; screen ends:\n{self.screen[-3000:]}")
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    continue
                self.screen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r", "", chunk)

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def finish(self) -> int:
        deadline = time.monotonic() + 40
        while (done := os.waitpid(self.pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            self.until_quiet()
        if done[0] == 0:
            os.kill(self.pid, signal.SIGTERM)
            done = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(done[1])

    def until_quiet(self) -> None:
        if select.select([self.fd], [], [], 0.1)[0]:
            try:
                self.screen += os.read(self.fd, 65536).decode(errors="replace")
            except OSError:
                time.sleep(0.1)


@pytest.mark.slow
def test_driving_the_panel(tmp_path: Path) -> None:
    panel = Pty(tmp_path)
    try:
        panel.until("BUFFERING")
        panel.until(r"\? help")
        panel.send("x")
        panel.until(r"x: not a key; press \? for help")
        panel.send("s")
        panel.until(r"does nothing while buffering \(one short tone\)")
        panel.until(r"Sound\s+█+░*\s+-\d+\.\d dBFS  not recording sound")
        panel.send("d")
        panel.until(r"recording started \(buffering -> recording\)")
        panel.until(r"● recording sound")
        time.sleep(2.5)                                 # a sealed 2 s segment or two
        panel.send("h")
        panel.until(r"Holding\s+█*░+ [0-2]\.\d / 3 s  record button \(then recording stops\)", timeout=3)
        panel.send("d")                                 # the finger is still on the record button
        panel.until(r"wait: the record button is still held")
        panel.until(r"recording stopped \(recording -> buffering\)", timeout=6)
        panel.send("k")
        panel.until(r"in the dock, docked")
        panel.until(r"synced with the backend at \d\d:\d\d:\d\d UTC")
        panel.until(r"Offload\s+done", timeout=30)
        panel.send("u")
        panel.until(r"out of the dock, buffering")
        panel.send("d")
        panel.until(r"recording started", timeout=10)
        time.sleep(1.0)
        assert not [w for w in INTERNAL if w in panel.screen]
        panel.send("\x03")                              # Ctrl-C: the daemon seals the open segment
        m = panel.until(r"this run   (\d+) segments sealed this run; on the device: (\d+) on disk, (\d+) offloaded",
                        timeout=40)
    finally:
        code = panel.finish()
    sealed, on_disk, offloaded = map(int, m.groups())
    device = tmp_path / "device"
    assert on_disk == len(list((device / "segments").glob("seg-*.mp4"))) >= 1
    assert offloaded == len(list((device / "receipts").glob("seg-*.receipt.json"))) >= 1
    assert sealed == on_disk + offloaded                # a fresh data dir: every segment is this run's
    assert f"{sealed} segments sealed this run" in panel.screen.split("last status:")[1]
    assert code == 130, panel.screen[-2000:]


@pytest.mark.slow
def test_a_second_simulator_on_the_same_data_is_one_short_line(tmp_path: Path) -> None:
    first = Pty(tmp_path)
    try:
        first.until("BUFFERING")
        second = subprocess.run(["script", "-qec", f"{sys.executable} -m bodycam.cli sim --panel --config "
                                 f"{SMOKE_DEVICE} --data {tmp_path}", "/dev/null"],
                                capture_output=True, text=True, env=ENV, timeout=60)
        lines = [ln for ln in second.stdout.replace("\r", "").splitlines() if ln.strip()]
        assert second.returncode == 2 and len(lines) == 1, second.stdout
        assert lines[0] == f"bodycam: {tmp_path} is in use by another simulator; quit it or pass --data NEW_DIR"
        assert len(lines[0]) - len(str(tmp_path)) < 80
        starts = [ln for ln in (tmp_path / "daemon.log").read_text().splitlines() if ln.startswith("--- ")]
        assert len(starts) == 1                         # the second simulator started no daemon
        first.send("q")
        first.until("exit code 0", timeout=40)
    finally:
        assert first.finish() == 0


def test_bodycam_status_reads_as_words() -> None:
    """`bodycam status` on a docked camera: the state once, not `docked [docked]`; the clock in words."""
    from bodycam.cli_status import render as status_text

    s = {"state": "docked", "docked": True, "stealth": False, "serial": "BC-1", "officer_id": "PC-1",
         "firmware_version": "0.1", "uptime_seconds": 5.0, "buffer_seconds": 0.0, "buffer_bytes": 0,
         "frames_captured": 10, "dropped": 0, "segments_sealed": 1, "pending_uploads": 0, "free_bytes": 10**9,
         "headroom_bytes": 10**8, "reserve_bytes": 10**7, "battery_percent": None,
         "clock": {"status": "synced", "last_sync_utc": "2026-12-01T20:57:23.875Z", "measured_offset_ms": 3.0,
                   "offset_ms": 3.0}}
    text = status_text(s)
    assert text.splitlines()[0] == "state:    docked"
    assert "clock:    synced with the backend at 20:57:23 UTC, off by +3.0 ms" in text
    assert status_text({**s, "state": "fault", "stealth": True}).splitlines()[0] == \
        "state:    fault, in the dock, stealth on"
    assert not [w for w in INTERNAL if w in text]


def test_the_summary_names_bodycam_so_it_runs_from_the_users_shell(tmp_path: Path) -> None:
    """After `./scripts/sim` the user's shell has no .venv on its PATH: the printed verify command
    must run there as printed; with the venv activated, plain `bodycam` does."""
    data = tmp_path / "device"
    (data / "segments").mkdir(parents=True)
    code = ("from pathlib import Path; from bodycam.sim import evidence; "
            f"print(evidence.render(evidence.collect(Path({str(data)!r})))[-1])")
    env = {k: v for k, v in ENV.items() if k != "VIRTUAL_ENV"}
    line = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split("verify", 1)[1].strip()
    plain_shell = {**env, "PATH": "/usr/bin:/bin"}
    ran = subprocess.run(["bash", "-c", line], env=plain_shell, cwd=ROOT, capture_output=True, text=True)
    # an empty device: verify runs and fails on the evidence, not "command not found" (127)
    assert ran.returncode == 1 and "no segments or audit log found" in ran.stdout, (line, ran.stdout, ran.stderr)
    active = {**env, "VIRTUAL_ENV": sys.prefix}
    line = subprocess.run([sys.executable, "-c", code], env=active, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert line.split()[1] == "bodycam"


def test_after_stop_counts_the_segment_sealed_as_the_daemon_stopped(tmp_path: Path) -> None:
    """Both summaries (panel and scenario) recount from the files once the daemon has stopped."""
    from bodycam.sim.evidence import after_stop

    (tmp_path / "segments").mkdir()
    (tmp_path / "receipts").mkdir()
    for n in (3, 4, 5):                                 # 1 and 2 were offloaded; 5 was sealed at SIGTERM
        (tmp_path / "segments" / f"seg-{n:010d}.mp4").write_bytes(b"x")
    for n in (1, 2):
        (tmp_path / "receipts" / f"seg-{n:010d}.receipt.json").write_text("{}")
    (tmp_path / "receipts" / "audit-0000000001-0000000009.receipt.json").write_text("{}")
    last = {"state": "recording", "segments_sealed": 4, "segments_on_disk": 2}
    assert after_stop(last, tmp_path) == {"state": "recording", "segments_sealed": 5, "segments_on_disk": 3,
                                          "segments_offloaded": 2}
