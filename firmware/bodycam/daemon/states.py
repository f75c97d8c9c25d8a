"""The daemon's states and its transition table: pure data, so a reviewer can read every path at once.

The state names are the ones the controls already use (``controls.intents.STATES``), so the intent
table, the LEDs and the daemon can never disagree about what "docked" means. Anything not in
``TRANSITIONS`` is not a transition: the machine logs it and stays where it is.
"""

from __future__ import annotations

from typing import Literal

from ..controls.intents import STATES, State

__all__ = ["STATES", "State", "Event", "EVENTS", "TRANSITIONS", "next_state", "table_rows"]

Event = Literal[
    "boot_ok",          # pipeline started, not docked: buffering begins
    "boot_docked",      # pipeline started in the dock: no buffering
    "record_start",     # a double press accepted (storage checked first)
    "record_stop",      # hold (or confirmed hold), or the recording ended by itself
    "dock",             # dock sense went high (or the control socket said so)
    "undock",           # dock sense went low and nothing is wrong
    "undock_faulted",   # dock sense went low but a fault is still latched (full disk, dead camera)
    "fault",            # storage full, write error, source error
    "space_freed",      # a storage fault cleared: headroom is back above what a segment needs
]
EVENTS: tuple[Event, ...] = ("boot_ok", "boot_docked", "record_start", "record_stop", "dock", "undock",
                             "undock_faulted", "fault", "space_freed")

TRANSITIONS: dict[tuple[State, Event], State] = {
    ("booting", "boot_ok"): "buffering",
    ("booting", "boot_docked"): "docked",
    ("booting", "fault"): "fault",
    ("buffering", "record_start"): "recording",
    ("buffering", "dock"): "docked",
    ("buffering", "fault"): "fault",
    ("recording", "record_stop"): "buffering",
    ("recording", "dock"): "docked",            # the recording is stopped with reason "docked"
    ("recording", "fault"): "fault",            # the recorder has already sealed what it had
    ("docked", "undock"): "buffering",
    ("docked", "undock_faulted"): "fault",
    ("fault", "space_freed"): "buffering",
    ("fault", "dock"): "docked",                # the dock is where space gets freed
}


def next_state(state: State, event: Event) -> State | None:
    """The state after ``event`` in ``state``, or None when the event does not apply there."""
    return TRANSITIONS.get((state, event))


def table_rows() -> list[tuple[str, str, str]]:
    """(state, event, next) rows in table order, for docs and ``bodycam status`` debugging."""
    return [(s, e, n) for (s, e), n in TRANSITIONS.items()]


def _check() -> None:
    for (s, e), n in TRANSITIONS.items():
        assert s in STATES and n in STATES and e in EVENTS, (s, e, n)


_check()
