"""A stand-in for PyAV's ALSA input (``av.open(device, format="alsa", options=...)``), written from
FFmpeg's documented behaviour (libavdevice/alsa_dec.c), as tests/fake_picamera2.py is for picamera2.

What it reproduces: a blocking read returns one period of interleaved s16 samples as an audio frame;
its pts is in microseconds (time base 1/1000000) of the *wall clock* (``av_gettime``) at the capture of
its first sample (FFmpeg subtracts ``snd_pcm_delay`` from the time of the read); after an overrun
(``-EPIPE``) FFmpeg recovers and the next period's stamp jumps by the time lost. The microphone's
crystal may run ``drift_ppm`` off. Reads advance the injected ManualClock, as a blocking read lets
time pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from bodycam.capture.flash import click_signal
from bodycam.clock import ManualClock


class FakeAlsaInput:
    def __init__(self, clock: ManualClock, options: dict[str, str], *, period: int = 1024, drift_ppm: float = 0.0,
                 overrun_after: int | None = None, overrun_periods: int = 3, periods: int = 500) -> None:
        self.clock = clock
        self.rate = int(options.get("sample_rate", "48000"))
        self.channels = int(options.get("channels", "1"))
        self.period = period
        self.true_rate = self.rate * (1 + drift_ppm / 1e6)
        self.overrun_after = overrun_after
        self.overrun_periods = overrun_periods
        self.periods = periods
        self.closed = False

    def decode(self, audio: int = 0) -> Iterator[av.AudioFrame]:
        t0 = self.clock.monotonic_ns()
        n = 0
        for i in range(self.periods):
            if self.closed:
                return
            if self.overrun_after is not None and i == self.overrun_after:
                n += self.overrun_periods * self.period  # the reader was late: these periods were overwritten
            first_ns = t0 + round(n * 1e9 / self.true_rate)
            ready_ns = t0 + round((n + self.period) * 1e9 / self.true_rate)
            now = self.clock.monotonic_ns()
            if ready_ns > now:
                self.clock.advance((ready_ns - now) / 1e9)
            times = first_ns + np.round(np.arange(self.period) * (1e9 / self.true_rate)).astype(np.int64)
            pcm = (click_signal(times) * 32767).astype(np.int16)
            data = np.repeat(pcm[None, :], self.channels, axis=0).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16",
                                               layout="mono" if self.channels == 1 else "stereo")
            frame.sample_rate = self.rate
            age = self.clock.monotonic_ns() - first_ns
            frame.pts = (self.clock.utc_ns() - age) // 1000
            frame.time_base = Fraction(1, 1_000_000)
            n += self.period
            yield frame

    def close(self) -> None:
        self.closed = True


def opener(clock: ManualClock, **kw):
    """An ``AlsaSource`` opener that records what it was asked to open."""
    calls: list[tuple[str, dict[str, str]]] = []

    def open_(device: str, options: dict[str, str]) -> FakeAlsaInput:
        calls.append((device, options))
        return FakeAlsaInput(clock, options, **kw)

    open_.calls = calls  # type: ignore[attr-defined]
    return open_
