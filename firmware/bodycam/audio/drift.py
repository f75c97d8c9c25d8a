"""Puts microphone samples on the system clock: whatever the microphone's crystal does, 48 000 output
samples are one second of the injected clock, so sound stays on its pictures after an hour.

A USB or I2S microphone runs on its own oscillator, commonly 20-100 ppm off (up to 0.36 s an hour):
counting its samples as time would let sound slide away from video. Each chunk comes with a capture
stamp on the system clock (the driver's "now minus what is still buffered"); the corrector compares it
with where its output timeline says the chunk should be and resamples (linear interpolation, a ratio
within +-0.1 %) to close the gap: the long-run ratio is measured from elapsed clock time over samples
received, and a proportional term removes the remaining offset over a couple of seconds. A gap the
driver reports (an xrun) is filled with silence of the same length; one it does not report, or any
offset beyond ``RESYNC_NS``, is closed at once (silence inserted, or samples dropped) and counted.
Output sample ``k`` is at clock time ``origin_ns + k / rate``, exactly.
"""

from __future__ import annotations

import numpy as np

from .chunk import AudioChunk

RESYNC_NS = 40_000_000       # beyond this offset, jump rather than slew
SLEW_SECONDS = 2.0           # the proportional term closes an offset over about this long
MAX_SLEW = 1e-3              # at most 0.1 % faster or slower than the measured rate
SETTLE_NS = 1_000_000_000    # measure the long-run rate only once this much time has passed


class DriftCorrector:
    def __init__(self, sample_rate: int, channels: int) -> None:
        self.rate = sample_rate
        self.channels = channels
        self.origin_ns: int | None = None    # clock time of output sample 0
        self.out_count = 0                   # output samples produced
        self._in_count = 0                   # input samples consumed (plus reported gaps)
        self._first_stamp: int | None = None
        self._phase = 0.0                    # next output position, in input samples from the chunk start
        self._last = np.zeros((1, channels), np.float32)
        self._err = 0.0                      # smoothed offset, ns (positive: output is behind the clock)
        self.ratio = 1.0                     # output samples per input sample in force
        self._base = 1.0                     # the long-run part of it: the measured clock error
        self.inserted = 0                    # silence samples inserted to close gaps
        self.dropped = 0                     # input samples dropped to close a lead
        self.resyncs = 0

    @property
    def drift_ppm(self) -> float:
        """The microphone's measured clock error: positive when it runs fast."""
        return (1 / self._base - 1) * 1e6 if self._base else 0.0

    def offset_ns(self) -> float:
        """Smoothed distance between the output timeline and the stamps (what is being corrected)."""
        return self._err

    def feed(self, chunk: AudioChunk) -> np.ndarray:
        """Output samples (float32, (m, channels)) for this chunk, continuing the timeline."""
        x = np.asarray(chunk.samples, np.float32).reshape(-1, self.channels)
        if self.origin_ns is None:
            self.origin_ns = self._first_stamp = chunk.mono_ns
        parts = []
        if chunk.missing:
            parts.append(self._silence(round(chunk.missing * self.ratio)))
            self._in_count += chunk.missing
        e = chunk.mono_ns - self._timeline_ns()
        if abs(e) > RESYNC_NS:
            self.resyncs += 1
            if e > 0:
                parts.append(self._silence(round(e * self.rate / 1e9)))
            else:
                cut = min(len(x), round(-e * self.rate / 1e9))
                self.dropped += cut
                self._in_count += cut
                x = x[cut:]
            e = chunk.mono_ns - self._timeline_ns() if len(x) else 0
            self._err = 0.0
        else:
            self._err += 0.2 * (e - self._err)
        self._update_ratio(chunk.mono_ns)
        if len(x):
            parts.append(self._resample(x))
            self._in_count += len(x)
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)

    def _timeline_ns(self) -> float:
        """Where the output timeline puts the next input sample (output written + the pending phase)."""
        assert self.origin_ns is not None
        pending = -self._phase * self.ratio  # output samples still owed for input already consumed
        return self.origin_ns + (self.out_count + pending) * 1e9 / self.rate

    def _update_ratio(self, stamp: int) -> None:
        assert self._first_stamp is not None
        elapsed = stamp - self._first_stamp
        base = elapsed * self.rate / 1e9 / self._in_count if elapsed >= SETTLE_NS and self._in_count else 1.0
        slew = float(np.clip(self._err / 1e9 / SLEW_SECONDS, -MAX_SLEW, MAX_SLEW))
        self._base = base
        self.ratio = base * (1 + slew)

    def _silence(self, n: int) -> np.ndarray:
        n = max(0, n)
        self.inserted += n
        self.out_count += n
        self._last = np.zeros((1, self.channels), np.float32)
        return np.zeros((n, self.channels), np.float32)

    def _resample(self, x: np.ndarray) -> np.ndarray:
        """Linear interpolation at ``ratio``, continuous across chunks (the last sample is carried)."""
        n = len(x)
        step = 1.0 / self.ratio
        k = int(np.floor((n - 1 - self._phase) / step)) + 1 if self._phase <= n - 1 else 0
        if k <= 0:
            self._phase -= n
            self._last = x[-1:]
            return np.zeros((0, self.channels), np.float32)
        pos = self._phase + step * np.arange(k)
        grid = np.arange(-1, n, dtype=np.float64)
        vals = np.concatenate([self._last, x])
        out = np.empty((k, self.channels), np.float32)
        for c in range(self.channels):
            out[:, c] = np.interp(pos, grid, vals[:, c])
        self._phase = pos[-1] + step - n
        self._last = x[-1:]
        self.out_count += k
        return out
