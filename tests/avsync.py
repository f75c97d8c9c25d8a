"""Measures audio/video sync in a recorded file: each synthetic flash against its click (capture/flash.py).

Decodes with PyAV (FFmpeg) from the file alone: flash frames by the lamp's brightness, clicks by the
first sample above half the click level after a quiet stretch. Times are in seconds on the file's
own timeline (pts x time base), so what is measured is what a player shows.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from bodycam.capture.flash import CLICK_LEVEL, flash_level


def flash_times(path: Path) -> list[float]:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if flash_level(f.to_ndarray(format="bgr24")) > 128:
                out.append(float(f.pts * f.time_base))
    return out


def audio_track(path: Path) -> tuple[float, np.ndarray, int]:
    """(start time in s, mono samples, rate) of the file's sound; start is the first frame's pts."""
    parts, start, rate = [], None, 48000
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return 0.0, np.zeros(0, np.float32), rate
        for f in c.decode(audio=0):
            if start is None:
                start = float(f.pts * f.time_base)
            rate = f.sample_rate
            a = f.to_ndarray()
            parts.append(a.reshape(-1) if a.shape[0] == 1 else a.mean(axis=0))
    return start or 0.0, (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate


def click_times(path: Path) -> list[float]:
    start, x, rate = audio_track(path)
    loud = np.flatnonzero(np.abs(x) > CLICK_LEVEL / 2)
    out, last = [], -10 * rate
    for i in loud:
        if i - last > rate // 2:
            out.append(start + i / rate)
        last = i
    return out


def offsets(path: Path) -> list[float]:
    """Audio minus video, seconds, for every flash that has a click within half a second of it."""
    clicks = click_times(path)
    out = []
    for t in flash_times(path):
        near = [c for c in clicks if abs(c - t) < 0.5]
        if near:
            out.append(min(near, key=lambda c: abs(c - t)) - t)
    return out


def sync_errors(path: Path, manifest: dict) -> list[float]:
    """Audio/video error, seconds, with the stimulus's own misalignment taken out.

    A flash lights the frame *nearest* its instant, so a frame can show it up to half a frame early or
    late; the click is at the instant itself. The manifest gives each frame's capture time (first
    frame's monotonic time + pts), hence the instant, hence where the click belongs in the file.
    """
    first_ns = manifest["first_frame"]["monotonic_ns"]
    clicks = click_times(path)
    out = []
    for t in flash_times(path):
        mono = first_ns + round(t * 1e9)
        instant = round(mono / 1e9) * 1_000_000_000
        want = t + (instant - mono) / 1e9
        near = [c for c in clicks if abs(c - want) < 0.5]
        if near:
            out.append(min(near, key=lambda c: abs(c - want)) - want)
    return out
