"""The sync mark the synthetic sources share: a visible flash and an audible click at the same instants.

Both are tied to the injected monotonic clock, not to frame or sample counts, so they mark the same
physical moments whatever each device's own clock does: once every ``FLASH_PERIOD_NS`` the video shows
a white square (on the frame nearest the instant) and the microphone hears a short click (starting at
the instant). Decoding a recording and pairing each flash with its click measures the audio/video
offset directly; a microphone whose clock drifts would move the clicks, which is what drift
correction must undo.
"""

from __future__ import annotations

import numpy as np

FLASH_PERIOD_NS = 1_000_000_000
CLICK_NS = 5_000_000
CLICK_LEVEL = 0.9
TONE_LEVEL = 0.1
TONE_HZ = 440.0


def flash_due(mono_ns: int, fps: float, *, period_ns: int = FLASH_PERIOD_NS) -> bool:
    """Whether the frame captured at ``mono_ns`` is the one nearest a flash instant."""
    half = 5e8 / fps
    d = mono_ns - round(mono_ns / period_ns) * period_ns
    return -half <= d < half


def _lamp(img: np.ndarray) -> tuple[slice, slice]:
    h, w = img.shape[:2]
    s = max(8, min(h, w) // 8)
    return slice(0, s), slice(w - s, w)


def draw_flash(img: np.ndarray, on: bool) -> None:
    """A lamp in the top-right corner: white while flashing, black otherwise (so it cannot be mistaken)."""
    ys, xs = _lamp(img)
    img[ys, xs] = 255 if on else 0


def flash_level(img: np.ndarray) -> float:
    """Mean brightness of the lamp, for detectors reading decoded video (> 128: flashing)."""
    ys, xs = _lamp(img)
    s = img[ys, xs]
    m = max(1, s.shape[0] // 4)
    return float(s[m:-m, m:-m].mean())


def click_signal(times_ns: np.ndarray, *, period_ns: int = FLASH_PERIOD_NS) -> np.ndarray:
    """The synthetic microphone's signal at the given capture instants: a quiet tone plus clicks."""
    t = times_ns.astype(np.float64) / 1e9
    out = TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)
    phase = np.mod(times_ns, period_ns)
    click = phase < CLICK_NS
    out[click] = CLICK_LEVEL * np.sign(np.sin(2 * np.pi * 2000.0 * t[click]) + 1e-9)
    return out.astype(np.float32)
