"""Source -> drift corrector -> encoder: turns microphone chunks into timed audio packets.

One object per pipeline, driven by the pipeline's audio thread. It also keeps what the panel and the
manifest want to know: the live level, xruns and missing samples, and the measured drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capture.pacing import utc_at
from ..clock import Clock
from .chunk import AudioChunk, AudioSource
from .drift import DriftCorrector
from .encoder import AudioEncoder, AudioPacket

SILENCE_DBFS = -90.0


@dataclass
class AudioStats:
    chunks: int = 0
    packets: int = 0
    level_dbfs: float = SILENCE_DBFS   # RMS of the latest chunk
    peak_dbfs: float = SILENCE_DBFS
    xruns: int = 0
    missing_samples: int = 0
    drift_ppm: float = 0.0
    resyncs: int = 0


def dbfs(x: float) -> float:
    return max(SILENCE_DBFS, 20 * math.log10(x)) if x > 0 else SILENCE_DBFS


class AudioChain:
    def __init__(self, *, source: AudioSource, encoder: AudioEncoder, clock: Clock, source_kind: str) -> None:
        self.source = source
        self.encoder = encoder
        self.clock = clock
        self.source_kind = source_kind
        self.corrector = DriftCorrector(encoder.rate, encoder.channels)
        self.stats = AudioStats()

    @property
    def rate(self) -> int:
        return self.encoder.rate

    def process(self, chunk: AudioChunk) -> list[AudioPacket]:
        out = self.corrector.feed(chunk)
        s = self.stats
        s.chunks += 1
        if chunk.frames:
            x = np.asarray(chunk.samples, np.float32)
            s.level_dbfs = dbfs(float(np.sqrt(np.mean(x * x))))
            s.peak_dbfs = dbfs(float(np.max(np.abs(x))))
        s.xruns, s.missing_samples = self.source.xruns, self.source.missing_samples + self.corrector.inserted
        s.drift_ppm, s.resyncs = self.corrector.drift_ppm, self.corrector.resyncs
        return self._timed(self.encoder.encode(out))

    def flush(self) -> list[AudioPacket]:
        return self._timed(self.encoder.flush())

    def _timed(self, raw: list[tuple[bytes, int, int]]) -> list[AudioPacket]:
        origin = self.corrector.origin_ns
        if origin is None:
            return []
        out = []
        for data, pos, n in raw:
            mono = origin + round(pos * 1e9 / self.rate)
            out.append(AudioPacket(data, pos, n, mono, utc_at(self.clock, mono),
                                   origin + round((pos + n) * 1e9 / self.rate)))
        self.stats.packets += len(out)
        return out

    def describe(self) -> dict[str, Any]:
        """The fixed part of the manifest's ``audio`` object."""
        e = self.encoder
        return {"codec": e.codec, "profile": "LC" if e.codec == "aac" else None, "encoder": e.codec_name,
                "sample_rate": e.rate, "channels": e.channels, "bitrate_kbps": e.bitrate_kbps,
                "time_base": f"1/{e.rate}", "source": {**self.source.info()}}

    def counters(self) -> dict[str, Any]:
        s = self.stats
        return {"xruns": s.xruns, "missing_samples": s.missing_samples,
                "dropped_samples": self.corrector.dropped, "drift_ppm": round(s.drift_ppm, 1)}

    def close(self) -> None:
        self.source.close()
        self.encoder.close()
