"""What the officer meant by a gesture, given the device state: a pure table, so it is reviewable.

The caller (the daemon) acts on the intent and gives feedback for every one of them: a press is never
met with silence, which an officer would read as "the camera is recording" when it is not.
"""

from __future__ import annotations

from typing import Literal

from ..clock import Clock
from ..config import ButtonsConfig

State = Literal["booting", "buffering", "recording", "docked", "fault"]
STATES: tuple[State, ...] = ("booting", "buffering", "recording", "docked", "fault")

Intent = Literal[
    "start_recording",   # record double in buffering
    "stop_recording",    # record hold in recording (or the confirming press)
    "stop_pending",      # record hold in recording with stop_confirmation on: wait for a second press
    "marker",            # record single/double in recording
    "toggle_stealth",    # function hold in buffering or recording
    "ignored_hint",      # a gesture that does nothing in this state: short tone so the officer knows
    "refused",           # any press while booting, docked or in fault: distinct fault signal
]


def intent_for(state: str, button: str, gesture: str, cfg: ButtonsConfig, *,
               stop_pending: bool = False) -> Intent:
    """Map one gesture to an intent. ``stop_pending`` says a confirmation-required stop is waiting."""
    if state not in STATES:
        raise ValueError(f"state {state!r}: must be one of {', '.join(STATES)}")
    if state in ("booting", "docked", "fault"):
        return "refused"
    if button == "function":
        return "toggle_stealth" if gesture == "hold" else "ignored_hint"
    if button != "record":
        raise ValueError(f"button {button!r}: must be 'record' or 'function'")
    if state == "buffering":
        return "start_recording" if gesture == "double" else "ignored_hint"
    # recording
    if stop_pending:
        return "stop_recording"         # any record press inside the window confirms
    if gesture == "hold":
        return "stop_pending" if cfg.stop_confirmation else "stop_recording"
    return "marker"                     # a double while recording is a hurried marker, not a no-op


class StopConfirmation:
    """The one piece of state the mapping needs: a stop hold waiting for its confirming press.

    The pending stop lapses after stop_confirmation_seconds, or as soon as the device leaves "recording".
    """

    def __init__(self, cfg: ButtonsConfig, *, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self._deadline_ns: int | None = None

    @property
    def pending(self) -> bool:
        return self._deadline_ns is not None and self._clock.monotonic_ns() < self._deadline_ns

    def clear(self) -> None:
        self._deadline_ns = None

    def resolve(self, state: str, button: str, gesture: str) -> Intent:
        """intent_for() plus the bookkeeping: arm on stop_pending, disarm on the stop or on leaving."""
        if state != "recording":
            self.clear()
        intent = intent_for(state, button, gesture, self._cfg, stop_pending=self.pending)
        if intent == "stop_pending":
            self._deadline_ns = self._clock.monotonic_ns() + int(self._cfg.stop_confirmation_seconds * 1e9)
        elif intent == "stop_recording" or not self.pending:
            self.clear()
        return intent
