"""A USB or I2S microphone through ALSA, read with PyAV's own ``alsa`` input (FFmpeg's alsa demuxer).

Why this and not ``sounddevice``: the PyAV wheel we already ship for video has the ALSA input built in
(``"alsa" in av.formats_available``), so there is no second native library (PortAudio), no extra
package in the image, and the same FFmpeg reads, resamples and encodes. FFmpeg's alsa input stamps
each packet with the wall clock (``av_gettime``, microseconds) less the samples still in the ALSA
buffer (``snd_pcm_delay``), smoothed by a time filter; we map that stamp onto the injected clock with
one reading per chunk (``age = utc_now - stamp``; ``mono = mono_now - age``), as capture/frame_time.py
does for the camera, so a wall-clock step at the dock moves nothing.

Overruns: FFmpeg recovers from an ALSA xrun (``snd_pcm_prepare``) and carries on, logging "ALSA
buffer xrun"; the samples lost show up here as a jump in the stamps. A jump of more than half a period
beyond the samples received is counted as an xrun with its missing samples, and the drift
corrector fills it with silence: the gap is kept and reported, never closed up.

The seam: ``opener(device, options)`` returns an opened input container; tests pass a stand-in
written from FFmpeg's documented behaviour (tests/fake_alsa.py), the Pi gets ``av.open``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import av
import numpy as np

from ..clock import Clock
from ..errors import SourceError
from .chunk import AudioChunk, AudioSourceBase

Opener = Callable[[str, dict[str, str]], Any]


def open_alsa(device: str, options: dict[str, str]) -> Any:
    if "alsa" not in av.formats_available:
        raise SourceError("audio: this PyAV build has no ALSA input; set [audio] source = \"none\"")
    try:
        return av.open(device, format="alsa", options=options)
    except (av.error.FFmpegError, OSError) as e:
        raise SourceError(f"audio: cannot open ALSA device {device!r}: {e}; check the microphone is plugged in "
                          "and 'arecord -l' lists it, or set [audio] device") from None


class AlsaSource(AudioSourceBase):
    def __init__(self, device: str, sample_rate: int, channels: int, *, clock: Clock, chunk_ms: int = 20,
                 opener: Opener = open_alsa) -> None:
        super().__init__(sample_rate, channels)
        self.device = device
        self._clock = clock
        self._opener = opener
        self.chunk_ms = chunk_ms
        self._container: Any = None
        self._frames: Iterator[av.AudioFrame] | None = None
        self._resampler: av.AudioResampler | None = None
        self._next_mono_ns: int | None = None  # where the next period should start if nothing was lost

    def info(self) -> dict[str, Any]:
        return {"kind": "alsa", "device": self.device}

    def _open(self) -> None:
        opts = {"sample_rate": str(self.sample_rate), "channels": str(self.channels)}
        self._container = self._opener(self.device, opts)
        self._frames = iter(self._container.decode(audio=0))
        layout = "mono" if self.channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="flt", layout=layout, rate=self.sample_rate)

    def _close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - a device unplugged under us: nothing left to release
                pass
            self._container = None

    def _read(self) -> AudioChunk | None:
        assert self._frames is not None and self._resampler is not None
        try:
            frame = next(self._frames, None)
        except (av.error.FFmpegError, OSError) as e:
            if self.closed:
                return None
            raise SourceError(f"audio: ALSA device {self.device!r} failed: {e}") from None
        if frame is None:
            return None
        utc_now, mono_now = self._clock.utc_ns(), self._clock.monotonic_ns()
        stamp_ns = int(frame.pts * frame.time_base * 1_000_000_000) if frame.pts is not None else utc_now
        mono = mono_now - (utc_now - stamp_ns)  # the age, taken from one reading of both clocks
        missing = 0
        if self._next_mono_ns is not None:  # compared on the monotonic clock: a wall-clock step is no gap
            gap_ns = mono - self._next_mono_ns
            if gap_ns > 1.5 * frame.samples * 1e9 / frame.sample_rate:
                missing = round(gap_ns * self.sample_rate / 1e9)
                self._xrun(missing)
        self._next_mono_ns = mono + round(frame.samples * 1e9 / frame.sample_rate)
        samples = np.concatenate([f.to_ndarray().reshape(-1, self.channels)
                                  for f in self._resampler.resample(frame)] or
                                 [np.zeros((0, self.channels), np.float32)])
        return AudioChunk(samples.astype(np.float32), mono, missing)
