"""The daemon: state machine on the real RecordingDevice, control socket, sd_notify, and `bodycam run`.

In-process tests build the real device (synthetic camera, libx264, sealer, audit log) on a tiny config
and replace only the indicators, with a fake that records what was played. The machine gets its own
ManualClock, so reminders and 20-second warnings are tested by advancing it, while the camera runs in
real time. Every harness checks at teardown that each transition it saw is in the signed audit log.
The last tests run the real `bodycam run` as a subprocess and stop it with SIGTERM mid-recording.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from bodycam.clock import ManualClock, SystemClock
from bodycam.controls.buttons import ButtonPanel
from bodycam.controls.indicators import Indicators
from bodycam.daemon.control import request, socket_path
from bodycam.daemon.control_server import ControlServer, remove_stale_socket
from bodycam.daemon.machine import SettableBattery, StateMachine
from bodycam.daemon.states import TRANSITIONS
from bodycam.daemon.systemd import Notifier
from bodycam.device import RecordingDevice
from bodycam.encode.platform import Platform
from bodycam.errors import BodycamError
from bodycam.evidence.signer import generate_key
from bodycam.verify import verify_paths
from rig import small_config

BODYCAM = Path(sys.executable).with_name("bodycam")


# ---------------------------------------------------------------------------- helpers

class FakeIndicators:
    """Records every call; ``played()`` lists the patterns (everything except show)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def _rec(self, name: str, arg: Any = None) -> None:
        with self._lock:
            self.calls.append((name, arg))

    def show(self, state: str) -> None:
        self._rec("show", state)

    def set_stealth(self, on: bool) -> None:
        self._rec("set_stealth", on)

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name in ("recording_started", "recording_stopped", "reminder", "marker", "ignored_hint", "refused",
                    "storage_full", "low_battery", "clock_not_set"):
            return lambda: self._rec(name)
        raise AttributeError(name)

    def played(self) -> list[str]:
        with self._lock:
            return [n for n, _ in self.calls if n != "show"]

    def shown(self) -> list[str]:
        with self._lock:
            return [a for n, a in self.calls if n == "show"]

    def count(self, name: str) -> int:
        return self.played().count(name)


class UnsetRtcClock(SystemClock):
    """A Pi with no RTC and no network: wall time starts near 1970 at every boot."""

    def utc_ns(self) -> int:
        return time.monotonic_ns()


def audit(data: Path) -> list[dict[str, Any]]:
    path = data / "audit" / "audit.log"
    return [json.loads(json.loads(line)["entry"]) for line in path.read_text().splitlines()]


def events(data: Path, name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in audit(data) if e["event"] == name]


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Harness:
    """Real device + fake (or given) indicators + machine and ButtonPanel on one ManualClock + mock pins."""

    def __init__(self, data: Path, *, clock_cls: type = SystemClock, free: int = 10**12,
                 make_indicators: Callable[[Any], Any] | None = None, **tables: dict[str, Any]) -> None:
        tables = {"buffer": {"pre_event_seconds": 1}, **tables}
        self.cfg = small_config(data, **tables)
        self.data = data
        if not self.cfg.key_path.exists():
            generate_key(self.cfg.key_path)
        self.free = free
        self.device = RecordingDevice(self.cfg, clock=clock_cls(), free_bytes=lambda _p: self.free)
        self.ind = FakeIndicators() if make_indicators is None else make_indicators(self.cfg)
        self.clock = ManualClock()
        self.battery = SettableBattery(80.0)
        self.machine = StateMachine(self.device, self.ind, clock=self.clock, battery=self.battery)
        self.transitions: list[tuple[str, str, str]] = []
        self.machine.add_listener(lambda old, new, ev: self.transitions.append((old, new, ev)))
        self.panel = ButtonPanel(self.cfg.buttons, clock=self.clock, on_gesture=self.machine.on_gesture,
                                 on_dock=self.machine.on_dock)
        self.closed = False

    def boot(self, *, docked: bool = False, buffer_s: float = 0.0) -> None:
        self.machine.boot(docked=docked)
        if buffer_s:
            wait_until(lambda: self.device.pipeline.snapshot().buffer_seconds >= buffer_s, what="pre-roll")

    def press(self, gesture: str, button: str = "record") -> str:
        """A gesture through the panel's own delivery thread; returns the intent."""
        n = self.machine.presses
        self.panel.inject(button, gesture)
        result = self.machine.wait_for_press(n, timeout=10)
        assert result is not None, "press not handled"
        return result.intent

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.machine.tick()

    def sealed(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.data / "segments").glob("seg-*.json"))]

    def wait_sealed_idle(self) -> None:
        wait_until(lambda: self.device.recorder.recording_id is None
                   and self.device.pipeline.snapshot().writer_queue == 0, what="recording to seal")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.panel.close()
        self.machine.shutdown("shutdown")
        if hasattr(self.ind, "close"):
            self.ind.close()
        logged = [(d["from"], d["to"], d["cause"]) for d in events(self.data, "state")]
        assert logged == self.transitions, "every transition is in the audit log, in order"


@pytest.fixture
def harness(tmp_path: Path, mock_factory):
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        h = Harness(tmp_path / f"dev{len(made)}", **kw)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


# ---------------------------------------------------------------------------- the table itself

def test_transition_table_has_no_way_to_record_from_docked_or_fault() -> None:
    assert ("docked", "record_start") not in TRANSITIONS and ("fault", "record_start") not in TRANSITIONS
    assert {s for (s, e), n in TRANSITIONS.items() if n == "recording"} == {"buffering"}
    reachable = {"booting"} | set(TRANSITIONS.values())
    assert reachable == {"booting", "buffering", "recording", "docked", "fault"}


# ---------------------------------------------------------------------------- state machine, real device

def test_double_records_single_marks_hold_stops(harness, mock_factory) -> None:
    h = harness()
    assert h.press("double") == "refused"          # still booting: refused, never silence
    assert h.ind.played() == ["refused"]
    h.boot(buffer_s=1.0)
    assert h.machine.state == "buffering" and h.ind.shown()[-1] == "buffering"
    # a real double press on the record pin (mock factory), through debounce and gesture recognition
    pin = mock_factory.pin(h.cfg.buttons.record_pin)
    n = h.machine.presses
    for _ in range(2):             # the panel reads the harness's ManualClock: edge times are exact
        pin.drive_low()
        h.clock.advance(0.05)
        pin.drive_high()
        h.clock.advance(0.1)
    assert h.machine.wait_for_press(n, timeout=10).intent == "start_recording"
    assert h.machine.state == "recording" and h.ind.shown()[-1] == "recording"
    time.sleep(0.6)
    assert h.press("single") == "marker"
    time.sleep(1.0)
    assert h.press("hold") == "stop_recording"
    assert h.machine.state == "buffering"
    assert h.ind.played()[-4:] == ["refused", "recording_started", "marker", "recording_stopped"][-4:]
    h.wait_sealed_idle()
    manifests = h.sealed()
    assert manifests and sum(len(m["markers"]) for m in manifests) == 1
    assert manifests[0]["pre_event_seconds"] >= 1.0
    presses = events(h.data, "press")
    assert [(p["gesture"], p["intent"], p["state"]) for p in presses] == [
        ("double", "refused", "booting"), ("double", "start_recording", "buffering"),
        ("single", "marker", "recording"), ("hold", "stop_recording", "recording")]
    assert [e["event"] for e in audit(h.data)].count("marker") == 1
    h.close()
    assert h.transitions == [("booting", "buffering", "boot_ok"), ("buffering", "recording", "record_start"),
                             ("recording", "buffering", "record_stop")]
    assert audit(h.data)[-1]["event"] == "power_off"
    report = verify_paths([h.data])
    assert report.ok, report.errors


def test_dock_pauses_buffering_and_presses_are_refused(harness) -> None:
    h = harness()
    h.boot(buffer_s=0.5)
    h.machine.on_dock(True)
    assert h.machine.state == "docked" and h.ind.shown()[-1] == "docked"
    time.sleep(0.3)
    assert h.device.pipeline.snapshot().buffer_bytes == 0, "no buffering in the dock"
    for gesture in ("double", "single", "hold"):
        assert h.press(gesture) == "refused"
    assert h.machine.state == "docked" and h.ind.played() == ["refused"] * 3
    assert h.device.recorder.recording_id is None
    h.machine.on_dock(False)
    assert h.machine.state == "buffering"
    wait_until(lambda: h.device.pipeline.snapshot().buffer_bytes > 0, what="buffering again")
    names = [e["event"] for e in audit(h.data)]
    assert names.index("dock") < names.index("buffering_stop") < names.index("undock")
    assert events(h.data, "buffering_start")[-1] == {"reason": "undocked"}


def test_a_real_press_in_the_dock_beeps_refused_on_the_buzzer(harness, mock_factory) -> None:
    """Pin to buzzer: a press on the record pin while docked reaches the real Indicators as `refused`."""
    h = harness(make_indicators=lambda cfg: Indicators(cfg.indicators, clock=SystemClock()))
    h.boot(docked=True)
    buzzer = mock_factory.pin(h.cfg.indicators.buzzer_pin)
    buzzer.clear_states()
    n = h.machine.presses
    pin = mock_factory.pin(h.cfg.buttons.record_pin)
    pin.drive_low()
    h.clock.advance(0.05)
    pin.drive_high()
    h.clock.advance(h.cfg.buttons.double_press_seconds)      # a single press, once the window has passed
    assert h.machine.wait_for_press(n, timeout=10).intent == "refused"
    assert h.ind.wait_idle(10) and h.ind.last_pattern == "refused"
    assert sum(1 for s in buzzer.states if s.state) == 3 and buzzer.state is False
    assert h.machine.state == "docked" and h.device.recorder.recording_id is None


def test_docking_while_recording_stops_it_and_booting_docked_never_buffers(harness) -> None:
    h = harness()
    h.boot(buffer_s=0.3)
    assert h.press("double") == "start_recording"
    time.sleep(0.3)
    h.machine.on_dock(True)
    assert h.machine.state == "docked" and "recording_stopped" in h.ind.played()
    h.wait_sealed_idle()
    assert events(h.data, "record_stop")[-1]["reason"] == "docked"
    h.close()                                      # frees the pins for the second camera

    h2 = harness()
    h2.boot(docked=True)
    assert h2.machine.state == "docked"
    assert h2.transitions == [("booting", "docked", "boot_docked")]


def test_stop_confirmation(harness) -> None:
    h = harness(buttons={"stop_confirmation": True, "stop_confirmation_seconds": 5.0})
    h.boot(buffer_s=0.3)
    assert h.press("double") == "start_recording"
    assert h.press("hold") == "stop_pending"
    assert h.machine.state == "recording" and h.machine.status()["stop_pending"]
    assert h.ind.played()[-1] == "ignored_hint"
    h.advance(6)                                   # the confirmation window lapses
    assert h.press("single") == "marker"
    assert h.press("hold") == "stop_pending"
    h.advance(2)
    assert h.press("single") == "stop_recording"   # confirmed inside the window
    assert h.machine.state == "buffering"


def test_stealth_toggles_and_is_logged(harness) -> None:
    h = harness()
    h.boot()
    assert h.press("single", "function") == "ignored_hint"
    assert h.press("hold", "function") == "toggle_stealth"
    assert ("set_stealth", True) in h.ind.calls and h.machine.status()["stealth"] is True
    assert h.press("double") == "start_recording"
    assert h.press("hold", "function") == "toggle_stealth"
    assert h.ind.calls.count(("set_stealth", False)) == 1 and not h.machine.stealth
    assert events(h.data, "stealth") == [{"on": True, "state": "buffering"},
                                         {"on": False, "state": "recording"}]


def test_storage_full_refuses_then_recovers_when_space_is_freed(harness) -> None:
    h = harness(storage={"reserve_megabytes": 1})
    h.boot(buffer_s=0.3)
    h.free = 1_050_000                             # 50 kB above the reserve: less than one segment
    assert h.press("double") == "start_recording"  # what the officer meant; the machine refuses it
    assert h.machine.state == "fault" and h.ind.played()[-1] == "storage_full"
    assert h.device.recorder.recording_id is None and not h.sealed()
    assert "storage full" in h.machine.status()["last_fault"]
    assert h.press("double") == "refused" and h.ind.played()[-1] == "refused"
    h.advance(1.0)
    assert h.machine.state == "fault", "still full"
    h.free = 10**10                                # footage offloaded elsewhere / space freed
    h.advance(1.0)
    assert h.machine.state == "buffering"
    assert h.machine.status()["fault"] is None and h.machine.status()["last_fault"]
    assert events(h.data, "record_refused") and events(h.data, "fault_cleared")
    assert events(h.data, "fault")[0]["kind"] == "storage"
    assert h.transitions[-2:] == [("buffering", "fault", "fault"), ("fault", "buffering", "space_freed")]


@pytest.mark.skipif(Platform().hardware_encoder_device() is not None, reason="this machine has the encoder")
def test_an_encoder_that_cannot_open_is_a_fault_saying_what_to_set(harness) -> None:
    """A Pi 5 configured for the Pi 4's hardware encoder: FFmpeg fails at open with a bare errno."""
    if "h264_v4l2m2m" not in av.codecs_available:
        pytest.fail("this PyAV build has no h264_v4l2m2m (the PyPI wheel has it)")
    h = harness(encoder={"codec": "h264_v4l2m2m"})
    h.boot()
    assert h.machine.state == "fault"
    message = h.machine.status()["fault"]
    assert "h264_v4l2m2m" in message and 'codec = "auto"' in message and "\n" not in message
    assert h.press("double") == "refused"
    assert events(h.data, "power_on")[0]["encoder"] == "h264_v4l2m2m (hardware): configured"


def test_storage_filling_during_recording_seals_and_faults(harness) -> None:
    h = harness(storage={"reserve_megabytes": 1})
    h.boot(buffer_s=0.5)
    assert h.press("double") == "start_recording"
    time.sleep(0.5)
    h.free = 500_000                               # below the reserve: the recorder stops writing
    wait_until(lambda: (h.machine.tick(), h.machine.state == "fault")[1], timeout=5, what="storage fault")
    assert h.ind.played().count("storage_full") == 1
    h.wait_sealed_idle()
    assert h.sealed()[-1]["end_reason"] == "storage_full"
    assert h.press("double") == "refused"
    # docking latches the fault; undocking with the disk still full goes straight back to fault
    h.machine.on_dock(True)
    assert h.machine.state == "docked"
    h.machine.on_dock(False)
    assert h.machine.state == "fault" and h.transitions[-1] == ("docked", "fault", "undock_faulted")
    h.free = 10**10
    h.machine.on_dock(True)
    h.machine.on_dock(False)
    assert h.machine.state == "buffering"


def test_reminder_low_battery_and_clock_warnings_follow_the_clock(harness) -> None:
    h = harness(clock_cls=UnsetRtcClock, indicators={"record_reminder_seconds": 120})
    h.boot(buffer_s=0.3)
    h.machine.tick()
    assert h.ind.count("clock_not_set") == 1 and events(h.data, "clock_not_set") == [{}]
    assert h.machine.status()["clock"]["status"] == "not_set"
    assert h.press("double") == "start_recording"
    h.advance(119)
    assert h.ind.count("reminder") == 0
    h.advance(1)
    assert h.ind.count("reminder") == 1
    h.advance(120)
    assert h.ind.count("reminder") == 2
    assert h.ind.count("clock_not_set") > 1, "repeats every 20 s while not set"
    h.battery.set(14)
    h.machine.tick()
    assert h.ind.count("low_battery") == 1
    h.advance(10)
    assert h.ind.count("low_battery") == 1
    h.advance(10)
    assert h.ind.count("low_battery") == 2
    h.battery.set(60)
    h.advance(40)
    assert h.ind.count("low_battery") == 2
    assert events(h.data, "low_battery") == [{"percent": 14.0}] and events(h.data, "battery_ok")
    assert h.press("hold") == "stop_recording"
    h.advance(240)
    assert h.ind.count("reminder") == 2, "no reminders once stopped"


def test_control_server_answers_and_survives_garbage(harness, tmp_path: Path) -> None:
    h = harness()
    h.boot()
    path = tmp_path / "ctl" / "run" / "control.sock"
    with ControlServer(path, h.machine, inject=h.panel.inject, set_battery=h.battery.set):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
            f = s.makefile("rwb")
            replies = []
            for line in (b"{not json\n", b"[1,2]\n", b'{"cmd":"reboot"}\n',
                         b'{"cmd":"press","gesture":"twice"}\n', b'{"cmd":"battery","percent":"lots"}\n',
                         b"\xff\xfe\n", b'{"cmd":"status"}\n'):
                f.write(line)
                f.flush()
                replies.append(json.loads(f.readline()))
        assert [r["ok"] for r in replies] == [False] * 6 + [True]
        assert all(r["error"] for r in replies[:6])
        status = replies[-1]
        for key in ("state", "recording_id", "buffer_seconds", "buffer_bytes", "frames_captured", "dropped",
                    "segments_sealed", "free_bytes", "headroom_bytes", "clock", "stealth", "docked",
                    "battery_percent", "last_fault", "uptime_seconds", "serial", "pending_uploads"):
            assert key in status, key
        assert request(path, {"cmd": "press", "gesture": "double"})["press"]["intent"] == "start_recording"
        assert request(path, {"cmd": "battery", "percent": 5})["battery_percent"] == 5
        assert h.ind.count("low_battery") == 1
        assert request(path, {"cmd": "dock"})["state"] == "docked"
        assert request(path, {"cmd": "undock"})["state"] == "buffering"
        with pytest.raises(BodycamError, match="another bodycam daemon"):
            remove_stale_socket(path)                 # a live daemon answers: never steal its socket
    assert not path.exists(), "the socket is removed on close"


def test_notifier_speaks_sd_notify_on_an_abstract_socket() -> None:
    assert not Notifier({}).ready() and Notifier({}).watchdog_seconds is None
    name = f"bodycam-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0" + name)
        rx.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000"})
        assert n.watchdog_seconds == 1.5
        assert n.ready(status="buffering") and n.watchdog() and n.stopping()
        got = [rx.recv(256) for _ in range(3)]
        assert got == [b"READY=1\nSTATUS=buffering", b"WATCHDOG=1", b"STOPPING=1"]
        sent: list[bool] = []
        sender = threading.Thread(target=lambda: sent.extend(n.watchdog() for _ in range(200)), daemon=True)
        sender.start()                               # nobody reads: the queue fills, sends must not block
        sender.join(timeout=30)                      # a blocking send would hang here for good
        assert not sender.is_alive() and len(sent) == 200 and not all(sent)
        n.close()
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None, "the watchdog belongs to another process"


# ---------------------------------------------------------------------------- the real daemon process

TINY = """\
[device]
serial = "BC-TEST-0002"
officer_id = "PC-4711"
data_dir = "data"
[camera]
width = 160
height = 120
fps = 10
[encoder]
bitrate_kbps = 300
[buffer]
pre_event_seconds = 1
[recording]
segment_seconds = 2
[storage]
reserve_megabytes = 0
"""


def cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BODYCAM), *args], capture_output=True, text=True, timeout=timeout)


def test_status_without_a_daemon_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    r = cli("status", "--config", str(tmp_path / "tiny.toml"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "bodycam run" in r.stderr


def test_run_without_a_key_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    r = cli("run", "--config", str(tmp_path / "tiny.toml"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"bodycam: no device key at {tmp_path / 'data/device/key.pem'}; "
                                "create one with 'bodycam keygen'")


@pytest.mark.slow
def test_daemon_process_records_and_seals_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    data = tmp_path / "data"
    generate_key(data / "device" / "key.pem")
    sock = socket_path(data)
    # a stale socket left by a crash: nobody listens on it
    sock.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    r = cli("status", "--config", str(cfg))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "stale socket" in r.stderr

    notify_name = f"bodycam-test-{uuid.uuid4().hex}"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind("\0" + notify_name)
    rx.settimeout(0.2)
    notes: list[str] = []
    listening = threading.Event()
    listening.set()

    def listen() -> None:                               # systemd's side: read every datagram
        while listening.is_set():
            try:
                notes.append(rx.recv(256).decode())
            except TimeoutError:
                pass
    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "NOTIFY_SOCKET": "@" + notify_name,
           "WATCHDOG_USEC": "1000000"}
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BODYCAM), "run", "--config", str(cfg)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: _answers(sock), timeout=20, what="the control socket")
        r = cli("status", "--json", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["state"] == "buffering"
        r = cli("status", "--config", str(cfg))
        assert r.stdout.startswith("state:    buffering") and "BC-TEST-0002" in r.stdout
        wait_until(lambda: request(sock, {"cmd": "status"})["buffer_seconds"] >= 1.0, timeout=30,
                   what="a full pre-event buffer")
        r = cli("press", "double", "--config", str(cfg))
        assert r.returncode == 0 and "start_recording" in r.stdout and "-> recording" in r.stdout, r
        assert json.loads(cli("status", "--json", "--config", str(cfg)).stdout)["state"] == "recording"
        wait_until(lambda: list((data / "segments").glob("seg-*.json")), timeout=30, what="a sealed segment")
        proc.send_signal(signal.SIGTERM)                    # seals the open one: at least two
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: any(n.startswith("STOPPING=1") for n in notes), timeout=10, what="STOPPING=1")
    listening.clear()
    reader.join()
    rx.close()
    assert notes[0] == "READY=1\nSTATUS=buffering" and "STATUS=recording" in notes
    assert "WATCHDOG=1" in notes and any(n.startswith("STOPPING=1") for n in notes)

    segs = data / "segments"
    assert not list(segs.glob("*.partial")) and not list(segs.glob("*.journal"))
    manifests = [json.loads(p.read_text()) for p in sorted(segs.glob("seg-*.json"))]
    assert len(manifests) >= 2 and manifests[-1]["end_reason"] == "shutdown"
    assert manifests[0]["pre_event_seconds"] >= 1.0
    assert not sock.exists(), "the daemon removes its socket on exit"
    entries = audit(data)
    assert entries[-1]["event"] == "power_off" and entries[-1]["data"] == {"reason": "shutdown"}
    assert events(data, "record_stop")[-1]["reason"] == "shutdown"
    assert [(d["from"], d["to"]) for d in events(data, "state")] == [("booting", "buffering"),
                                                                     ("buffering", "recording")]
    report = verify_paths([data])
    assert report.ok, report.errors
    lines = log_path.read_text().splitlines()
    assert lines and all(json.loads(line)["event"] for line in lines), "one JSON object per log line"
    assert any(json.loads(line)["event"] == "stale_socket_removed" for line in lines)


def _answers(sock: Path) -> bool:
    try:
        request(sock, {"cmd": "status"}, timeout=1)
        return True
    except BodycamError:
        return False


def test_a_slow_disk_during_status_does_not_hold_up_a_press(harness) -> None:
    """status() reads free space and scans the upload spool; on a slow card that takes a while, and a
    button press arriving meanwhile must still be handled at once (it waits for no disk I/O of status)."""
    h = harness()
    h.boot(buffer_s=0.2)
    card_stuck, status_reading = threading.Event(), threading.Event()
    fast = h.device.storage._free_bytes

    def slow_card(path: Path) -> int:
        if threading.current_thread().name == "status-caller":
            status_reading.set()
            card_stuck.wait(30)
        return fast(path)

    h.device.storage._free_bytes = slow_card
    answer: list[dict[str, Any]] = []
    caller = threading.Thread(target=lambda: answer.append(h.machine.status()), name="status-caller")
    caller.start()
    try:
        assert status_reading.wait(5)
        assert h.press("double") == "start_recording"
        assert caller.is_alive(), "the press waited for status() to finish its disk reads"
        assert h.machine.state == "recording"
    finally:
        card_stuck.set()
        caller.join(10)
    assert answer and answer[0]["free_bytes"] == h.free


# ---------------------------------------------------------------------------- pins that cannot be opened

@pytest.mark.parametrize("held", ["button", "indicator"])
def test_a_pin_already_in_use_is_a_fault_with_solid_red_not_an_exit(tmp_path: Path, mock_factory,
                                                                    held: str) -> None:
    """Another program holds a pin: the daemon stays up in "fault", red LED solid, status says why."""
    from bodycam.daemon import runner
    from gpiozero import LED

    cfg = small_config(tmp_path / "data")
    generate_key(cfg.key_path)
    other = LED(cfg.buttons.record_pin if held == "button" else cfg.indicators.green_led_pin)
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(runner.run(cfg, stop)), daemon=True)
    t.start()
    sock = socket_path(cfg.data_dir)
    try:
        wait_until(lambda: _answers(sock), timeout=20, what="the control socket")
        status = wait_until(lambda: (s := request(sock, {"cmd": "status"}))["state"] == "fault" and s,
                            timeout=10, what="the fault state")
        assert status["fault"].startswith(f"cannot open the {held} pins (")
        assert "gpio group" in status["fault"]
        red = mock_factory.pin(cfg.indicators.red_led_pin)
        assert red.state, "solid red: the indicator that still works"
        time.sleep(1.2)
        assert red.state and t.is_alive(), "solid, not blinking; and still running"
    finally:
        stop.set()
        t.join(timeout=20)
        other.close()
    assert result == [0]
    faults = [e["data"]["message"] for e in audit(tmp_path / "data") if e["event"] == "fault"]
    assert len(faults) == 1 and faults[0].startswith(f"cannot open the {held} pins ("), faults


@pytest.mark.slow
def test_daemon_process_without_a_pin_library_stays_up_in_fault(tmp_path: Path) -> None:
    """The image bug: no lgpio, so gpiozero finds no pin factory. A real `bodycam run` must not exit
    (systemd would restart it every few seconds for ever) but stay up in "fault", saying why."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    data = tmp_path / "data"
    generate_key(data / "device" / "key.pem")
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "lgpio"}  # lgpio is not installed on this machine
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BODYCAM), "run", "--config", str(cfg)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    try:
        sock = socket_path(data)
        wait_until(lambda: _answers(sock), timeout=20, what="the control socket")
        wait_until(lambda: json.loads(cli("status", "--json", "--config", str(cfg)).stdout)["state"] == "fault",
                   timeout=10, what="the fault state")
        time.sleep(2)
        assert proc.poll() is None, "still running: no restart loop"
        status = json.loads(cli("status", "--json", "--config", str(cfg)).stdout)
        assert status["fault"].startswith("cannot open the indicator pins (")
        assert "; cannot open the button pins (" in status["fault"]
        assert status["frames_captured"] > 0, "the camera still buffers"
        r = cli("status", "--config", str(cfg))
        assert "fault" in r.stdout and "cannot open the indicator pins" in r.stdout, r.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    faults = [ln for ln in lines if ln["event"] == "pins_fault"]
    assert len(faults) == 2 and "Traceback" not in log_path.read_text()
