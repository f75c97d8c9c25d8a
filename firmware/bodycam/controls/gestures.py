"""Turns raw button edges into officer gestures: single, double and hold.

Pure and clock-driven: it never reads a pin or the time by itself unless asked to, so every timing rule
below is tested with synthetic edges and a ManualClock. gpiozero's MockPin does not debounce and real
pins only debounce if asked, so debounce lives here too, where it is the same on both.

Rules, times measured between *accepted* edges:
- Debounce: an edge within ``debounce_s`` of the previous accepted edge is ignored. When that lockout
  ends, the last raw level wins: a bounce that ends in the other state is accepted then, not lost.
- "double": a second press accepted within ``double_press_s`` of the first press. Emitted on the second
  press (no waiting for its release); that press is then spent and cannot become a hold.
- "hold": emitted once, while still held, when a press has lasted ``hold_s``. Its release emits nothing.
- "single": a press released before ``hold_s`` and not followed by a second press within
  ``double_press_s`` of its start. Emitted when the window expires, or at the release if that is later.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from ..clock import Clock

GestureKind = Literal["single", "double", "hold"]
GESTURES: tuple[GestureKind, ...] = ("single", "double", "hold")


class Gesture(NamedTuple):
    kind: GestureKind
    t_ns: int
    """When the gesture became certain (e.g. the window expiry for a single), not when it was polled."""


class GestureRecognizer:
    """Classifies one button's edges; feed it with on_edge() and call poll() often for the timeouts."""

    def __init__(self, *, debounce_s: float, double_press_s: float, hold_s: float, clock: Clock) -> None:
        if debounce_s < 0 or double_press_s <= 0 or hold_s <= 0:
            raise ValueError("debounce_s must be >= 0, double_press_s and hold_s > 0")
        self._debounce_ns = int(debounce_s * 1e9)
        self._double_ns = int(double_press_s * 1e9)
        self._hold_ns = int(hold_s * 1e9)
        self._clock = clock
        # Debounce state.
        self._pressed = False           # accepted level
        self._last_accept_ns: int | None = None
        self._raw_pressed = False       # last level reported by the pin, accepted or not
        # Sequence state.
        self._press_ns: int | None = None         # start of the press that may become single/hold
        self._hold_fired = False
        self._spent = False             # current press already produced a double: ignore until released
        self._single_pending = False    # first press released, waiting for the window to close

    @property
    def pressed(self) -> bool:
        """The debounced level."""
        return self._pressed

    def on_edge(self, pressed: bool, t_ns: int | None = None) -> list[Gesture]:
        """Report a raw edge from the pin; returns the gestures it completes (often none)."""
        t = self._clock.monotonic_ns() if t_ns is None else t_ns
        out = self._settle(t)
        self._raw_pressed = pressed
        if pressed == self._pressed:
            return out                  # nothing new (e.g. the second half of a bounce)
        if self._last_accept_ns is not None and t - self._last_accept_ns < self._debounce_ns:
            return out                  # bounce: _settle() looks at the raw level once the lockout ends
        self._accept(pressed, t, out)
        return out

    def poll(self, t_ns: int | None = None) -> list[Gesture]:
        """Check the timeouts (double window, hold) at time t_ns; returns any gestures they complete."""
        t = self._clock.monotonic_ns() if t_ns is None else t_ns
        return self._settle(t)

    def _settle(self, t: int) -> list[Gesture]:
        out: list[Gesture] = []
        if (self._raw_pressed != self._pressed and self._last_accept_ns is not None
                and t - self._last_accept_ns >= self._debounce_ns):
            # A bounce ended in the other state: accept it at the end of the lockout.
            self._accept(self._raw_pressed, self._last_accept_ns + self._debounce_ns, out)
        self._timeouts(t, out)
        return out

    def _timeouts(self, t: int, out: list[Gesture]) -> None:
        if self._press_ns is None:
            return
        if self._single_pending and t - self._press_ns >= self._double_ns:
            out.append(Gesture("single", self._press_ns + self._double_ns))
            self._reset_sequence()
        elif (self._pressed and not self._spent and not self._hold_fired
              and t - self._press_ns >= self._hold_ns):
            self._hold_fired = True
            out.append(Gesture("hold", self._press_ns + self._hold_ns))

    def _accept(self, pressed: bool, t: int, out: list[Gesture]) -> None:
        self._timeouts(t, out)          # deadlines that passed before this edge come first
        self._pressed = pressed
        self._last_accept_ns = t
        if pressed:
            if self._single_pending and self._press_ns is not None and t - self._press_ns < self._double_ns:
                out.append(Gesture("double", t))
                self._reset_sequence()
                self._spent = True
            else:
                self._reset_sequence()
                self._press_ns = t
            return
        # Release.
        if self._spent or self._hold_fired or self._press_ns is None:
            self._reset_sequence()      # after a double or a hold the release says nothing
        elif t - self._press_ns >= self._double_ns:
            out.append(Gesture("single", t))   # window already over: no double possible
            self._reset_sequence()
        else:
            self._single_pending = True

    def _reset_sequence(self) -> None:
        self._press_ns = None
        self._hold_fired = False
        self._spent = False
        self._single_pending = False
