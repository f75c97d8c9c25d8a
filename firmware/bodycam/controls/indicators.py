"""LEDs, buzzer and vibration: how the camera tells the officer what it is doing.

The LEDs show the state continuously (gpiozero blinks them on its own thread); sounds and vibration
are short named patterns played one after another on our worker thread, so a caller in the button
path never waits for a beep. Stealth mode darkens and silences everything; only the haptic
confirmation of entering and leaving stealth still plays, so the officer knows which mode they are in.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import NamedTuple

from gpiozero import LED, Buzzer, DigitalOutputDevice

from ..clock import Clock
from ..config import IndicatorsConfig
from .intents import STATES


class Step(NamedTuple):
    buzzer: bool
    vibration: bool
    seconds: float


def _beeps(n: int, *, on: float = 0.15, off: float = 0.15, vibrate: bool = False) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i in range(n):
        steps.append(Step(True, vibrate, on))
        if i < n - 1:
            steps.append(Step(False, False, off))
    return tuple(steps)


# An active buzzer has one pitch, so patterns differ by rhythm and length. "refused" is the fault
# signal: very quick beeps, each with a vibration tick so it is felt even with beeps = false.
PATTERNS: dict[str, tuple[Step, ...]] = {
    "recording_started": (Step(True, True, 0.1), Step(False, True, 0.1), Step(True, True, 0.1)),
    "recording_stopped": (Step(True, True, 1.0),),
    "reminder": _beeps(2, on=0.1, off=0.1),
    "marker": (Step(True, False, 0.08),),
    "ignored_hint": (Step(True, False, 0.3),),
    "refused": _beeps(3, on=0.04, off=0.04, vibrate=True),
    "storage_full": _beeps(3),
    "low_battery": _beeps(4),
    "clock_not_set": _beeps(5),
    "stealth_on": (Step(False, True, 0.1), Step(False, False, 0.1), Step(False, True, 0.1)),
    "stealth_off": (Step(False, True, 0.4),),
}
HAPTIC_IN_STEALTH = frozenset({"stealth_on", "stealth_off"})

# (LED, on seconds, off seconds); off = None means solid.
LED_FOR_STATE: dict[str, tuple[str, float, float | None]] = {
    "buffering": ("green", 0.2, 0.8),
    "recording": ("red", 0.5, 0.5),
    "booting": ("red", 1.0, None),
    "fault": ("red", 1.0, None),
    "docked": ("green", 1.0, None),
}


class Indicators:
    """State LEDs plus non-blocking feedback patterns; ``history`` records what was actually played."""

    def __init__(self, cfg: IndicatorsConfig, *, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        # _lock guards the queue, stealth, state and history; gpiozero calls for LEDs happen under it so
        # show() and set_stealth() cannot interleave into a lit LED in stealth.
        self._lock = threading.Condition()
        self._queue: deque[str] = deque()
        self._interrupt = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._stealth = False
        self._state: str | None = None
        self.history: list[tuple[str, int]] = []
        self._devices: list[DigitalOutputDevice] = []
        try:
            self._leds = {"green": LED(cfg.green_led_pin), "red": LED(cfg.red_led_pin)}
            self._devices.extend(self._leds.values())
            self._buzzer = Buzzer(cfg.buzzer_pin)
            self._devices.append(self._buzzer)
            self._vibration = DigitalOutputDevice(cfg.vibration_pin)
            self._devices.append(self._vibration)
        except BaseException:
            for device in self._devices:
                device.close()
            raise
        self._thread = threading.Thread(target=self._run, name="bodycam-indicators", daemon=True)
        self._thread.start()

    @property
    def last_pattern(self) -> str | None:
        with self._lock:
            return self.history[-1][0] if self.history else None

    @property
    def stealth(self) -> bool:
        with self._lock:
            return self._stealth

    @property
    def state(self) -> str | None:
        with self._lock:
            return self._state

    def show(self, state: str) -> None:
        """Set the LEDs for a device state (remembered, and shown again when stealth ends)."""
        if state not in STATES:
            raise ValueError(f"state {state!r}: must be one of {', '.join(STATES)}")
        with self._lock:
            self._state = state
            if not self._stealth and not self._closed:
                self._apply_leds(state)

    def _apply_leds(self, state: str | None) -> None:
        for led in self._leds.values():
            led.off()
        if state is None:
            return
        name, on, off = LED_FOR_STATE[state]
        if off is None:
            self._leds[name].on()
        else:
            self._leds[name].blink(on_time=on, off_time=off, background=True)

    def set_stealth(self, on: bool) -> None:
        """Enter or leave stealth: LEDs dark, patterns dropped, a haptic confirmation either way."""
        with self._lock:
            if self._closed or on == self._stealth:
                return
            self._stealth = on
            if on:
                self._queue.clear()
                self._interrupt.set()       # cut a pattern that is playing now
                self._apply_leds(None)
            else:
                self._apply_leds(self._state)
        self._play("stealth_on" if on else "stealth_off")

    def recording_started(self) -> None:
        self._play("recording_started")

    def recording_stopped(self) -> None:
        self._play("recording_stopped")

    def reminder(self) -> None:
        """Two beeps; the daemon calls this every record_reminder_seconds while recording."""
        self._play("reminder")

    def marker(self) -> None:
        self._play("marker")

    def ignored_hint(self) -> None:
        """One plain tone: the press was seen but does nothing in this state."""
        self._play("ignored_hint")

    def refused(self) -> None:
        self._play("refused")

    def storage_full(self) -> None:
        self._play("storage_full")

    def low_battery(self) -> None:
        self._play("low_battery")

    def clock_not_set(self) -> None:
        self._play("clock_not_set")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued pattern has finished (tests, orderly shutdown)."""
        return self._idle.wait(timeout)

    def _play(self, name: str) -> None:
        with self._lock:
            if self._closed or (self._stealth and name not in HAPTIC_IN_STEALTH):
                return
            self.history.append((name, self._clock.monotonic_ns()))
            self._queue.append(name)
            self._idle.clear()
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle.set()
                    self._lock.wait()
                if self._closed:
                    break
                name = self._queue.popleft()
                self._interrupt.clear()
            self._perform(PATTERNS[name])
        self._idle.set()

    def _perform(self, steps: tuple[Step, ...]) -> None:
        try:
            for step in steps:
                if self._interrupt.is_set():
                    break
                self._buzzer.value = step.buzzer and self._cfg.beeps
                self._vibration.value = step.vibration and self._cfg.vibration
                if self._interrupt.wait(step.seconds):
                    break
        finally:
            self._buzzer.off()
            self._vibration.off()

    def close(self) -> None:
        """Stop the worker, switch everything off and release the pins; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._interrupt.set()
            self._lock.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=3)
        for device in self._devices:
            device.close()
        self._devices.clear()

    def __enter__(self) -> Indicators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
