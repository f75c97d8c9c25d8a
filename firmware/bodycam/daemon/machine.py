"""The daemon's state machine: the one place that decides what the camera is doing.

Gestures (from the button panel or the control socket), dock sense and ``tick()`` (timers, fault and
storage checks) all come here; the machine acts on the RecordingDevice and the Indicators and writes
every press and every transition to the signed audit log, so "was the camera recording?" has a signed
answer. The state lives in ``self._state`` only, and changes only through ``_transition()``, which
accepts nothing outside ``states.TRANSITIONS``.

Time is injected: ``tick()`` compares repeating deadlines with the clock instead of owning threads, so
a 2-minute reminder or a 20-second low-battery beep is tested by advancing a ManualClock. One lock
serialises every entry point; none of them blocks on disk or sound (a stop does not wait for the
segment to seal, patterns play on the indicators' own thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .. import __version__
from ..clock import Clock
from ..config import ButtonsConfig
from ..controls.intents import Intent, StopConfirmation
from ..device import RecordingDevice
from ..offload.spool import Spool
from .states import Event, State, next_state

log = logging.getLogger("bodycam.daemon")

LOW_BATTERY_PERCENT = 15.0
LOW_BATTERY_HYSTERESIS = 2.0      # a reading wobbling around 15 % must not flood the audit log
REPEAT_WARNING_SECONDS = 20.0     # low battery 4 beeps / 20 s, clock not set 5 beeps / 20 s
STORAGE_CHECK_SECONDS = 1.0
STALL_SECONDS = 10.0              # no frame for this long: stop feeding the systemd watchdog

BatteryProbe = Callable[[], float | None]
StateListener = Callable[[State, State, Event], None]


class Feedback(Protocol):
    """What the machine needs from ``controls.indicators.Indicators`` (tests pass a recording fake)."""

    def show(self, state: str) -> None: ...
    def recording_started(self) -> None: ...
    def recording_stopped(self) -> None: ...
    def reminder(self) -> None: ...
    def marker(self) -> None: ...
    def ignored_hint(self) -> None: ...
    def refused(self) -> None: ...
    def storage_full(self) -> None: ...
    def low_battery(self) -> None: ...
    def clock_not_set(self) -> None: ...
    def set_stealth(self, on: bool) -> None: ...


class Offload(Protocol):
    """What the machine needs from ``offload.service.OffloadService``: start/stop with the dock, status."""

    def dock(self) -> None: ...
    def undock(self, reason: str) -> None: ...
    def status(self) -> dict[str, Any]: ...


class SettableBattery:
    """The simulator's battery: a percentage set through the control socket (a Pi reads a fuel gauge)."""

    def __init__(self, percent: float | None = 100.0) -> None:
        self._percent = percent

    def __call__(self) -> float | None:
        return self._percent

    def set(self, percent: float) -> None:
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise ValueError(f"battery percent {percent!r}: must be a number from 0 to 100")
        self._percent = float(percent)


class _Every:
    """A repeating deadline on the injected clock, checked by tick(); not a thread of its own."""

    def __init__(self, seconds: float) -> None:
        self.period_ns = int(seconds * 1e9)
        self.next_ns: int | None = None

    @property
    def armed(self) -> bool:
        return self.next_ns is not None

    def arm(self, now_ns: int, *, at_once: bool = False) -> None:
        self.next_ns = now_ns if at_once else now_ns + self.period_ns

    def disarm(self) -> None:
        self.next_ns = None

    def due(self, now_ns: int) -> bool:
        if self.next_ns is None or self.period_ns <= 0 or now_ns < self.next_ns:
            return False
        self.next_ns += self.period_ns
        if self.next_ns <= now_ns:      # we were not ticked for a while: one beep, not a burst
            self.next_ns = now_ns + self.period_ns
        return True


@dataclass(frozen=True)
class PressResult:
    """What one gesture did; the control socket returns it so `bodycam press` can say so."""

    number: int
    button: str
    gesture: str
    intent: Intent
    state_before: State
    state: State


class StateMachine:
    """booting -> buffering <-> recording, docked and fault; see ``states.TRANSITIONS``."""

    def __init__(self, device: RecordingDevice, indicators: Feedback, *, clock: Clock,
                 buttons: ButtonsConfig | None = None, reminder_seconds: float | None = None,
                 battery: BatteryProbe = lambda: None, low_battery_percent: float = LOW_BATTERY_PERCENT,
                 repeat_warning_seconds: float = REPEAT_WARNING_SECONDS,
                 storage_check_seconds: float = STORAGE_CHECK_SECONDS,
                 stall_seconds: float = STALL_SECONDS, offload: Offload | None = None) -> None:
        self.device = device
        self._offload = offload
        self.indicators = indicators
        self.clock = clock
        cfg = device.config
        self._buttons = buttons or cfg.buttons
        self._battery = battery
        self._low_battery_percent = low_battery_percent
        self._stall_ns = int(stall_seconds * 1e9)
        self._lock = threading.RLock()
        self._pressed = threading.Condition(self._lock)
        self._state: State = "booting"
        self._listeners: list[StateListener] = []
        self._confirm = StopConfirmation(self._buttons, clock=clock)
        self._docked = False
        self._stealth = False
        self._fault: str | None = None           # latched until the cause is gone
        self._fault_kind: str | None = None      # "storage" (clears with free space) or "device"
        self.last_fault: str | None = None       # kept after the fault clears, for `bodycam status`
        self._faults_seen = len(device.faults)
        self._low_battery = False
        self._closed = False
        self.presses = 0
        self.last_press: PressResult | None = None
        now = clock.monotonic_ns()
        self._started_ns = now
        self._since_ns = now
        self._progress_ns = now
        self._frames_seen = 0
        reminder = cfg.indicators.record_reminder_seconds if reminder_seconds is None else reminder_seconds
        self._reminder = _Every(reminder)
        self._low_battery_beep = _Every(repeat_warning_seconds)
        self._clock_beep = _Every(repeat_warning_seconds)
        self._storage_check = _Every(storage_check_seconds)

    # --- observers --------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    @property
    def docked(self) -> bool:
        with self._lock:
            return self._docked

    @property
    def stealth(self) -> bool:
        with self._lock:
            return self._stealth

    def add_listener(self, listener: StateListener) -> None:
        """Called as listener(old, new, event) after every transition, under the machine's lock."""
        self._listeners.append(listener)

    # --- entry points -------------------------------------------------------------------------------

    def boot(self, *, docked: bool = False) -> State:
        """Start the pipeline (power_on, buffering_start), leave "booting"; ``docked``: the dock level."""
        with self._lock:
            self.indicators.show("booting")
            self._docked = docked
            try:
                self.device.start()
            except Exception as e:  # a camera that will not open must still answer `bodycam status`
                log.exception("pipeline failed to start")
                self._enter_fault(str(e) or type(e).__name__, kind="device")
                return self._state
            now = self.clock.monotonic_ns()
            self._progress_ns = now
            self._storage_check.arm(now, at_once=True)
            if docked:
                self._audit("dock", at_boot=True)
                self._enter_docked()
                self._transition("boot_docked")
            else:
                self._transition("boot_ok")
            self._check_storage(now)
            return self._state

    def on_gesture(self, button: str, gesture: str) -> PressResult | None:
        """A button gesture (ButtonPanel callback). Every press gets feedback; none is met with silence."""
        with self._lock:
            if self._closed:
                return None
            before = self._state
            intent = self._confirm.resolve(before, button, gesture)
            self._audit("press", button=button, gesture=gesture, intent=intent, state=before)
            self._act(intent)
            self.presses += 1
            self.last_press = PressResult(self.presses, button, gesture, intent, before, self._state)
            self._pressed.notify_all()
            return self.last_press

    def wait_for_press(self, after: int, timeout: float = 2.0) -> PressResult | None:
        """The first press handled after press number ``after`` (control socket: inject, then report)."""
        with self._pressed:
            if not self._pressed.wait_for(lambda: self.presses > after, timeout=timeout):
                return None
            return self.last_press

    def on_dock(self, docked: bool) -> None:
        """Dock sense changed (ButtonPanel callback, or the control socket in simulation)."""
        with self._lock:
            if self._closed or docked == self._docked:
                return
            self._docked = docked
            self._audit("dock" if docked else "undock", state=self._state)
            if self._state == "booting":
                return                  # boot() reads the level itself
            if docked:
                self._dock()
            else:
                self._undock()

    def fault(self, message: str) -> None:
        """A fault found outside the pipeline (pins that cannot be opened): latched, audited, shown."""
        with self._lock:
            if not self._closed:
                self._enter_fault(message, kind="device")

    def tick(self) -> None:
        """Timers, faults and storage; the runner calls this every ~100 ms, tests after advancing a clock."""
        with self._lock:
            if self._closed:
                return
            now = self.clock.monotonic_ns()
            self._check_faults()
            if self._state == "recording" and not self.device.pipeline.recording:
                self._recording_ended()
            if self._state == "recording" and self._reminder.due(now):
                self.indicators.reminder()
            if self._storage_check.due(now):
                self._check_storage(now)
            self._check_battery(now)
            self._check_clock(now)
            frames = self.device.pipeline.stats.frames_captured
            if frames != self._frames_seen:
                self._frames_seen, self._progress_ns = frames, now

    def healthy(self) -> bool:
        """Frames are still arriving: the condition for feeding the systemd watchdog."""
        with self._lock:
            return self.clock.monotonic_ns() - self._progress_ns < self._stall_ns

    def shutdown(self, reason: str = "shutdown") -> None:
        """Seal the open segment (pipeline stop with ``reason``), then power_off in the audit log."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._reminder.disarm()
            self._pressed.notify_all()
            state = self._state
        # Outside the lock: closing joins the pipeline threads, which may take a second.
        log.info("shutdown", extra={"event": "shutdown", "data": {"reason": reason, "state": state}})
        self.device.close(reason)

    def status(self) -> dict[str, Any]:
        """The object `bodycam status --json` prints (shape documented in docs/daemon.md)."""
        # Disk first and without the machine lock: a spool scan or statvfs on a slow SD card must not
        # hold up a button press that arrives while someone asks for the status.
        dev = self.device
        try:
            free: int | None = dev.storage.free_bytes()
            headroom: int | None = free - dev.storage.reserve_bytes  # type: ignore[operator]
        except OSError:
            free = headroom = None
        pending_uploads = self._pending_uploads()
        clock = dev.clock_status()
        with self._lock:
            now = self.clock.monotonic_ns()
            stats = dev.pipeline.snapshot()
            return {
                "state": self._state,
                "state_seconds": round((now - self._since_ns) / 1e9, 3),
                "serial": dev.config.device.serial,
                "officer_id": dev.config.device.officer_id,
                "firmware_version": __version__,
                "uptime_seconds": round((now - self._started_ns) / 1e9, 3),
                "recording_id": dev.recorder.recording_id,
                "stop_pending": self._confirm.pending,
                "pre_event_seconds": dev.config.buffer.pre_event_seconds,
                "buffer_seconds": round(stats.buffer_seconds, 3),
                "buffer_capped": dev.prebuffer.capped,
                "buffer_bytes": stats.buffer_bytes,
                "frames_captured": stats.frames_captured,
                "dropped": stats.dropped,
                "audio": dev.audio_status(),
                "segments_sealed": dev.recorder.segments_sealed,
                "pending_uploads": pending_uploads,
                "free_bytes": free,
                "headroom_bytes": headroom,
                "reserve_bytes": dev.storage.reserve_bytes,
                "clock": clock,
                "stealth": self._stealth,
                "docked": self._docked,
                "battery_percent": self._battery(),
                "low_battery": self._low_battery,
                "fault": self._fault,
                "last_fault": self.last_fault,
                "last_press": asdict(self.last_press) if self.last_press else None,
                "offload": self._offload.status() if self._offload is not None else None,
            }

    # --- intents ---------------------------------------------------------------------------------

    def _act(self, intent: Intent) -> None:
        ind = self.indicators
        if intent == "start_recording":
            self._start_recording()
        elif intent == "stop_recording":
            self._stop_recording("button")
        elif intent == "stop_pending":
            ind.ignored_hint()          # "press again to confirm the stop"
        elif intent == "marker":
            self.device.pipeline.marker()
            ind.marker()
        elif intent == "toggle_stealth":
            self._stealth = not self._stealth
            ind.set_stealth(self._stealth)
            self._audit("stealth", on=self._stealth, state=self._state)
        elif intent == "ignored_hint":
            ind.ignored_hint()
        else:
            ind.refused()

    def _start_recording(self) -> None:
        problem = self._storage_problem()
        if problem is not None:
            # As on real cameras: 3 beeps and no recording, rather than a recording that dies at once.
            self._audit("record_refused", reason=problem)
            self._enter_fault(problem, kind="storage")
            return
        self.device.pipeline.start_recording()
        self._transition("record_start")
        self.indicators.recording_started()
        self._reminder.arm(self.clock.monotonic_ns())

    def _stop_recording(self, reason: str) -> None:
        # wait=False: feedback now; the writer seals the segment in order behind the queued packets.
        self.device.pipeline.stop_recording(reason, wait=False)
        self._reminder.disarm()
        self._transition("record_stop", reason=reason)
        self.indicators.recording_stopped()

    # --- dock ------------------------------------------------------------------------------------

    def _dock(self) -> None:
        if self._state == "recording":
            self.device.pipeline.stop_recording("docked", wait=False)
            self._reminder.disarm()
            self.indicators.recording_stopped()
        if self._transition("dock"):
            self._enter_docked()

    def _enter_docked(self) -> None:
        self.device.pipeline.set_buffering(False)
        self._audit("buffering_stop", reason="docked")
        if self._offload is not None:
            self._offload.dock()        # returns at once; uploads start when the backend answers

    def _undock(self) -> None:
        if self._state != "docked":
            return
        if self._offload is not None:
            self._offload.undock("undocked")   # stops between chunks; the upload resumes next dock
        if self._fault_kind == "storage":
            self._clear_fault_if_space()
        problem = self._fault if self._fault_kind == "device" else self._storage_problem()
        self.device.pipeline.set_buffering(True)
        self._audit("buffering_start", reason="undocked")
        if problem is None:
            self._transition("undock")
            return
        kind = "device" if self._fault_kind == "device" else "storage"
        if self._fault != problem:
            self._audit("fault", message=problem, kind=kind, state="docked")
        self._set_fault(problem, kind)
        self._transition("undock_faulted", message=problem)
        self._fault_sound(kind)

    # --- faults and storage ----------------------------------------------------------------------

    def _check_faults(self) -> None:
        faults = self.device.faults
        while self._faults_seen < len(faults):
            message = faults[self._faults_seen]
            self._faults_seen += 1
            storage = message == self.device.recorder.fault or message.startswith("storage full")
            self._enter_fault(message, kind="storage" if storage else "device", audited=True)

    def _recording_ended(self) -> None:
        """The pipeline stopped recording without a button: a recorder fault, or the source ended."""
        fault = self.device.recorder.fault
        if fault:   # audited by the recorder (storage_full) and, a moment later, the pipeline (fault)
            self._enter_fault(fault, kind="storage", audited=True)
            return
        self._reminder.disarm()
        self._transition("record_stop", reason="ended")
        self.indicators.recording_stopped()

    def _pending_uploads(self) -> int:
        """Sealed segments still to upload: not those kept after a receipt, nor those the backend refused."""
        return Spool(self.device.layout).count_pending()

    def segment_budget(self) -> int:
        # The recorder's own figure, so the machine refuses exactly when the recorder would.
        return self.device.recorder.segment_budget()

    def _storage_problem(self) -> str | None:
        """None if a recording could start now; else the one-line reason (what to do about it)."""
        storage = self.device.storage
        try:
            room = storage.headroom()
        except OSError as e:
            return f"storage unreadable: {e.strerror or e}"
        if room >= self.segment_budget():
            return None
        return (f"storage full: {max(room, 0) // 1_000_000} MB above the "
                f"{storage.reserve_bytes // 1_000_000} MB reserve in {storage.data_dir}; "
                "dock the camera to offload footage")

    def _check_storage(self, now: int) -> None:
        if self._state == "buffering":
            problem = self._storage_problem()
            if problem is not None:
                self._enter_fault(problem, kind="storage")
        elif self._state == "fault" and self._fault_kind == "storage":
            if self._clear_fault_if_space():
                self._transition("space_freed")

    def _clear_fault_if_space(self) -> bool:
        if self._storage_problem() is not None:
            return False
        self._audit("fault_cleared", message=self._fault)
        self._fault = self._fault_kind = None
        return True

    def _set_fault(self, message: str, kind: str) -> None:
        self._fault, self._fault_kind, self.last_fault = message, kind, message

    def _enter_fault(self, message: str, *, kind: str, audited: bool = False) -> None:
        """Latch a fault and leave for "fault" (from "docked": stay, the undock re-checks it).

        ``audited``: the device already wrote its own "fault"/"storage_full" entry for this one.
        """
        already = self._state == "fault" or (self._state == "docked" and self._fault is not None)
        if not audited:
            self._audit("fault", message=message, kind=kind, state=self._state)
        self._set_fault(message, kind)
        if already:
            return                      # same episode (e.g. the pipeline echoing the recorder): no new beeps
        if self._state == "recording":
            self.device.pipeline.stop_recording("fault", wait=False)
            self._reminder.disarm()
        if self._state == "docked":
            return
        self._transition("fault", message=message)
        self._fault_sound(kind)

    def _fault_sound(self, kind: str) -> None:
        if kind == "storage":
            self.indicators.storage_full()
        else:
            self.indicators.refused()

    # --- periodic warnings -------------------------------------------------------------------------

    def _check_battery(self, now: int) -> None:
        try:
            percent = self._battery()
        except Exception:
            log.exception("battery probe failed")
            return
        if percent is None:
            return
        if not self._low_battery and percent < self._low_battery_percent:
            self._low_battery = True
            self._audit("low_battery", percent=percent)
            self._low_battery_beep.arm(now, at_once=True)
        elif self._low_battery and percent >= self._low_battery_percent + LOW_BATTERY_HYSTERESIS:
            self._low_battery = False
            self._audit("battery_ok", percent=percent)
            self._low_battery_beep.disarm()
        if self._low_battery and self._low_battery_beep.due(now):
            self.indicators.low_battery()

    def _check_clock(self, now: int) -> None:
        if self.device.clock_status().get("status") == "not_set":
            if not self._clock_beep.armed:
                self._audit("clock_not_set")
                self._clock_beep.arm(now, at_once=True)
            if self._clock_beep.due(now):
                self.indicators.clock_not_set()
        elif self._clock_beep.armed:
            self._clock_beep.disarm()

    # --- the only place the state changes ----------------------------------------------------------

    def _transition(self, event: Event, **why: Any) -> bool:
        old = self._state
        new = next_state(old, event)
        if new is None:
            log.debug("ignored", extra={"event": "ignored", "data": {"state": old, "cause": event}})
            return False
        self._state = new
        self._since_ns = self.clock.monotonic_ns()
        if new != "recording":
            self._confirm.clear()
        self._audit("state", **{"from": old, "to": new, "cause": event}, **why)
        self.indicators.show(new)
        for listener in self._listeners:
            try:
                listener(old, new, event)
            except Exception:
                log.exception("state listener failed")
        return True

    def _audit(self, event: str, **data: Any) -> None:
        log.info(event, extra={"event": event, "data": data})
        try:
            self.device.audit.append(event, **data)
        except (OSError, ValueError) as e:
            # The action matters more than its log line; the failure itself goes to the journal.
            log.error("audit append failed", extra={"event": "audit_failed",
                                                    "data": {"audit_event": event, "error": str(e)}})
