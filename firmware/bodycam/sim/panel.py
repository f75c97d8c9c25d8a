"""The interactive panel: what the camera would show and do, driven by single keys.

It polls the daemon's status (~5 Hz) and draws it with rich; every key becomes the same control
request ``bodycam press`` sends, so what you see is the daemon's own answer, never a guess made
here. ``render`` is a pure function of a PanelView so it can be tested without a terminal.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import sys
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..clock import iso_utc
from ..config import Config
from ..controls.indicators import LED_FOR_STATE  # one table for the real LEDs and this
from ..daemon.control import ControlError
from ..daemon.words import clock_words, dock_words, key_name, press_words
from ..errors import BodycamError
from ..offload.describe import describe as describe_offload
from . import evidence
from .process import DaemonError, DaemonProcess
from .runner import StepFailed, describe_status, verify_data_dir

POLL_SECONDS = 0.2
STATE_STYLE = {"booting": "bold yellow", "buffering": "bold green", "recording": "bold white on red",
               "docked": "bold cyan", "fault": "bold white on dark_red"}

# key -> (what it does, control request)
KEYS: dict[str, tuple[str, dict[str, str]]] = {
    "d": ("double press", {"cmd": "press", "button": "record", "gesture": "double"}),
    "s": ("single press (marker)", {"cmd": "press", "button": "record", "gesture": "single"}),
    "h": ("hold (stop)", {"cmd": "press", "button": "record", "gesture": "hold"}),
    "f": ("function hold (stealth)", {"cmd": "press", "button": "function", "gesture": "hold"}),
    "k": ("dock", {"cmd": "dock"}),
    "u": ("undock", {"cmd": "undock"}),
}
HOLDS = {"h": "record", "f": "function"}  # keys that hold a button down for its configured seconds
# The key line under the panel: short, so it fits a laptop terminal on one line; `?` gives the long form.
HELP = "  ".join(f"[b]{k}[/b] {what}" for k, what in (
    ("d", "record"), ("s", "marker"), ("h", "stop"), ("f", "stealth"), ("k", "dock"),
    ("u", "undock"), ("v", "verify"), ("?", "help"), ("q", "quit")))


@dataclass
class PanelView:
    """Everything the panel draws, so drawing is a pure function (and testable)."""

    status: dict[str, Any] | None = None
    serial: str = ""
    data_dir: str = ""
    pre_event_seconds: float = 30.0
    now: float = 0.0                    # seconds, drives the LED blink phase
    daemon_note: str = "starting the daemon"
    stopped: bool = False               # the daemon has exited: the status shown is its last
    fps: float | None = None
    utc_now: str = ""                   # the host clock, which the simulated device shares
    holding: tuple[str, float, float] | None = None  # (button, seconds held, seconds needed)
    activity: deque[str] = field(default_factory=lambda: deque(maxlen=8))


def _find(status: dict[str, Any], *paths: str) -> Any:
    """First present value among dotted paths: the daemon's status fields may be flat or nested."""
    for path in paths:
        value: Any = status
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            return value
    return None


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def led_states(status: dict[str, Any], now: float) -> dict[str, bool]:
    """Which LEDs are lit at ``now``: the daemon's own LED report if it sends one, else the same
    state -> LED table the indicators use; stealth darkens both, as on the camera."""
    lit = {"green": False, "red": False}
    reported = status.get("leds")
    if isinstance(reported, dict):
        for name in lit:
            v = reported.get(name)
            if v == "blink" or (isinstance(v, dict) and v.get("blink")):
                lit[name] = (now % 1.0) < 0.5
            else:
                lit[name] = v in (True, "on", 1)
        return lit
    if status.get("stealth"):
        return lit
    spec = LED_FOR_STATE.get(str(status.get("state")))
    if spec:
        name, on, off = spec
        lit[name] = off is None or (now % (on + off)) < on
    return lit


def _led_text(status: dict[str, Any], now: float) -> Text:
    lit = led_states(status, now)
    t = Text()
    for name, colour in (("green", "green"), ("red", "red")):
        t.append("● " if lit[name] else "○ ", style=f"bold {colour}" if lit[name] else "grey35")
        t.append(f"{name}   ")
    spec = LED_FOR_STATE.get(str(status.get("state")))
    if status.get("stealth"):
        t.append("(dark: stealth)", style="dim")
    elif spec:
        t.append(f"({spec[0]} {'solid' if spec[2] is None else 'blinking'})", style="dim")
    return t


def bar(fraction: float, width: int = 30) -> Text:
    """A fill bar that reads the same without colour (a log, a screenshot, tmux capture-pane)."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return Text("█" * filled, style="green") + Text("░" * (width - filled), style="grey35")


def _buffer_row(s: dict[str, Any], target: float) -> Text:
    held = s.get("buffer_seconds")
    if not isinstance(held, (int, float)) or target <= 0:
        return bar(0.0) + Text(f" - / {target:g} s")
    notes = {"recording": "  handed to the recording", "docked": "  none while docked"}
    note = notes.get(str(s.get("state")), "")
    return (bar(held / target) + Text(f" {held:.1f} / {target:g} s  ({_bytes(s.get('buffer_bytes'))})")
            + Text(note, style="dim"))


METER_FLOOR_DBFS = -60.0


def _sound_row(s: dict[str, Any]) -> Text:
    """A live level meter and whether sound is going into the recording (or why not)."""
    a = s.get("audio")
    if not isinstance(a, dict):
        return Text("off (no microphone: video only)", style="dim")
    level = a.get("level_dbfs")
    fill = 0.0 if not isinstance(level, (int, float)) else (level - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
    t = bar(fill, width=20) + Text(f" {level:5.1f} dBFS  " if isinstance(level, (int, float)) else "   -  dBFS  ")
    if a.get("fault"):
        t.append(f"microphone failed: {a['fault']}", style="bold red")
    elif a.get("recording"):
        t.append("● recording sound", style="bold red")
    elif s.get("state") == "recording":
        t.append("sound starts at the press", style="yellow")
    elif a.get("pre_event_audio"):
        t.append("buffering sound with the video", style="green")
    else:
        t.append("not recording sound (pre-event: video only)", style="dim")
    if a.get("xruns"):
        t.append(f"  {a['xruns']} xruns, {a.get('missing_samples', 0)} samples lost", style="red")
    return t


def _recordings_row(s: dict[str, Any]) -> str:
    """Sealed this run, then where the device's segments are now: the same words as the exit summary."""
    text = f"{s.get('segments_sealed', 0)} segments sealed this run"
    parts = []
    if "segments_on_disk" in s:
        parts.append(f"{s['segments_on_disk']} on disk")
    if s.get("segments_offloaded"):
        parts.append(f"{s['segments_offloaded']} offloaded")
    if s.get("pending_uploads") is not None:
        parts.append(f"{s['pending_uploads']} to upload")
    return text + ("; on the device: " + ", ".join(parts) if parts else "")


def _clock_row(s: dict[str, Any], utc_now: str) -> str:
    return f"{utc_now}  {clock_words(s.get('clock'))}".strip()


def _hold_row(holding: tuple[str, float, float]) -> Text:
    button, held, needed = holding
    then = "recording stops" if button == "record" else "stealth switches"
    return bar(held / needed, width=20) + Text(f" {held:.1f} / {needed:g} s  {button} button (then {then})",
                                               style="bold yellow")


def _dock_row(s: dict[str, Any]) -> Text:
    t = Text("docked" if s.get("docked") else "undocked")
    battery = _find(s, "battery_percent", "battery.percent")
    if isinstance(battery, (int, float)):
        t.append(f"   battery {battery:g}%", style="bold red" if s.get("low_battery") else "")
        if s.get("low_battery"):
            t.append(" (low: 4 beeps every 20 s)", style="red")
    return t


def _fault_row(s: dict[str, Any]) -> Text:
    if s.get("fault"):
        return Text(f"{s['fault']} (active)", style="bold red")
    if s.get("last_fault"):
        return Text(f"{s['last_fault']} (cleared)", style="red")
    return Text("none", style="dim")


def render(view: PanelView) -> RenderableType:
    """The whole panel for one moment."""
    s = view.status or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", min_width=11)
    grid.add_column()
    state = str(s.get("state", "unknown" if view.status else "starting"))
    if view.stopped:
        s = {**s, "leds": {"green": "off", "red": "off"}, "state": "off", "stealth": False}
        state_text = Text(" OFF ", style="bold white on grey35")
        state_text.append(f"  the daemon is not running (last state: {state})", style="yellow")
        state = "off"
    else:
        state_text = Text(f" {state.upper()} ", style=STATE_STYLE.get(state, "bold"))
    if s.get("recording_id") and not view.stopped:
        state_text.append(f"  recording {s['recording_id']}")
    if s.get("stop_pending"):
        state_text.append("  press again to confirm the stop", style="bold yellow")
    grid.add_row("State", state_text)
    if view.holding and not view.stopped:
        grid.add_row("Holding", _hold_row(view.holding))
    grid.add_row("LEDs", _led_text(s, view.now))
    grid.add_row("Stealth", Text("ON (lights and sounds off, logged)", style="bold magenta")
                 if s.get("stealth") else Text("off"))
    target = s.get("pre_event_seconds")
    target = target if isinstance(target, (int, float)) else view.pre_event_seconds
    grid.add_row("Buffer", _buffer_row(s, float(target)))
    frames = s.get("frames_captured")
    frame_text = Text(f"{frames if frames is not None else '-'} captured, {s.get('dropped', 0)} dropped")
    if view.fps is not None:
        frame_text.append(f"  ({view.fps:.1f} fps)", style="dim")
    grid.add_row("Frames", frame_text)
    grid.add_row("Sound", _sound_row(s))
    grid.add_row("Recordings", _recordings_row(s))
    free = _find(s, "free_bytes", "storage_free_bytes", "storage.free_bytes")
    storage = f"{_bytes(free)} free" if free is not None else "-"
    if isinstance(s.get("reserve_bytes"), (int, float)):
        storage += f" ({_bytes(s['reserve_bytes'])} kept in reserve)"
    grid.add_row("Storage", storage)
    grid.add_row("Clock", _clock_row(s, view.utc_now))
    grid.add_row("Dock", _dock_row(s))
    if isinstance(s.get("offload"), dict):
        grid.add_row("Offload", Text(describe_offload(s["offload"])))
    grid.add_row("Fault", _fault_row(s))
    preview = s.get("preview")
    if isinstance(preview, list) and all(isinstance(x, str) for x in preview):
        grid.add_row("View", Text("\n".join(preview[:12]), style="dim"))
    grid.add_row("Daemon", Text(view.daemon_note, style="yellow" if "exit" in view.daemon_note else "dim"))
    activity = (Text("\n".join(view.activity)) if view.activity
                else Text("press a key below", style="dim"))
    title = f"bodycam simulator  {s.get('serial') or view.serial}"
    body = Group(grid, Text(""), Panel(activity, title="activity", title_align="left", border_style="dim"))
    return Group(Panel(body, title=title, subtitle=view.data_dir, border_style=_border(state)),
                 Text.from_markup(HELP))


def _border(state: str) -> str:
    return {"recording": "red", "fault": "red", "buffering": "green", "docked": "cyan"}.get(state, "yellow")


class KeyReader:
    """Single keystrokes from a terminal in cbreak mode (no echo, no line buffering; Ctrl-C still
    interrupts), restored exactly on exit even after an exception."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, timeout: float) -> str:
        """The keys typed since the last read ("" if none within ``timeout``); an escape sequence
        (arrow keys and the like) and whatever follows it in the same read are dropped."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return ""
        return os.read(self.fd, 64).decode(errors="ignore").split("\x1b", 1)[0]


@contextlib.contextmanager
def raw_keys(fd: int) -> Iterator[KeyReader]:
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield KeyReader(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class PanelSession:
    """The loop: poll status, draw, act on keys. Verification runs on a thread so the panel stays live."""

    def __init__(self, daemon: DaemonProcess, cfg: Config) -> None:
        self.daemon = daemon
        self.view = PanelView(serial=cfg.device.serial, data_dir=evidence.show_path(daemon.data_dir),
                              pre_event_seconds=cfg.buffer.pre_event_seconds)
        self._last_frames: tuple[float, int] | None = None
        self._hold_seconds = {"record": cfg.buttons.hold_stop_seconds, "function": cfg.buttons.stealth_hold_seconds}
        self._hold: tuple[str, float] | None = None   # (key, monotonic start) of the button held down now
        self._verifying = threading.Lock()
        self._inbox: queue.SimpleQueue[str] = queue.SimpleQueue()  # lines from the verify thread

    def note(self, text: str) -> None:
        """Add an activity line; safe from any thread (the draw loop moves it into the view)."""
        self._inbox.put(f"{time.strftime('%H:%M:%S')}  {text}")

    def drain(self) -> None:
        while True:
            try:
                self.view.activity.append(self._inbox.get_nowait())
            except queue.Empty:
                return

    def poll(self) -> None:
        d = self.daemon
        if not d.alive:
            if d.proc is not None and not self.view.stopped:
                self.view.stopped = True
                log = evidence.show_path(d.log_path)
                self.view.daemon_note = f"exited with code {d.returncode}: see {log}; q to quit"
                self.note(f"the daemon exited with code {d.returncode}; its log ends:")
                for line in d.log_tail(4).splitlines():
                    self.note(line.strip()[:100])
            return
        try:
            status = dict(d.request({"cmd": "status"}, timeout=1.0))
        except (ControlError, DaemonError):
            if self.view.status is None:
                self.view.daemon_note = f"pid {d.proc.pid if d.proc else '?'}: waiting for the control socket"
            return
        status["segments_on_disk"] = len(evidence.sealed_segments(d.data_dir))
        status["segments_offloaded"] = len(evidence.receipts(d.data_dir))
        self.view.status = status
        self.view.daemon_note = f"pid {d.proc.pid if d.proc else '?'}, log {evidence.show_path(d.log_path)}"
        frames, now = status.get("frames_captured"), time.monotonic()
        if isinstance(frames, int):
            if self._last_frames and now - self._last_frames[0] >= 0.9:
                t0, f0 = self._last_frames
                self.view.fps = (frames - f0) / (now - t0)
                self._last_frames = (now, frames)
            elif self._last_frames is None:
                self._last_frames = (now, frames)

    def key(self, k: str, now: float | None = None) -> bool:
        """Act on one key; False means quit. A hold key starts holding the button; ``tick`` sends the
        gesture once it has been held as long as the config says, as a finger on the camera would."""
        now = time.monotonic() if now is None else now
        if k in ("q", "Q"):
            return False
        if self._hold is not None:
            self.note(f"{key_name(k)}  wait: the {HOLDS[self._hold[0]]} button is still held")
        elif k == "v":
            self.verify()
        elif k == "?":
            self.note("keys: " + ", ".join(f"{key} {what}" for key, (what, _) in KEYS.items())
                      + ", v verify, q quit")
        elif k in HOLDS:
            self._hold = (k, now)
            self.tick(now)
        elif k in KEYS:
            self._send(k)
        else:
            self.note(f"{key_name(k)}: not a key; press ? for help")
        return True

    def tick(self, now: float) -> None:
        """Advance a held button: show how long it has been held, send the hold when it is long enough."""
        if self._hold is None:
            self.view.holding = None
            return
        k, started = self._hold
        button = HOLDS[k]
        needed, held = self._hold_seconds[button], now - started
        if held < needed:
            self.view.holding = (button, held, needed)
            return
        self._hold, self.view.holding = None, None
        self._send(k)

    def _send(self, k: str) -> None:
        what, message = KEYS[k]
        try:
            reply = self.daemon.request(message, timeout=2.0)
        except (ControlError, DaemonError) as e:
            self.note(f"{k}  {what}: refused: {str(e).splitlines()[0]}")
            return
        detail = press_words(reply) if "press" in reply else dock_words(reply)
        if isinstance(reply.get("press"), dict) and reply["press"].get("intent") == "toggle_stealth":
            with contextlib.suppress(ControlError, DaemonError):
                on = self.daemon.request({"cmd": "status"}, timeout=2.0).get("stealth")
                detail = f"stealth {'on' if on else 'off'}"
        self.note(f"{k}  {what} -> {detail}")

    def verify(self) -> None:
        if not self._verifying.acquire(blocking=False):
            self.note("v  verify already running")
            return
        self.note("v  verifying ...")

        def work() -> None:
            try:
                _, lines = verify_data_dir(self.daemon.data_dir)   # lines[0] is "verify: OK" / "FAILED"
                shown = [ln for ln in lines if ln.startswith(("verify:", "device", "error", "audit"))][:4]
                for ln in shown:
                    self.note(f"   {ln}")
            except StepFailed as e:
                self.note(f"   {e}")
            except Exception as e:  # noqa: BLE001 - show it in the panel, never kill the session
                self.note(f"   verify crashed: {e!r}")
            finally:
                self._verifying.release()

        threading.Thread(target=work, name="sim-verify", daemon=True).start()

    def loop(self, console: Console, keys: KeyReader) -> None:
        with Live(render(self.view), console=console, screen=True, auto_refresh=False) as live:
            next_poll = 0.0
            while True:
                now = time.monotonic()
                if now >= next_poll:
                    self.poll()
                    next_poll = now + POLL_SECONDS
                self.view.now = now
                self.view.utc_now = iso_utc(time.time_ns())[:19] + "Z"
                self.tick(now)
                self.drain()
                live.update(render(self.view), refresh=True)
                for k in keys.read(timeout=max(0.0, min(0.1, next_poll - time.monotonic()))):
                    if not self.key(k):
                        self.view.daemon_note = "stopping the daemon (SIGTERM; it seals the open segment) ..."
                        self.drain()
                        live.update(render(self.view), refresh=True)
                        return


def run_panel(daemon: DaemonProcess, cfg: Config, *, console: Console | None = None) -> int:
    """Start the daemon, run the panel until q (or Ctrl-C), stop the daemon, print the evidence."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BodycamError("--panel needs a terminal; without one, run a scenario: "
                           "bodycam sim --scenario config/scenarios/patrol.toml")
    console = console or Console()
    daemon.spawn()
    session = PanelSession(daemon, cfg)
    code = 0
    try:
        with raw_keys(sys.stdin.fileno()) as keys:
            session.loop(console, keys)
    except KeyboardInterrupt:
        code = 130
    finally:
        with contextlib.suppress(Exception):     # a last look, so the summary is not 0.2 s stale
            session.poll()
        last = session.view.status
        print("bodycam sim: stopping the daemon (SIGTERM) ...", flush=True)
        exit_code = daemon.stop()
    # Plain print from here: paths and commands must stay whole lines, to be copied and pasted.
    print(f"bodycam sim: daemon stopped, exit code {exit_code}")
    if last:
        last = evidence.after_stop(last, daemon.data_dir)
        print(f"  last status: {describe_status(last)}")
        print(f"  this run   {_recordings_row({**last, 'pending_uploads': None})}")
    print(f"  daemon log: {evidence.show_path(daemon.log_path)}")
    for line in evidence.render(evidence.collect(daemon.data_dir)):
        print(line)
    return code or (0 if exit_code == 0 else 1)
