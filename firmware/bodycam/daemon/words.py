"""Words for the daemon's internal names, for the simulator's panel and `bodycam status`: a person
reads "recording started", not ``start_recording``, and "synced with the backend at 10:37:02 UTC",
not ``last_sync_utc``.

Pure functions of the daemon's replies and status fields (docs/daemon.md section 3), so a new intent or
clock status shows up here as its raw name rather than as nothing.
"""

from __future__ import annotations

from typing import Any

INTENT_WORDS = {
    "start_recording": "recording started",
    "stop_recording": "recording stopped",
    "stop_pending": "stop held: press again to confirm",
    "marker": "marker added",
    "toggle_stealth": "stealth switched",
    "ignored_hint": "does nothing while {state} (one short tone)",
    "refused": "refused while {state} (fault tone)",
}

KEY_NAMES = {"\n": "Enter", "\r": "Enter", " ": "Space", "\t": "Tab", "\x7f": "Backspace"}


def key_name(k: str) -> str:
    """A keystroke as a person would name it, never a control character that garbles the panel."""
    return KEY_NAMES.get(k, k if k.isprintable() else f"Ctrl-{chr(ord(k) + 64)}" if ord(k) < 32 else repr(k))


def press_words(reply: dict[str, Any]) -> str:
    """What the daemon made of a gesture, e.g. "recording started (buffering -> recording)"."""
    press = reply.get("press")
    if not isinstance(press, dict):
        return ""
    before, after = press.get("state_before"), press.get("state", reply.get("state"))
    intent = str(press.get("intent", "?"))
    text = INTENT_WORDS.get(intent, intent).format(state=before)
    if before and after and before != after:
        text += f" ({before} -> {after})"
    return text


def dock_words(reply: dict[str, Any]) -> str:
    """The answer to dock/undock: where the camera is now and what it does there."""
    if reply.get("docked"):
        return f"in the dock, {reply.get('state', '?')}: charging, uploading if a backend answers"
    return f"out of the dock, {reply.get('state', '?')}"


def _hms(utc: Any) -> str:
    """'2026-12-01T20:57:23.875Z' -> '20:57:23 UTC' (the date is on the same row already)."""
    return f"{utc[11:19]} UTC" if isinstance(utc, str) and len(utc) >= 19 else "?"


def clock_words(clock: Any) -> str:
    """The status's ``clock`` object in words."""
    if not isinstance(clock, dict):
        return str(clock or "")
    status = clock.get("status")
    if status == "not_set":
        return "not set (before 2025): 5 beeps every 20 s until docked"
    if status == "synced":
        text = f"synced with the backend at {_hms(clock.get('last_sync_utc'))}"
        measured, left = clock.get("measured_offset_ms"), clock.get("offset_ms")
        if isinstance(measured, (int, float)):
            text += f", off by {measured:+.1f} ms"
            if isinstance(left, (int, float)) and abs(left - measured) >= 0.05:
                text += f" ({left:+.1f} ms after correction)"
        return text
    if status == "unsynced":
        prev = clock.get("previous_boot_sync")
        text = "not synced since boot (the dock syncs it)"
        if isinstance(prev, dict) and prev.get("last_sync_utc"):
            text += f"; last synced {prev['last_sync_utc'][:10]} {_hms(prev['last_sync_utc'])}"
        return text
    return " ".join(f"{k} {v}" for k, v in clock.items())
