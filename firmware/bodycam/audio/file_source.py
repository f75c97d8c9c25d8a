"""The sound track of the ``[camera] file``, resampled and played in real time beside its pictures.

Like the file video source, the file stands for the world in front of the camera: its sound moves
on with the injected clock from the moment the source starts, looping with the video if asked.
FFmpeg's resampler (``av.AudioResampler``) converts whatever the file holds to the configured rate
and channels. A file with no sound track gives silence, reported once in ``info()``, so a file
chosen for its pictures still records (silent) sound rather than failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..clock import Clock
from ..errors import SourceError
from .chunk import AudioChunk, AudioSourceBase, wait_until


class FileAudioSource(AudioSourceBase):
    def __init__(self, path: str | Path, sample_rate: int, channels: int, *, clock: Clock, chunk_ms: int = 20,
                 loop: bool = True, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(sample_rate, channels)
        self.path = Path(path)
        self.loop = loop
        self._clock = clock
        self._sleep = sleep
        self.chunk = max(1, sample_rate * chunk_ms // 1000)
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[np.ndarray] | None = None
        self._buf = np.zeros((0, channels), np.float32)
        self._t0: int | None = None
        self._count = 0
        self.has_sound = False
        self._ended = False

    def info(self) -> dict[str, Any]:
        return {"kind": "file", "file": self.path.name, "has_sound": self.has_sound}

    def _open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"audio: file not found: {self.path} (set [camera] file)")
        self._rewind()

    def _rewind(self) -> None:
        if self._container is not None:
            self._container.close()
        try:
            self._container = av.open(str(self.path))
        except av.error.FFmpegError as e:
            raise SourceError(f"audio: cannot open {self.path}: {e}") from None
        self.has_sound = bool(self._container.streams.audio)
        self._frames = self._decode() if self.has_sound else None

    def _decode(self) -> Iterator[np.ndarray]:
        assert self._container is not None
        layout = "mono" if self.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="flt", layout=layout, rate=self.sample_rate)
        for frame in self._container.decode(audio=0):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1, self.channels)

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _take(self, n: int) -> np.ndarray | None:
        while len(self._buf) < n:
            if self._frames is None:  # no sound track: silence
                self._buf = np.concatenate([self._buf, np.zeros((n, self.channels), np.float32)])
                break
            block = next(self._frames, None)
            if block is None:
                if not self.loop:
                    return None
                self._rewind()
                continue
            self._buf = np.concatenate([self._buf, block.astype(np.float32)])
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read(self) -> AudioChunk | None:
        if self._t0 is None:
            self._t0 = self._clock.monotonic_ns()
        first, n = self._count, self.chunk
        due = self._t0 + round((first + n) * 1e9 / self.sample_rate)
        if not wait_until(due, self._clock, self._sleep, lambda: self.closed):
            return None
        samples = self._take(n)
        if samples is None:
            return None
        self._count += n
        return AudioChunk(samples, self._t0 + round(first * 1e9 / self.sample_rate))
