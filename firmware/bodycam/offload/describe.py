"""One line for the ``offload`` status object, shared by `bodycam status` and the simulator's panel."""

from __future__ import annotations

from typing import Any


def describe(o: dict[str, Any]) -> str:
    """e.g. "uploading seg 7, 3.2/12.0 MB, 2 pending, 1 uploaded; clock +12 ms"."""
    text = str(o.get("phase", "?"))
    if text == "off":
        return "off (no [offload] backend_url: the dock only charges)"
    cur = o.get("current")
    if isinstance(cur, dict):
        text += f" seg {cur.get('sequence')}" if cur.get("kind") == "segment" else " audit log"
    if o.get("bytes_total"):
        text += f", {o.get('bytes_done', 0) / 1e6:.1f}/{o['bytes_total'] / 1e6:.1f} MB"
    text += f", {o.get('pending', 0)} pending, {o.get('uploaded', 0)} uploaded"
    if o.get("rejected"):
        text += f", {o['rejected']} rejected (kept on the device)"
    if o.get("enrolled") is False:
        text += ", not enrolled"
    if o.get("retry_in_seconds") is not None:
        text += f", retry in {o['retry_in_seconds']:.1f} s"
    if o.get("clock_offset_ms") is not None:
        text += f"; clock {o['clock_offset_ms']:+.0f} ms"
    if o.get("last_error"):
        text += f"; last error: {o['last_error']}"
    return text
