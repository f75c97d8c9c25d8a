"""Scenario files: a named list of things an officer (or the dock) does to a camera, and checks.

A scenario is TOML so that it reads like a test plan and a reviewer can change it without Python::

    [scenario]
    name = "smoke"
    description = "boot, record a few seconds with pre-roll, stop, verify"
    config = "smoke-device.toml"     # optional; relative to this file; --config overrides it

    [[step]]
    expect_state = "buffering"
    within = 15.0

    [[step]]
    press = "double"                 # single | double | hold; button = "record" (default) | "function"

    [[step]]
    expect = { segments_sealed_at_least = 1, dropped = 0 }

Each step has exactly one action key (ACTIONS below) plus optional modifiers: ``button`` (press,
hold), ``within`` (expect_state, expect: seconds to keep polling until it holds, default 2) and
``note`` (any step: printed beside it). ``expect`` compares status fields: ``field = value``
(equal), ``field_at_least``, ``field_at_most``; a table value reaches into a nested field, e.g.
``clock = { status = "synced" }``. Everything is validated on load, before the daemon starts, and
every problem is one line naming the file, the step number (1 = first ``[[step]]``) and the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..controls.intents import STATES
from ..errors import BodycamError

GESTURES = ("single", "double", "hold")
BUTTONS = ("record", "function")
DEFAULT_WITHIN = 2.0
MAX_SECONDS = 4 * 3600.0

# Action key -> what it means, in words (used by the help text and by error messages).
ACTIONS: dict[str, str] = {
    "wait": "seconds to let the camera run",
    "press": "a gesture on a button: 'single', 'double' or 'hold'",
    "hold": "true: hold the button (= press 'hold')",
    "marker": "true: a single press of the record button (a marker while recording)",
    "dock": "true: put the camera in its dock",
    "undock": "true: take the camera out of its dock",
    "expect_state": f"the state to reach: one of {', '.join(repr(s) for s in STATES)}",
    "expect": "a table of status checks, e.g. { segments_sealed_at_least = 3 }",
    "battery": "battery charge in percent (0-100) the device should see",
    "verify": "true: run 'bodycam verify' on the device data directory",
}
MODIFIERS: dict[str, tuple[str, ...]] = {
    "button": ("press", "hold"),
    "within": ("expect_state", "expect"),
    "note": tuple(ACTIONS),
}
_STATE_NAMES = ", ".join(repr(s) for s in STATES)
_TRUE_ONLY = ("hold", "marker", "dock", "undock", "verify")

# Status fields a scenario may check (daemon/machine.py status(), documented in docs/daemon.md), and
# what kind of value each holds; "number" fields also take the _at_least/_at_most suffixes. A field the
# daemon does not send fails the check at run time, naming the fields it does send.
# segments_on_disk is counted by the simulator itself from the sealed files, so a check does not rest
# only on the daemon's word.
STATUS_FIELDS: dict[str, str] = {
    "state": "text",
    "state_seconds": "number",
    "serial": "text",
    "officer_id": "text",
    "firmware_version": "text",
    "uptime_seconds": "number",
    "recording_id": "text",
    "stop_pending": "bool",
    "pre_event_seconds": "number",
    "buffer_seconds": "number",
    "buffer_bytes": "number",
    "frames_captured": "number",
    "dropped": "number",
    "segments_sealed": "number",
    "pending_uploads": "number",
    "free_bytes": "number",
    "headroom_bytes": "number",
    "reserve_bytes": "number",
    "clock": "table",
    "stealth": "bool",
    "docked": "bool",
    "battery_percent": "number",
    "low_battery": "bool",
    "fault": "text",
    "last_fault": "text",
    "last_press": "table",
    "offload": "table",
    "segments_on_disk": "number",
    "backend_segments": "number",   # counted by the simulator in its embedded backend's store
}
_OPS = (("_at_least", "at_least"), ("_at_most", "at_most"))


class ScenarioError(BodycamError, ValueError):
    """A scenario file is missing, not TOML, or holds a step the simulator cannot perform."""


@dataclass(frozen=True)
class Check:
    """One status comparison from an ``expect`` table."""

    key: str        # as written, e.g. "segments_sealed_at_least" or "clock.status"
    field: str      # dotted path into the status, e.g. "segments_sealed" or "clock.status"
    op: str         # "eq" | "at_least" | "at_most"
    expected: Any

    def describe(self) -> str:
        sym = {"eq": "=", "at_least": ">=", "at_most": "<="}[self.op]
        return f"{self.field} {sym} {_toml(self.expected)}"

    def evaluate(self, status: Mapping[str, Any]) -> tuple[bool, str]:
        """(held, what the status actually says); a missing field never holds."""
        found, actual = lookup(status, self.field)
        if not found:
            known = ", ".join(sorted(status)) or "nothing"
            return False, f"status has no field {self.field!r} (it has: {known})"
        if self.op == "eq":
            held = actual == self.expected or (self.expected == "" and actual is None)
        elif isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False, f"{self.field} is {actual!r}, not a number"
        elif self.op == "at_least":
            held = actual >= self.expected
        else:
            held = actual <= self.expected
        return held, f"{self.field} is {actual!r}"


def lookup(status: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """Follow a dotted path ("clock.status") into nested dicts; (False, None) if any part is missing."""
    value: Any = status
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


@dataclass(frozen=True)
class Step:
    """One validated step. ``action`` is normalised: hold and marker become press."""

    number: int
    key: str                      # the action key as written
    action: str                   # wait | press | dock | undock | expect_state | expect | battery | verify
    seconds: float = 0.0          # wait
    button: str = "record"        # press
    gesture: str = ""             # press
    state: str = ""               # expect_state
    checks: tuple[Check, ...] = ()
    within: float = DEFAULT_WITHIN
    percent: int = 0              # battery
    note: str = ""

    def describe(self) -> str:
        text = {
            "wait": lambda: f"wait {self.seconds:g} s",
            "press": lambda: (f"marker: single press ({self.button} button)" if self.key == "marker"
                              else f"{'hold' if self.gesture == 'hold' else self.gesture + ' press'} "
                                   f"({self.button} button)"),
            "dock": lambda: "dock the camera",
            "undock": lambda: "undock the camera",
            "expect_state": lambda: f"expect state {self.state!r} within {self.within:g} s",
            "expect": lambda: ("expect " + ", ".join(c.describe() for c in self.checks)
                               + f" within {self.within:g} s"),
            "battery": lambda: f"battery at {self.percent}%",
            "verify": lambda: "verify the device's evidence",
        }[self.action]()
        return f"{text}  ({self.note})" if self.note else text


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: Path | None
    config: Path | None           # absolute, or None when the scenario names none
    steps: tuple[Step, ...]

    @property
    def estimated_seconds(self) -> float:
        """Waits plus the longest each expectation may poll: the scenario's worst-case length."""
        return sum(s.seconds if s.action == "wait" else s.within if s.action.startswith("expect") else 0
                   for s in self.steps)


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every failure is one ScenarioError line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file not found (try config/scenarios/smoke.toml)") from None
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read scenario file ({e.strerror})") from None
    return parse(text, path=p)


def parse(text: str, *, path: Path | None = None) -> Scenario:
    where = str(path) if path else "scenario"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{where}: not valid TOML ({e})") from None
    try:
        return _build(raw, path)
    except ScenarioError as e:
        raise ScenarioError(f"{where}: {e}") from None


def _build(raw: dict[str, Any], path: Path | None) -> Scenario:
    for table in raw:
        if table not in ("scenario", "step"):
            raise ScenarioError(f"[{table}]: unknown table; a scenario has [scenario] and [[step]] tables")
    head = raw.get("scenario")
    if not isinstance(head, dict):
        raise ScenarioError("[scenario]: missing; start the file with [scenario] and name = \"...\"")
    for key in head:
        if key not in ("name", "description", "config"):
            raise ScenarioError(f"[scenario] {key}: unknown key; known keys are config, description, name")
    for key in ("name", "description", "config"):
        if key in head and not isinstance(head[key], str):
            raise ScenarioError(f"[scenario] {key} = {head[key]!r}: must be a string in quotes")
    if not head.get("name"):
        raise ScenarioError("[scenario] name: required, e.g. name = \"patrol\"")
    config = None
    if head.get("config"):
        base = path.parent if path else Path.cwd()
        config = (base / head["config"]).resolve()
        if not config.is_file():
            raise ScenarioError(f"[scenario] config = {head['config']!r}: no such file "
                                f"(paths are relative to the scenario's folder, {base})")
    steps_raw = raw.get("step")
    if isinstance(steps_raw, dict) or (steps_raw is not None and not isinstance(steps_raw, list)):
        raise ScenarioError("step: write each step as its own [[step]] table (double brackets)")
    if not steps_raw:
        raise ScenarioError("no steps: add at least one [[step]] table, e.g. [[step]] wait = 3.0")
    steps = tuple(_step(i, s) for i, s in enumerate(steps_raw, start=1))
    return Scenario(name=head["name"], description=head.get("description", ""), path=path,
                    config=config, steps=steps)


def _step(n: int, raw: Any) -> Step:
    at = f"step {n}"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{at}: must be a [[step]] table")
    for key in raw:
        if key not in ACTIONS and key not in MODIFIERS:
            known = ", ".join([*ACTIONS, *MODIFIERS])
            raise ScenarioError(f"{at}: {key}: unknown key; known keys are {known}")
    actions = [k for k in raw if k in ACTIONS]
    if not actions:
        raise ScenarioError(f"{at}: no action; give exactly one of {', '.join(ACTIONS)}")
    if len(actions) > 1:
        raise ScenarioError(f"{at}: {' and '.join(actions)}: one action per step; split it into "
                            f"{len(actions)} [[step]] tables")
    key = actions[0]
    value = raw[key]
    for mod, allowed in MODIFIERS.items():
        if mod in raw and key not in allowed:
            raise ScenarioError(f"{at}: {mod}: only applies to {', '.join(allowed)}, not to {key}")
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise ScenarioError(f"{at}: note = {note!r}: must be a string in quotes")
    button = raw.get("button", "record")
    if button not in BUTTONS:
        raise ScenarioError(f"{at}: button = {button!r}: must be one of {', '.join(map(repr, BUTTONS))}")
    within = raw.get("within", DEFAULT_WITHIN)
    if not _is_number(within) or not 0 <= within <= MAX_SECONDS:
        raise ScenarioError(f"{at}: within = {within!r}: must be a number of seconds, 0 to {MAX_SECONDS:g}")
    common = {"number": n, "key": key, "note": note}

    if key in _TRUE_ONLY and value is not True:
        raise ScenarioError(f"{at}: {key} = {value!r}: must be true (write {key} = true)")
    if key == "wait":
        if not _is_number(value) or not 0 <= value <= MAX_SECONDS:
            raise ScenarioError(f"{at}: wait = {value!r}: must be a number of seconds, 0 to {MAX_SECONDS:g}")
        return Step(action="wait", seconds=float(value), **common)
    if key == "press":
        if value not in GESTURES:
            raise ScenarioError(f"{at}: press = {value!r}: must be one of {', '.join(map(repr, GESTURES))}")
        return Step(action="press", gesture=value, button=button, **common)
    if key == "hold":
        return Step(action="press", gesture="hold", button=button, **common)
    if key == "marker":
        return Step(action="press", gesture="single", button="record", **common)
    if key in ("dock", "undock", "verify"):
        return Step(action=key, **common)
    if key == "expect_state":
        if value not in STATES:
            raise ScenarioError(f"{at}: expect_state = {value!r}: must be one of {_STATE_NAMES}")
        return Step(action="expect_state", state=value, within=float(within), **common)
    if key == "battery":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise ScenarioError(f"{at}: battery = {value!r}: must be a whole number of percent, 0 to 100")
        return Step(action="battery", percent=value, **common)
    # expect
    if not isinstance(value, dict) or not value:
        raise ScenarioError(f"{at}: expect = {value!r}: must be a table of checks, "
                            "e.g. expect = { segments_sealed_at_least = 3 }")
    checks = tuple(_checks(at, value, prefix=""))
    return Step(action="expect", checks=checks, within=float(within), **common)


def _checks(at: str, table: dict[str, Any], *, prefix: str) -> list[Check]:
    out: list[Check] = []
    for key, expected in table.items():
        written = f"{prefix}{key}"
        name, op = key, "eq"
        for suffix, op_name in _OPS:
            if key.endswith(suffix):
                name, op = key.removesuffix(suffix), op_name
                break
        field = f"{prefix}{name}"
        kind = STATUS_FIELDS.get(name) if not prefix else "any"
        if kind is None:
            known = ", ".join(sorted(STATUS_FIELDS))
            raise ScenarioError(f"{at}: expect {written}: unknown status field {name!r}; "
                                f"known fields are {known}")
        if isinstance(expected, dict):
            if op != "eq" or kind not in ("table", "any"):
                raise ScenarioError(f"{at}: expect {written}: a table value only fits a table field "
                                    f"such as clock = {{ status = \"synced\" }}")
            out += _checks(at, expected, prefix=f"{field}.")
            continue
        if kind == "table":
            raise ScenarioError(f"{at}: expect {written}: {name} is a table; check a field inside it, "
                                f"e.g. {name} = {{ status = \"...\" }}")
        if op != "eq" and not _is_number(expected):
            raise ScenarioError(f"{at}: expect {written} = {expected!r}: must be a number")
        if op != "eq" and kind not in ("number", "any"):
            raise ScenarioError(f"{at}: expect {written}: {name} is not a number; use {name} = ... instead")
        if op == "eq" and kind == "number" and not _is_number(expected):
            raise ScenarioError(f"{at}: expect {written} = {expected!r}: must be a number")
        if op == "eq" and kind == "bool" and not isinstance(expected, bool):
            raise ScenarioError(f"{at}: expect {written} = {expected!r}: must be true or false")
        if op == "eq" and kind == "text" and not isinstance(expected, str):
            raise ScenarioError(f"{at}: expect {written} = {expected!r}: must be a string in quotes")
        if isinstance(expected, list):
            raise ScenarioError(f"{at}: expect {written} = {expected!r}: lists cannot be compared")
        if name == "state" and not prefix and expected not in STATES:
            raise ScenarioError(f"{at}: expect state = {expected!r}: must be one of {_STATE_NAMES}")
        out.append(Check(key=written, field=field, op=op, expected=expected))
    return out


def _toml(v: Any) -> str:
    """A value as the scenario file spells it (true, not True)."""
    return ("true" if v else "false") if isinstance(v, bool) else repr(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
