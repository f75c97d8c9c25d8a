"""The physical buttons and the dock-sense input, through gpiozero, reported as gestures.

gpiozero's own debounce (bounce_time) is off on purpose: MockPin ignores it, so relying on it would make
the simulator and the Pi behave differently. Edges go straight into GestureRecognizer, which debounces.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from gpiozero import Button, DigitalInputDevice

from ..clock import Clock
from ..config import ButtonsConfig
from .gestures import GESTURES, GestureRecognizer

BUTTONS = ("record", "function")

log = logging.getLogger(__name__)

GestureCallback = Callable[[str, str], None]
DockCallback = Callable[[bool], None]


class ButtonPanel:
    """Record and function buttons plus dock sense.

    ``on_gesture(button, gesture)`` and ``on_dock(docked)`` are always called from the panel's own
    thread, one at a time and in the order the events happened, never from gpiozero's callback thread:
    a slow handler (starting a recording) then delays feedback, not the timestamping of later edges.
    """

    POLL_S = 0.01

    def __init__(self, cfg: ButtonsConfig, *, clock: Clock, on_gesture: GestureCallback,
                 on_dock: DockCallback | None = None) -> None:
        self._cfg = cfg
        self._clock = clock
        self._on_gesture = on_gesture
        self._on_dock = on_dock
        # _lock guards the recognizers, the dock state and the event queue; callbacks run outside it.
        self._lock = threading.Lock()
        self._events: deque[tuple[str, object]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        debounce_s = cfg.debounce_ms / 1000
        self._recognizers = {
            "record": GestureRecognizer(debounce_s=debounce_s, double_press_s=cfg.double_press_seconds,
                                        hold_s=cfg.hold_stop_seconds, clock=clock),
            "function": GestureRecognizer(debounce_s=debounce_s, double_press_s=cfg.double_press_seconds,
                                          hold_s=cfg.stealth_hold_seconds, clock=clock),
        }
        self._debounce_ns = int(debounce_s * 1e9)
        self._devices: list[Button | DigitalInputDevice] = []
        try:
            self._buttons = {
                "record": Button(cfg.record_pin, pull_up=True, bounce_time=None),
                "function": Button(cfg.function_pin, pull_up=True, bounce_time=None),
            }
            self._devices.extend(self._buttons.values())
            self._dock = DigitalInputDevice(cfg.dock_pin, pull_up=False, bounce_time=None)
            self._devices.append(self._dock)
        except BaseException:
            self._close_devices()
            raise
        # Dock contacts bounce too: report a level only once it has been stable for debounce_ms.
        self._docked = bool(self._dock.value)
        self._dock_raw = self._docked
        self._dock_raw_ns = clock.monotonic_ns()
        for name, button in self._buttons.items():
            button.when_pressed = self._edge_handler(name, True)
            button.when_released = self._edge_handler(name, False)
        self._dock.when_activated = self._dock_handler(True)
        self._dock.when_deactivated = self._dock_handler(False)
        self._thread = threading.Thread(target=self._run, name="bodycam-buttons", daemon=True)
        self._thread.start()

    @property
    def docked(self) -> bool:
        """The debounced dock level (the initial level is not reported through on_dock)."""
        with self._lock:
            return self._docked

    def inject(self, button: str, gesture: str) -> None:
        """Deliver a gesture as if pressed (control socket, simulator); same callback path as the pins."""
        if button not in BUTTONS:
            raise ValueError(f"button {button!r}: must be one of {', '.join(BUTTONS)}")
        if gesture not in GESTURES:
            raise ValueError(f"gesture {gesture!r}: must be one of {', '.join(GESTURES)}")
        with self._lock:
            if self._closed:
                return
            self._events.append(("gesture", (button, gesture)))
        self._wake.set()

    def _edge_handler(self, name: str, pressed: bool) -> Callable[[], None]:
        def handler() -> None:
            t = self._clock.monotonic_ns()      # first, before any lock: the edge's time
            with self._lock:
                if self._closed:
                    return
                gestures = self._recognizers[name].on_edge(pressed, t)
                self._events.extend(("gesture", (name, g.kind)) for g in gestures)
            self._wake.set()
        return handler

    def _dock_handler(self, level: bool) -> Callable[[], None]:
        def handler() -> None:
            t = self._clock.monotonic_ns()
            with self._lock:
                self._dock_raw, self._dock_raw_ns = level, t
            self._wake.set()
        return handler

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.POLL_S)
            self._wake.clear()
            t = self._clock.monotonic_ns()
            with self._lock:
                if self._closed:
                    break
                for name, recognizer in self._recognizers.items():
                    self._events.extend(("gesture", (name, g.kind)) for g in recognizer.poll(t))
                if self._dock_raw != self._docked and t - self._dock_raw_ns >= self._debounce_ns:
                    self._docked = self._dock_raw
                    self._events.append(("dock", self._docked))
            self._deliver()

    def _deliver(self) -> None:
        while True:
            with self._lock:
                if not self._events or self._closed:
                    return
                kind, payload = self._events.popleft()
            try:
                if kind == "gesture":
                    button, gesture = payload  # type: ignore[misc]
                    self._on_gesture(button, gesture)
                elif self._on_dock is not None:
                    self._on_dock(bool(payload))
            except Exception:
                # A bug in one handler must not leave the officer with dead buttons for the shift.
                log.exception("button handler failed for %s %r", kind, payload)

    def close(self) -> None:
        """Stop the thread and release the pins; safe to call twice or from a callback."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._events.clear()
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)
        self._close_devices()

    def _close_devices(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()

    def __enter__(self) -> ButtonPanel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
