"""Buttons, gestures, intents and indicators.

Pin tests drive gpiozero mock pins with real sleeps, because MockPin does no debounce of its own: what
passes here is our debounce. Pure tests feed GestureRecognizer synthetic edge times on a ManualClock.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

import pytest
from bodycam.clock import ManualClock, SystemClock
from bodycam.config import ButtonsConfig, ConfigError, IndicatorsConfig, from_dict
from bodycam.controls.buttons import ButtonPanel
from bodycam.controls.gestures import GestureRecognizer
from bodycam.controls.indicators import Indicators
from bodycam.controls.intents import StopConfirmation, intent_for

MS = 1_000_000
FAST = ButtonsConfig(hold_stop_seconds=0.3, stealth_hold_seconds=0.3)


# ---------------------------------------------------------------------------- pure gesture logic

def recognizer(clock: ManualClock, *, debounce_s: float = 0.02, double_s: float = 0.6,
               hold_s: float = 3.0) -> GestureRecognizer:
    return GestureRecognizer(debounce_s=debounce_s, double_press_s=double_s, hold_s=hold_s, clock=clock)


def feed(rec: GestureRecognizer, edges: list[tuple[int, bool]], *, until_ms: int) -> list[tuple[str, int]]:
    """Edges as (ms, pressed); polls every ms up to until_ms. Returns (gesture, ms it became certain)."""
    out = []
    pending = sorted(edges)
    for ms in range(until_ms + 1):
        while pending and pending[0][0] == ms:
            out += rec.on_edge(pending.pop(0)[1], ms * MS)
        out += rec.poll(ms * MS)
    return [(g.kind, g.t_ns // MS) for g in out]


def test_single_only_after_the_double_window() -> None:
    got = feed(recognizer(ManualClock()), [(0, True), (100, False)], until_ms=1000)
    assert got == [("single", 600)]


def test_double_is_emitted_on_the_second_press_and_that_press_cannot_hold() -> None:
    edges = [(0, True), (100, False), (300, True), (3800, False)]
    got = feed(recognizer(ManualClock()), edges, until_ms=4500)
    assert got == [("double", 300)]


def test_second_press_after_the_window_is_two_singles() -> None:
    got = feed(recognizer(ManualClock()), [(0, True), (100, False), (700, True), (800, False)], until_ms=2000)
    assert got == [("single", 600), ("single", 1300)]


def test_hold_fires_once_while_held_and_its_release_is_silent() -> None:
    got = feed(recognizer(ManualClock()), [(0, True), (5000, False)], until_ms=6000)
    assert got == [("hold", 3000)]


def test_press_released_after_window_but_before_hold_is_single_at_release() -> None:
    got = feed(recognizer(ManualClock()), [(0, True), (1500, False)], until_ms=3000)
    assert got == [("single", 1500)]


def test_contact_bounce_is_not_a_double_press() -> None:
    # press with a 5 ms bounce (low-high-low), release with a bounce too
    edges = [(0, True), (2, False), (5, True), (120, False), (123, True), (126, False)]
    assert feed(recognizer(ManualClock()), edges, until_ms=1000) == [("single", 600)]


def test_bounce_ending_in_the_other_state_is_kept() -> None:
    # a 10 ms tap, shorter than the 20 ms debounce: the release is accepted when the lockout ends
    rec = recognizer(ManualClock())
    assert feed(rec, [(0, True), (10, False)], until_ms=1000) == [("single", 600)]
    assert not rec.pressed


def test_uses_its_clock_when_no_time_is_given() -> None:
    clock = ManualClock()
    rec = recognizer(clock, hold_s=0.5)
    rec.on_edge(True)
    clock.advance(0.49)
    assert rec.poll() == []
    clock.advance(0.02)
    assert [g.kind for g in rec.poll()] == ["hold"]


# ---------------------------------------------------------------------------- intents

def test_intent_table() -> None:
    cfg = ButtonsConfig()
    assert intent_for("buffering", "record", "double", cfg) == "start_recording"
    assert intent_for("buffering", "record", "single", cfg) == "ignored_hint"
    assert intent_for("recording", "record", "single", cfg) == "marker"
    assert intent_for("recording", "record", "hold", cfg) == "stop_recording"
    assert intent_for("buffering", "function", "hold", cfg) == "toggle_stealth"
    assert intent_for("recording", "function", "hold", cfg) == "toggle_stealth"
    for state in ("booting", "docked", "fault"):
        for button in ("record", "function"):
            for gesture in ("single", "double", "hold"):
                assert intent_for(state, button, gesture, cfg) == "refused"
    with pytest.raises(ValueError):
        intent_for("sleeping", "record", "single", cfg)


def test_stop_confirmation_expires() -> None:
    clock = ManualClock()
    stop = StopConfirmation(ButtonsConfig(stop_confirmation=True), clock=clock)
    assert stop.resolve("recording", "record", "hold") == "stop_pending"
    clock.advance(5.01)
    assert stop.resolve("recording", "record", "single") == "marker"
    assert stop.resolve("recording", "record", "hold") == "stop_pending"
    clock.advance(4.9)
    assert stop.resolve("recording", "record", "single") == "stop_recording"
    assert not stop.pending


# ---------------------------------------------------------------------------- real pins, injected time

class PanelClock(ManualClock):
    """A ManualClock that counts how often the panel's own thread has read it, so a test can wait until
    the panel has looked at the time it was just moved to (no wall-clock thresholds, no sleeps)."""

    def __init__(self) -> None:
        super().__init__()
        self.panel_reads = 0

    def monotonic_ns(self) -> int:
        if threading.current_thread().name == "bodycam-buttons":
            self.panel_reads += 1
        return super().monotonic_ns()

    def settle(self, timeout: float = 10.0) -> None:
        """Returns once the panel thread has polled at the current time and delivered what it found:
        two reads later, the iteration that read the current time has finished delivering."""
        start = self.panel_reads
        deadline = time.monotonic() + timeout
        while self.panel_reads < start + 2:
            assert time.monotonic() < deadline, "the panel thread stopped polling"
            time.sleep(0.002)


class Recorder:
    def __init__(self, clock: PanelClock) -> None:
        self.q: queue.Queue[tuple[str, object]] = queue.Queue()
        self.clock = clock

    def gesture(self, button: str, gesture: str) -> None:
        self.q.put((button, gesture))

    def dock(self, docked: bool) -> None:
        self.q.put(("dock", docked))

    def next(self, timeout: float = 10.0) -> tuple[str, object]:
        """The next event; a generous real-time timeout, since the panel thread may be slow to run."""
        return self.q.get(timeout=timeout)

    def none_after(self, seconds: float) -> bool:
        """Nothing is reported when ``seconds`` pass on the injected clock."""
        self.clock.advance(seconds)
        self.clock.settle()
        if not self.q.empty():
            pytest.fail(f"unexpected event {self.q.get()}")
        return True


@pytest.fixture
def rig(mock_factory):
    def make(cfg: ButtonsConfig = FAST):
        clock = PanelClock()
        rec = Recorder(clock)
        panel = ButtonPanel(cfg, clock=clock, on_gesture=rec.gesture, on_dock=rec.dock)
        made.append(panel)
        pins = {name: mock_factory.pin(n) for name, n in
                (("record", cfg.record_pin), ("function", cfg.function_pin), ("dock", cfg.dock_pin))}
        return panel, pins, rec
    made: list[ButtonPanel] = []
    yield make
    for panel in made:
        panel.close()


def press(pin, seconds: float, clock: ManualClock) -> None:
    pin.drive_low()
    clock.advance(seconds)
    pin.drive_high()


def test_double_press_starts_recording(rig) -> None:
    _, pins, rec = rig()
    press(pins["record"], 0.05, rec.clock)
    rec.clock.advance(0.1)
    press(pins["record"], 0.05, rec.clock)
    assert rec.next() == ("record", "double")
    assert intent_for("buffering", "record", "double", FAST) == "start_recording"
    assert rec.none_after(0.7)


def test_five_ms_bounce_is_not_a_double_press(rig) -> None:
    _, pins, rec = rig()
    pin = pins["record"]
    pin.drive_low()
    rec.clock.advance(0.001)
    pin.drive_high()
    rec.clock.advance(0.001)
    pin.drive_low()                     # low-high-low within 5 ms: one press, not two
    rec.clock.advance(0.08)
    pin.drive_high()
    assert rec.none_after(FAST.double_press_seconds - 0.1)
    rec.clock.advance(0.1)
    assert rec.next() == ("record", "single")
    assert rec.none_after(0.3)


def test_single_press_reports_single_after_the_window(rig) -> None:
    _, pins, rec = rig()
    press(pins["record"], 0.05, rec.clock)
    assert rec.none_after(FAST.double_press_seconds - 0.05 - 0.001)   # not a moment before the window ends
    rec.clock.advance(0.002)
    assert rec.next() == ("record", "single")
    assert intent_for("buffering", "record", "single", FAST) == "ignored_hint"
    assert intent_for("recording", "record", "single", FAST) == "marker"


def test_hold_reports_while_still_held_and_release_is_silent(rig) -> None:
    _, pins, rec = rig()
    pins["record"].drive_low()
    rec.clock.advance(FAST.hold_stop_seconds)
    assert rec.next() == ("record", "hold")
    assert pins["record"].state is False          # still held when the hold arrived
    pins["record"].drive_high()
    assert rec.none_after(0.7)
    assert intent_for("recording", "record", "hold", FAST) == "stop_recording"


def test_default_three_second_hold(rig) -> None:
    _, pins, rec = rig(ButtonsConfig())
    pins["record"].drive_low()
    assert rec.none_after(2.999)
    rec.clock.advance(0.001)
    assert rec.next() == ("record", "hold")
    pins["record"].drive_high()
    assert rec.none_after(1.0)


def test_function_hold_toggles_stealth(rig) -> None:
    _, pins, rec = rig()
    press(pins["function"], 0.4, rec.clock)
    assert rec.next() == ("function", "hold")
    assert intent_for("recording", "function", "hold", FAST) == "toggle_stealth"


def test_stop_confirmation_with_real_presses(rig) -> None:
    cfg = dataclasses.replace(FAST, stop_confirmation=True)
    _, pins, rec = rig(cfg)
    stop = StopConfirmation(cfg, clock=rec.clock)
    press(pins["record"], 0.4, rec.clock)
    assert stop.resolve("recording", *rec.next()) == "stop_pending"
    rec.clock.advance(1.0)
    press(pins["record"], 0.05, rec.clock)
    rec.clock.advance(FAST.double_press_seconds)
    assert stop.resolve("recording", *rec.next()) == "stop_recording"


def test_press_while_docked_is_a_gesture_the_intent_table_refuses(rig) -> None:
    """The pin side; the daemon playing `refused` on the buzzer is tests/test_daemon.py's."""
    _, pins, rec = rig()
    press(pins["record"], 0.05, rec.clock)
    rec.clock.advance(FAST.double_press_seconds)
    button, gesture = rec.next()
    assert (button, gesture) == ("record", "single")
    assert intent_for("docked", button, gesture, FAST) == "refused"


def test_dock_pin_high_reports_docked_once_stable(rig) -> None:
    panel, pins, rec = rig()
    assert not panel.docked
    pins["dock"].drive_high()
    assert rec.none_after(FAST.debounce_ms / 1000 / 2)
    assert not panel.docked                         # a bounce shorter than debounce_ms is not reported
    rec.clock.advance(FAST.debounce_ms / 1000)
    assert rec.next() == ("dock", True)
    assert panel.docked
    pins["dock"].drive_low()
    rec.clock.advance(FAST.debounce_ms / 1000)
    assert rec.next() == ("dock", False)


def test_inject_uses_the_same_callback_path(rig) -> None:
    panel, _, rec = rig()
    panel.inject("record", "double")
    assert rec.next() == ("record", "double")
    with pytest.raises(ValueError):
        panel.inject("volume", "single")


def test_close_is_idempotent_and_frees_the_pins(rig, mock_factory) -> None:
    panel, pins, rec = rig()
    with panel:
        pass
    panel.close()
    assert not panel._thread.is_alive()
    got: list[tuple[str, str]] = []
    again = ButtonPanel(FAST, clock=rec.clock, on_gesture=lambda b, g: got.append((b, g)))   # pins reusable
    try:
        again.inject("record", "double")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [("record", "double")]
    finally:
        again.close()


# ---------------------------------------------------------------------------- indicators

@pytest.fixture
def indicators(mock_factory):
    cfg = IndicatorsConfig()
    ind = Indicators(cfg, clock=SystemClock())
    pins = {name: mock_factory.pin(getattr(cfg, f"{name}_pin"))
            for name in ("green_led", "red_led", "buzzer", "vibration")}
    yield ind, pins
    ind.close()


def transitions(pin) -> int:
    return len(pin.states) - 1


def eventually(pred, timeout: float = 10.0) -> bool:
    """gpiozero blinks LEDs on its own real-time thread: wait for it generously, never assert elapsed time."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_buffering_blinks_green(indicators) -> None:
    ind, pins = indicators
    ind.show("buffering")
    assert eventually(lambda: transitions(pins["green_led"]) >= 3)   # on, off, on again
    assert {s.state for s in pins["green_led"].states} == {False, True}
    assert pins["red_led"].state is False


def test_solid_states(indicators) -> None:
    ind, pins = indicators
    ind.show("fault")
    assert pins["red_led"].state is True and pins["green_led"].state is False
    ind.show("docked")
    assert pins["green_led"].state is True and pins["red_led"].state is False


def test_stealth_turns_everything_off_and_suppresses_patterns(indicators) -> None:
    ind, pins = indicators
    ind.show("recording")
    ind.recording_started()
    ind.set_stealth(True)
    assert ind.wait_idle(2)
    assert ind.last_pattern == "stealth_on"
    assert any(s.state for s in pins["vibration"].states)   # haptic confirmation was felt
    for pin in pins.values():
        pin.clear_states()
    ind.reminder()
    ind.show("buffering")
    time.sleep(0.3)
    assert all(pin.state is False and transitions(pin) == 0 for pin in pins.values())
    assert ind.last_pattern == "stealth_on"
    ind.set_stealth(False)
    assert eventually(lambda: transitions(pins["green_led"]) >= 1)   # back to showing the state


def test_refused_writes_to_the_buzzer(indicators) -> None:
    ind, pins = indicators
    ind.refused()
    # callers never block on a pattern: it is still playing (three 0.3 s beeps) when refused() returns
    assert not ind.wait_idle(0)
    assert ind.wait_idle(10)
    assert sum(1 for s in pins["buzzer"].states if s.state) == 3
    assert pins["buzzer"].state is False
    assert [name for name, _ in ind.history] == ["refused"]


def test_refused_is_felt_when_beeps_are_off(mock_factory) -> None:
    cfg = IndicatorsConfig(beeps=False)
    with Indicators(cfg, clock=SystemClock()) as ind:
        ind.refused()
        assert ind.wait_idle(2)
    assert transitions(mock_factory.pin(cfg.buzzer_pin)) == 0
    assert sum(1 for s in mock_factory.pin(cfg.vibration_pin).states if s.state) == 3


# ---------------------------------------------------------------------------- config

def test_pins_must_be_distinct() -> None:
    with pytest.raises(ConfigError, match=r"\[buttons\] dock_pin and \[indicators\] red_led_pin"):
        from_dict({"buttons": {"dock_pin": 6}})
