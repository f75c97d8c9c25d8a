"""A microphone with no hardware: a tone with a click at every synthetic video flash (capture/flash.py).

Its own clock may run ``drift_ppm`` fast or slow against the system clock, as a real microphone's
crystal does: it then delivers ``sample_rate * (1 + drift_ppm / 1e6)`` samples per system second,
each one the sound at the instant it was really captured. The source stamps chunks the way a real
driver would (now, less the samples the device holds at the nominal rate), so only drift correction can keep
the clicks on the flashes.

It follows the clock rather than driving it: it waits for its samples to be due by polling the
injected clock with short real sleeps, so on a ManualClock advanced by the video pacer (or a test)
it never moves time itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..capture.flash import click_signal
from ..clock import Clock
from .chunk import AudioChunk, AudioSourceBase, wait_until


class SyntheticAudioSource(AudioSourceBase):
    def __init__(self, sample_rate: int, channels: int, *, clock: Clock, chunk_ms: int = 20,
                 drift_ppm: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(sample_rate, channels)
        self._clock = clock
        self.chunk = max(1, sample_rate * chunk_ms // 1000)
        self.drift_ppm = float(drift_ppm)
        self._true_rate = sample_rate * (1 + self.drift_ppm / 1e6)
        self._sleep = sleep
        self._t0: int | None = None
        self._count = 0  # samples delivered so far
        self._gaps: list[tuple[int, int]] = []  # (at sample count, samples lost): test-injected xruns
        self._pending_missing = 0

    def info(self) -> dict[str, Any]:
        return {"kind": "synthetic", "drift_ppm": self.drift_ppm}

    def lose(self, samples: int) -> None:
        """Simulate an overrun: the next ``samples`` samples never reach the reader (tests, demos)."""
        self._gaps.append((self._count, samples))

    def ready(self) -> bool:
        """Whether ``read`` would return at once (the next chunk is captured); starts the clock on first use.

        For callers that drive time themselves (tests, the benchmark) and must not block.
        """
        if self._t0 is None:
            self._t0 = self._clock.monotonic_ns()
        self._apply_gap()
        return self._capture_ns(self._count + self.chunk) <= self._clock.monotonic_ns()

    def _apply_gap(self) -> None:
        if self._gaps and self._gaps[0][0] <= self._count:
            lost = self._gaps.pop(0)[1]
            self._count += lost
            self._pending_missing += lost
            self._xrun(lost)

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _capture_ns(self, index: int) -> int:
        assert self._t0 is not None
        return self._t0 + round(index * 1e9 / self._true_rate)

    def _read(self) -> AudioChunk | None:
        if self._t0 is None:
            self._t0 = self._clock.monotonic_ns()
        self._apply_gap()
        missing, self._pending_missing = self._pending_missing, 0
        first, n = self._count, self.chunk
        due = self._capture_ns(first + n)  # the chunk arrives once its last sample is captured
        if not wait_until(due, self._clock, self._sleep, lambda: self.closed):
            return None
        times = self._t0 + np.round(np.arange(first, first + n) * (1e9 / self._true_rate)).astype(np.int64)
        mono = click_signal(times)
        self._count += n
        samples = np.repeat(mono[:, None], self.channels, axis=1)
        # Stamped as FFmpeg's ALSA input does: now, less the samples the device holds (snd_pcm_delay)
        # counted at the nominal rate. Accurate however late the reader is; the drift stays in it.
        now = self._clock.monotonic_ns()
        captured = int((now - self._t0) * self._true_rate // 1e9)
        return AudioChunk(samples, now - round((captured - first) * 1e9 / self.sample_rate), missing)
