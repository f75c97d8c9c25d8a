"""The simulator: scenario files, the scenario runner, the panel.

Parsing and drawing are pure and tested directly. The runner is tested twice: against a tiny
in-process server that speaks the control protocol (fast, and it can misbehave on purpose), and
end to end against the real daemon, as `bodycam sim` runs it, in a subprocess (and in a pty for the
panel). The patrol scenario is only parsed here: it takes a minute and a half by design.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socketserver
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from bodycam import config as configmod
from bodycam.daemon.control import socket_path
from bodycam.sim import scenario as sc
from bodycam.sim.panel import PanelView, led_states, render
from bodycam.sim.process import DaemonProcess, readable
from bodycam.sim.runner import EXIT_FAILED, EXIT_PASSED, ScenarioRunner
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "config" / "scenarios"
SMOKE = SCENARIOS / "smoke.toml"
PATROL = SCENARIOS / "patrol.toml"
ENV = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(ROOT / "firmware")}


def scenario_text(*steps: str, head: str = 'name = "t"') -> str:
    return f"[scenario]\n{head}\n" + "".join(f"[[step]]\n{s}\n" for s in steps)


# ----------------------------------------------------------------------------------- parsing

def test_shipped_scenarios_parse_and_name_valid_device_configs() -> None:
    smoke, patrol = sc.load(SMOKE), sc.load(PATROL)
    for s in (smoke, patrol):
        assert s.config is not None and s.config.is_file()
        configmod.load(s.config)
    assert configmod.load(patrol.config).buffer.pre_event_seconds == 30
    waits = lambda s: sum(st.seconds for st in s.steps)  # noqa: E731
    assert waits(patrol) >= 32, "patrol must let the whole 30 s buffer fill before the first press"
    assert waits(smoke) < 12, "smoke is the fast test: keep it well under 20 s"
    assert [st.action for st in smoke.steps][-1] == "verify"
    assert sum(1 for st in patrol.steps if st.action == "press" and st.gesture == "double") == 2


def test_steps_are_normalised() -> None:
    s = sc.parse(scenario_text('hold = true\nbutton = "function"', "marker = true", 'press = "double"',
                               'expect = { segments_sealed_at_least = 3, clock = { status = "synced" } }'
                               "\nwithin = 4"))
    hold, marker, double, expect = s.steps
    assert (hold.action, hold.gesture, hold.button) == ("press", "hold", "function")
    assert (marker.action, marker.gesture, marker.button) == ("press", "single", "record")
    assert (double.number, double.gesture) == (3, "double")
    assert [c.describe() for c in expect.checks] == ["segments_sealed >= 3", "clock.status = 'synced'"]
    assert expect.within == 4.0


@pytest.mark.parametrize(("steps", "fragment"), [
    (['presss = "double"'], "step 1: presss: unknown key"),
    (["wait = 1", 'press = "tripple"'], "step 2: press = 'tripple': must be one of"),
    (["wait = -1"], "step 1: wait = -1: must be a number of seconds"),
    (['wait = 1\npress = "double"'], "step 1: wait and press: one action per step"),
    (['note = "nothing to do"'], "step 1: no action"),
    (["wait = 2\nwithin = 3"], "step 1: within: only applies to expect_state, expect"),
    (['dock = true\nbutton = "function"'], "step 1: button: only applies to press, hold"),
    (["marker = false"], "step 1: marker = False: must be true"),
    (['expect_state = "recordin"'], "step 1: expect_state = 'recordin': must be one of"),
    (["wait = 1", "wait = 1", "expect = { segments_seald_at_least = 3 }"],
     "step 3: expect segments_seald_at_least: unknown status field 'segments_seald'"),
    (['expect = { dropped_at_most = "none" }'], "step 1: expect dropped_at_most = 'none': must be a number"),
    (["expect = { stealth = 1 }"], "step 1: expect stealth = 1: must be true or false"),
    (["expect = { clock = 3 }"], "step 1: expect clock: clock is a table"),
    (["expect = {}"], "step 1: expect = {}: must be a table of checks"),
    (["battery = 101"], "step 1: battery = 101: must be a whole number of percent"),
    (['press = "hold"\nbutton = "side"'], "step 1: button = 'side': must be one of"),
])
def test_bad_step_is_one_line_naming_step_and_key(steps: list[str], fragment: str) -> None:
    with pytest.raises(sc.ScenarioError) as e:
        sc.parse(scenario_text(*steps), path=Path("x.toml"))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("x.toml: ")
    assert fragment in msg


@pytest.mark.parametrize(("text", "fragment"), [
    ("[[step]]\nwait = 1\n", "[scenario]: missing"),
    ('[scenario]\nname = "x"\n', "no steps"),
    ('[scenario]\nname = "x"\n[step]\nwait = 1\n', "[[step]] table (double brackets)"),
    ('[scenario]\nname = "x"\nconfig = "nope.toml"\n[[step]]\nwait = 1\n',
     "config = 'nope.toml': no such file"),
    ('[scenario]\nname = "x"\nauthor = "me"\n[[step]]\nwait = 1\n', "[scenario] author: unknown key"),
    ('[scenario]\nname = "x"\n[[steps]]\nwait = 1\n', "[steps]: unknown table"),
    ("[scenario\n", "not valid TOML"),
])
def test_bad_file_is_one_line(text: str, fragment: str, tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(sc.ScenarioError) as e:
        sc.load(p)
    assert "\n" not in str(e.value) and fragment in str(e.value)


def test_checks_compare_what_the_status_says() -> None:
    status = {"state": "buffering", "segments_sealed": 3, "last_fault": None, "clock": {"status": "unsynced"}}
    check = lambda written: sc.parse(scenario_text(f"expect = {{ {written} }}")).steps[0].checks[0]  # noqa: E731
    assert check("segments_sealed_at_least = 3").evaluate(status) == (True, "segments_sealed is 3")
    assert check("segments_sealed_at_most = 2").evaluate(status)[0] is False
    assert check('last_fault = ""').evaluate(status)[0] is True      # no fault: null in JSON, "" in TOML
    assert check('clock = { status = "unsynced" }').evaluate(status)[0] is True
    held, why = check("dropped = 0").evaluate(status)
    assert not held and "status has no field 'dropped'" in why


# ----------------------------------------------------------------------------------- the panel

STATUS: dict[str, Any] = {
    "state": "recording", "serial": "BC-SIM-0001", "recording_id": "BC-SIM-0001-0000000007",
    "buffer_seconds": 15.0, "buffer_bytes": 3_200_000, "frames_captured": 1234, "dropped": 2,
    "segments_sealed": 3, "segments_on_disk": 9, "free_bytes": 84_700_000_000, "reserve_bytes": 256_000_000,
    "clock": {"status": "unsynced"}, "stealth": False, "docked": False, "battery_percent": 12.0,
    "low_battery": True, "fault": None, "last_fault": None, "stop_pending": False,
}


def draw(view: PanelView, width: int = 110) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(render(view))
    return console.export_text()


def test_panel_renders_a_status() -> None:
    view = PanelView(status=dict(STATUS), serial="BC-SIM-0001", data_dir="sim-data/device",
                     pre_event_seconds=30, now=0.1, fps=29.9, utc_now="2025-11-21T10:00:00Z",
                     daemon_note="pid 42, log sim-data/daemon.log")
    view.activity.append("10:00:00  d  double press -> start_recording, buffering -> recording")
    text = draw(view)
    assert "bodycam simulator  BC-SIM-0001" in text
    assert "RECORDING   recording BC-SIM-0001-0000000007" in text
    assert "○ green   ● red   (red blinking)" in text
    assert "█" * 15 + "░" * 15 + " 15.0 / 30 s  (3.2 MB)" in text
    assert "1234 captured, 2 dropped  (29.9 fps)" in text
    assert "3 segments sealed this run; on the device: 9 on disk" in text
    assert "84.7 GB free (256.0 MB kept in reserve)" in text
    assert "2025-11-21T10:00:00Z  not synced since boot (the dock syncs it)" in text
    assert "undocked   battery 12% (low: 4 beeps every 20 s)" in text
    assert re.search(r"Fault\s+none", text)
    assert "double press -> start_recording, buffering -> recording" in text
    assert "d record" in text and "q quit" in text and "f stealth" in text


def test_panel_blinks_leds_by_alternating_and_darkens_them_in_stealth() -> None:
    rec = dict(STATUS)
    assert led_states(rec, 0.1) == {"green": False, "red": True}
    assert led_states(rec, 0.6) == {"green": False, "red": False}
    buffering = {**STATUS, "state": "buffering"}
    assert [led_states(buffering, t)["green"] for t in (0.1, 0.5, 1.1)] == [True, False, True]
    assert led_states({**STATUS, "state": "fault"}, 0.7)["red"] is True          # solid
    dark = {**STATUS, "stealth": True}
    assert led_states(dark, 0.1) == {"green": False, "red": False}
    text = draw(PanelView(status={**dark, "fault": "storage full"}, now=0.1))
    assert "ON (lights and sounds off, logged)" in text and "(dark: stealth)" in text
    assert "storage full (active)" in text


def test_panel_before_the_daemon_answers_and_after_it_exits() -> None:
    text = draw(PanelView(daemon_note="pid 7: waiting for the control socket"))
    assert "STARTING" in text and "waiting for the control socket" in text
    text = draw(PanelView(status=dict(STATUS), stopped=True, now=0.1, daemon_note="exited with code 1"))
    assert "OFF   the daemon is not running (last state: recording)" in text
    assert "○ green   ○ red" in text and "exited with code 1" in text


def test_daemon_log_lines_are_made_readable() -> None:
    line = json.dumps({"ts": "2025-11-21T10:37:00.841+00:00", "level": "info", "logger": "bodycam.daemon",
                       "event": "shutdown", "msg": "shutdown", "reason": "shutdown", "state": "buffering"})
    assert readable(line) == "10:37:00 info shutdown reason=shutdown state=buffering"
    assert readable("Traceback (most recent call last):") == "Traceback (most recent call last):"


# ------------------------------------------------------------- runner against a fake daemon

class FakeDaemon(DaemonProcess):
    """The control protocol served in-process, so the runner can be tested without a camera."""

    def __init__(self, tmp: Path, *, battery: bool = True) -> None:
        super().__init__(config=tmp / "device.toml", data_dir=tmp / "device", log_path=tmp / "daemon.log")
        self.status_doc: dict[str, Any] = {"state": "booting", "serial": "BC-FAKE", "segments_sealed": 0,
                                           "frames_captured": 0, "dropped": 0, "stealth": False,
                                           "last_fault": None}
        self.requests: list[dict[str, Any]] = []
        self.battery = battery
        self.server: socketserver.ThreadingUnixStreamServer | None = None

    def spawn(self) -> None:
        sock = socket_path(self.data_dir)
        sock.parent.mkdir(parents=True, exist_ok=True)
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    self.wfile.write((json.dumps(fake.answer(json.loads(line))) + "\n").encode())

        self.server = socketserver.ThreadingUnixStreamServer(str(sock), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Timer(0.2, lambda: self.status_doc.update(state="buffering")).start()

    def answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(msg)
        s = self.status_doc
        s["frames_captured"] += 1
        if msg["cmd"] == "status":
            return {"ok": True, **s}
        if msg["cmd"] == "battery":
            return {"ok": True, "battery_percent": msg["percent"]} if self.battery else \
                {"ok": False, "error": "unknown cmd 'battery'"}
        if msg["cmd"] != "press":
            return {"ok": False, "error": f"unknown cmd {msg['cmd']!r}"}
        before = s["state"]
        if msg["gesture"] == "double" and before == "buffering":
            s["state"] = "recording"
        elif msg["gesture"] == "hold" and before == "recording":
            s["state"], s["segments_sealed"] = "buffering", s["segments_sealed"] + 2
        return {"ok": True, "press": {"intent": "x", "state_before": before, "state": s["state"]}}

    @property
    def alive(self) -> bool:
        return self.server is not None

    def stop(self, timeout: float = 1.0) -> int | None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        return 0


class Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def run_fake(tmp_path: Path, *steps: str, **kw: Any) -> tuple[int, str, FakeDaemon]:
    daemon = FakeDaemon(tmp_path, **kw)
    out = Out()
    verify = lambda d: (True, ["verify: OK", "device BC-FAKE: 2 segments"])  # noqa: E731
    code = ScenarioRunner(sc.parse(scenario_text(*steps)), daemon, out=out, verify=verify).run()  # type: ignore[arg-type]
    return code, out.text, daemon


def test_runner_performs_steps_in_order_and_stops_the_daemon(tmp_path: Path) -> None:
    code, out, daemon = run_fake(tmp_path, 'expect_state = "buffering"', 'press = "double"',
                                 'expect_state = "recording"', "battery = 10", "hold = true",
                                 "expect = { segments_sealed_at_least = 2 }", "verify = true")
    assert code == EXIT_PASSED, out
    cmds = [r for r in daemon.requests if r["cmd"] != "status"]
    assert cmds == [{"cmd": "press", "button": "record", "gesture": "double"},
                    {"cmd": "battery", "percent": 10},
                    {"cmd": "press", "button": "record", "gesture": "hold"}]
    assert re.search(r"\[\s*\d+\.\d\ds\] step 2  double press \(record button\) \.\.\. "
                     r"ok: x, buffering -> recording", out)
    assert "ok: verify: OK" in out and "device BC-FAKE: 2 segments" in out
    assert "PASSED: scenario 't', 7 steps" in out
    assert "bodycam verify" in out and "evidence in" in out
    assert not daemon.alive


def test_a_failing_expectation_names_the_step_and_the_reason(tmp_path: Path) -> None:
    code, out, daemon = run_fake(tmp_path, 'expect_state = "buffering"',
                                 'expect_state = "recording"\nwithin = 0.3', "wait = 5")
    assert code == EXIT_FAILED
    assert "FAILED at step 2 (expect state 'recording' within 0.3 s): state is 'buffering' after 0.3 s" in out
    assert "step 3" not in out
    assert not daemon.alive


def test_a_refused_request_fails_its_step(tmp_path: Path) -> None:
    code, out, _ = run_fake(tmp_path, 'expect_state = "buffering"', "battery = 5", battery=False)
    assert code == EXIT_FAILED
    assert "FAILED at step 2 (battery at 5%): the daemon did not accept a simulated battery level" in out


def test_verify_missing_from_the_build_fails_that_step_clearly(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bodycam.verify", None)   # makes the import raise ImportError
    daemon = FakeDaemon(tmp_path)
    out = Out()
    code = ScenarioRunner(sc.parse(scenario_text("verify = true")), daemon, out=out).run()  # type: ignore[arg-type]
    assert code == EXIT_FAILED
    assert ("FAILED at step 1 (verify the device's evidence): "
            "bodycam.verify is not available in this build") in out.text


# ------------------------------------------------------------- end to end, the real daemon

def bodycam(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bodycam.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout, cwd=ROOT)


def daemon_pid(out: str) -> int:
    m = re.search(r"daemon up \(pid (\d+)\)", out)
    assert m, out
    return int(m.group(1))


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
def test_smoke_scenario_on_the_real_daemon(tmp_path: Path) -> None:
    r = bodycam("sim", "--scenario", str(SMOKE), "--data", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "first boot of this simulated camera: device key created" in out
    assert "PASSED: scenario 'smoke', 12 steps, every expectation held" in out
    assert "start_recording, buffering -> recording" in out
    assert "stop_recording, recording -> buffering" in out
    assert re.search(r"step 12  verify the device's evidence \.\.\. ok: verify: OK", out)
    # where the evidence is
    assert "seg-0000000001.mp4" in out and "audit/audit.log" in out and "bodycam verify" in out
    assert "openssl dgst -sha256 -verify" in out
    assert_gone(daemon_pid(out))
    assert not socket_path(tmp_path / "device").exists()
    v = bodycam("verify", str(tmp_path / "device"))
    assert v.returncode == 0, v.stdout
    assert "1 recordings" in v.stdout


@pytest.mark.slow
def test_failing_expectation_on_the_real_daemon(tmp_path: Path) -> None:
    s = tmp_path / "fails.toml"
    s.write_text(scenario_text('expect_state = "buffering"\nwithin = 15', "marker = true",
                               'expect_state = "recording"\nwithin = 0.5', "wait = 30",
                               head=f'name = "fails"\nconfig = "{SCENARIOS / "smoke-device.toml"}"'))
    r = bodycam("sim", "--scenario", str(s), "--data", str(tmp_path / "sim"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ok: ignored_hint, still buffering" in r.stdout     # a single press while buffering does nothing
    assert ("FAILED at step 3 (expect state 'recording' within 0.5 s): "
            "state is 'buffering' after 0.5 s") in r.stdout
    assert "step 4" not in r.stdout
    assert "exit code 0" in r.stdout                            # stopped cleanly all the same
    assert_gone(daemon_pid(r.stdout))


def test_bad_scenario_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    s = tmp_path / "bad.toml"
    s.write_text(scenario_text("wait = 1", 'press = "tripple"'))
    r = bodycam("sim", "--scenario", str(s), "--data", str(tmp_path / "sim"), "--config",
                str(SCENARIOS / "smoke-device.toml"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "step 2: press = 'tripple'" in r.stderr
    assert not (tmp_path / "sim").exists()


@pytest.mark.slow
def test_sigterm_mid_scenario_stops_the_daemon_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bodycam.cli", "sim", "--scenario", str(SMOKE),
                             "--data", str(tmp_path)], stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if "step  5" in line:           # recording confirmed: the open segment must be sealed on exit
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=60)
    out = seen + rest
    assert proc.returncode == 130, out
    assert "interrupted: stopping the daemon cleanly" in out and "INTERRUPTED" in out
    assert_gone(daemon_pid(out))
    v = bodycam("verify", str(tmp_path / "device"))
    assert v.returncode == 0 and "warning" not in v.stdout, v.stdout


@pytest.mark.slow
def test_panel_in_a_terminal(tmp_path: Path) -> None:
    """The real thing in a pty: the panel appears, keys act on the daemon, q stops it cleanly."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execvpe(sys.executable, [sys.executable, "-m", "bodycam.cli", "sim", "--panel", "--config",
                                    str(SCENARIOS / "smoke-device.toml"), "--data", str(tmp_path)],
                   {**ENV, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    screen = ""

    def read_until(pattern: str, timeout: float = 15.0) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, screen):
                return
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 65536).decode(errors="replace")
                except OSError:
                    break
                screen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", chunk)
        if re.search(pattern, screen):
            return
        raise AssertionError(f"{pattern!r} not seen; screen ends:\n{screen[-3000:]}")

    try:
        read_until("BUFFERING", timeout=60)      # start-up time on a shared 2-core machine is not the test
        read_until("q quit")
        os.write(fd, b"d")
        read_until(r"RECORDING")
        read_until(r"recording started \(buffering -> recording\)")
        os.write(fd, b"h")
        read_until(r"recording stopped \(recording -> buffering\)")
        os.write(fd, b"q")
        read_until(r"exit code 0", timeout=30)
        read_until(r"bodycam verify")
        assert "last status: state buffering" in screen
    finally:
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if done[0] == 0:                # a failed assertion above: stop it the way Ctrl-C would
            os.kill(pid, signal.SIGTERM)
            done = os.waitpid(pid, 0)
        status = done[1]
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, screen[-3000:]
