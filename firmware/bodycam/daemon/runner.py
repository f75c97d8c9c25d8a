"""`bodycam run`: wires device, buttons, indicators, state machine, control socket and systemd together.

Construction order is the safety argument: the data directory is locked first (two daemons on one
chain would hand out the same sequence numbers), then the device is built (a missing key fails here,
before any pin is claimed), then pins, then the socket. Shutdown runs in reverse, and the device is
closed last of the recording parts, so the open segment is sealed with reason "shutdown" and the audit
log ends with power_off (the offload worker is stopped and joined before that, so its upload_stop
entry comes first). Everything runs in threads of their own; the main thread only ticks the
state machine and feeds the watchdog until ``stop`` is set (by SIGTERM/SIGINT in cli_run).

Pins that cannot be opened (no pin library on the card, a pin held by another program, a wrong pin
number) do not end the daemon: exiting would only make systemd restart it every few seconds for ever,
with nothing on the camera to show it. It stays up in the fault state instead: the red LED solid if
that pin opens (``controls.faultlight``), one error line in the journal, and ``bodycam status`` and
``bodycam doctor`` saying which pins and why. The camera still buffers; the watchdog is still fed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from contextlib import ExitStack
from pathlib import Path

from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from ..clock import Clock, SystemClock
from ..config import Config
from ..controls.buttons import ButtonPanel
from ..controls.faultlight import FaultLight
from ..controls.indicators import Indicators
from ..device import RecordingDevice
from ..errors import BodycamError
from ..layout import ensure_writable_dir
from ..offload.service import OffloadService
from .control import socket_path
from .control_server import ControlServer, remove_stale_socket
from .machine import SettableBattery, StateMachine
from .states import Event, State
from .systemd import Notifier

log = logging.getLogger("bodycam.daemon")

TICK_SECONDS = 0.1


class DataDirLock:
    """An flock on <data_dir>/run/daemon.lock, released by the kernel even if we are killed -9."""

    def __init__(self, run_dir: Path) -> None:
        ensure_writable_dir(run_dir.parent)  # the data dir: one clear line if it cannot hold evidence
        ensure_writable_dir(run_dir, what="data_dir folder")
        os.chmod(run_dir, 0o700)
        self.path = run_dir / "daemon.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise BodycamError(f"another bodycam daemon is using {run_dir.parent}; stop it first "
                               "('systemctl stop bodycam')") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def pin_problem(what: str, error: BaseException) -> str:
    """One line for the journal, `bodycam status` and doctor: which pins, why, what to check."""
    return (f"cannot open the {what} pins ({str(error) or type(error).__name__}): check the pin numbers "
            "in the config, that the bodycam user is in the gpio group and no other program holds them, "
            "and 'bodycam doctor' (pin factory); without GPIO hardware set GPIOZERO_PIN_FACTORY=mock")


def _gpio(what: str, build, problems: list[str]):  # type: ignore[no-untyped-def]
    """``build()``, or None with the reason appended to ``problems`` (any error: lgpio raises its own)."""
    try:
        return build()
    except Exception as e:
        problems.append(pin_problem(what, e))
        log.error(problems[-1], extra={"event": "pins_fault", "data": {"pins": what}})
        return None


def run(cfg: Config, stop: threading.Event, *, notifier: Notifier | None = None,
        clock: Clock | None = None, tick_seconds: float = TICK_SECONDS) -> int:
    """Run the daemon until ``stop`` is set; returns the exit status (0 after a clean shutdown)."""
    clock = clock or SystemClock()
    notifier = notifier or Notifier()
    sock = socket_path(cfg.data_dir)
    with ExitStack() as stack:
        lock = DataDirLock(sock.parent)
        stack.callback(lock.release)
        remove_stale_socket(sock)
        device = RecordingDevice(cfg, clock=clock)
        stack.callback(device.close, "shutdown")          # runs after the machine's own shutdown: no-op
        pin_problems: list[str] = []
        indicators = (_gpio("indicator", lambda: Indicators(cfg.indicators, clock=clock), pin_problems)
                      or FaultLight(cfg.indicators))
        stack.callback(indicators.close)
        simulated = isinstance(Device.pin_factory, MockFactory)
        battery = SettableBattery(100.0) if simulated else None
        offload = OffloadService(cfg, layout=device.layout, signer=device.signer, audit=device.audit.append,
                                 clock=clock)
        machine = StateMachine(device, indicators, clock=clock,
                               battery=battery if battery is not None else (lambda: None), offload=offload)
        stack.callback(machine.shutdown, "shutdown")
        stack.callback(offload.close)     # before the machine's shutdown closes the audit log
        _tell_systemd(machine, notifier)
        panel = _gpio("button", lambda: ButtonPanel(cfg.buttons, clock=clock, on_gesture=machine.on_gesture,
                                                   on_dock=machine.on_dock), pin_problems)
        if panel is not None:
            stack.callback(panel.close)
        server = ControlServer(sock, machine, inject=panel.inject if panel is not None else None,
                               set_battery=battery.set if battery is not None else None)
        server.start()
        stack.callback(server.close)
        stack.callback(notifier.stopping, "shutting down")
        log.info("started", extra={"event": "started", "data": {
            "serial": cfg.device.serial, "data_dir": str(cfg.data_dir), "socket": str(sock),
            "pid": os.getpid(), "simulated_pins": simulated, "recovered_segments": len(device.recovered)}})
        machine.boot(docked=panel.docked if panel is not None else False)
        if pin_problems:
            machine.fault("; ".join(pin_problems))
        _loop(machine, notifier, stop, clock, tick_seconds)
    log.info("stopped", extra={"event": "stopped", "data": {"faults": len(device.faults)}})
    notifier.close()
    return 0


def _tell_systemd(machine: StateMachine, notifier: Notifier) -> None:
    """STATUS=<state> on every transition; READY=1 once booting is over (buffering, or docked/fault)."""
    ready = False

    def on_transition(old: State, new: State, event: Event) -> None:
        nonlocal ready
        if not ready:
            ready = True
            notifier.ready(status=new)
        else:
            notifier.status(new)
    machine.add_listener(on_transition)


def _loop(machine: StateMachine, notifier: Notifier, stop: threading.Event, clock: Clock,
          tick_seconds: float) -> None:
    wd_ns = int(notifier.watchdog_seconds * 1e9) if notifier.watchdog_seconds else 0
    next_wd = clock.monotonic_ns()
    withheld = False
    while not stop.wait(tick_seconds):
        try:
            machine.tick()
        except Exception:
            # One bad tick must not end the shift; the watchdog catches a machine that stays broken.
            log.exception("tick failed", extra={"event": "tick_failed"})
        now = clock.monotonic_ns()
        if wd_ns and now >= next_wd:
            next_wd = now + wd_ns
            healthy = machine.healthy()
            if healthy:
                notifier.watchdog()
            elif not withheld:      # once per episode: systemd will restart us if it lasts
                log.error("no frames: not feeding the watchdog", extra={"event": "watchdog_withheld"})
            withheld = not healthy
