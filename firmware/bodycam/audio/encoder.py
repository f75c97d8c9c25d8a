"""AAC-LC (FFmpeg's native encoder) or Opus through PyAV, fed a continuous sample timeline.

Packets carry their position on the drift corrector's output timeline (``pos``, in samples), so
their capture time is exact arithmetic, not a per-packet clock reading: ``origin_ns + pos / rate``.
The encoder's own priming (AAC's first packet starts 1024 samples before the first input) shows as a
negative ``pos``; the segment writer never writes a packet before its segment's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..errors import EncoderError

CODECS = {"aac": "aac", "opus": "libopus"}
_FORMATS = ("fltp", "flt", "s16")


@dataclass(frozen=True, slots=True)
class AudioPacket:
    """One encoded audio frame with its place on the timeline and its capture times."""

    data: bytes
    pos: int         # first sample, counted from the timeline's origin
    samples: int     # duration in samples
    mono_ns: int
    utc_ns: int
    end_ns: int      # capture time just after its last sample

    @property
    def size(self) -> int:
        return len(self.data)


def open_audio_context(codec: str, sample_rate: int, channels: int, bitrate_kbps: int) -> av.CodecContext:
    """An opened encoder; every failure is one EncoderError line saying what to set."""
    name = CODECS.get(codec, codec)
    try:
        ctx = av.CodecContext.create(name, "w")
    except (av.error.FFmpegError, ValueError) as e:
        raise EncoderError(f"audio encoder {name!r} is not in this PyAV build ({e}); set [audio] codec = "
                           "\"aac\"") from None
    ctx.sample_rate = sample_rate
    ctx.layout = "mono" if channels == 1 else "stereo"
    supported = [f.name for f in (ctx.codec.audio_formats or [])]
    ctx.format = next((f for f in _FORMATS if f in supported), supported[0] if supported else "fltp")
    ctx.bit_rate = bitrate_kbps * 1000
    ctx.time_base = Fraction(1, sample_rate)
    try:
        ctx.open()
    except (av.error.FFmpegError, ValueError) as e:
        raise EncoderError(f"cannot open the {name} audio encoder at {sample_rate} Hz x {channels}: {e}; "
                           "set [audio] sample_rate = 48000 and codec = \"aac\"") from None
    return ctx


class AudioEncoder:
    """Cuts the timeline into the encoder's frame size and returns packets in order."""

    def __init__(self, *, codec: str = "aac", sample_rate: int = 48000, channels: int = 1,
                 bitrate_kbps: int = 64) -> None:
        self.codec = codec
        self.rate = sample_rate
        self.channels = channels
        self.bitrate_kbps = bitrate_kbps
        self._ctx = open_audio_context(codec, sample_rate, channels, bitrate_kbps)
        self.frame_size = self._ctx.frame_size or 1024
        self._fifo = np.zeros((0, channels), np.float32)
        self._next_pts = 0
        self._flushed = False

    @property
    def codec_name(self) -> str:
        return self._ctx.codec.name

    @property
    def extradata(self) -> bytes:
        return bytes(self._ctx.extradata or b"")

    def encode(self, samples: np.ndarray) -> list[tuple[bytes, int, int]]:
        """(data, pos, samples) of each packet completed by these samples."""
        self._fifo = np.concatenate([self._fifo, np.asarray(samples, np.float32).reshape(-1, self.channels)])
        out: list[tuple[bytes, int, int]] = []
        n = self.frame_size
        while len(self._fifo) >= n:
            block, self._fifo = self._fifo[:n], self._fifo[n:]
            out += self._encode_frame(block)
        return out

    def flush(self) -> list[tuple[bytes, int, int]]:
        if self._flushed:
            return []
        self._flushed = True
        out = []
        if len(self._fifo):
            out += self._encode_frame(self._fifo)
            self._fifo = self._fifo[:0]
        return out + self._packets(self._ctx.encode(None))

    def _encode_frame(self, block: np.ndarray) -> list[tuple[bytes, int, int]]:
        fmt = self._ctx.format.name
        layout = self._ctx.layout.name
        if fmt == "s16":
            arr = (np.clip(block, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        elif fmt == "flt":
            arr = np.ascontiguousarray(block.reshape(1, -1))
        else:
            arr = np.ascontiguousarray(block.T)
        frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout=layout)
        frame.sample_rate = self.rate
        frame.pts = self._next_pts
        frame.time_base = Fraction(1, self.rate)
        self._next_pts += len(block)
        return self._packets(self._ctx.encode(frame))

    def _packets(self, packets: list[av.Packet]) -> list[tuple[bytes, int, int]]:
        out = []
        for p in packets:
            pts = p.pts if p.pts is not None else 0
            dur = p.duration or self.frame_size
            if p.time_base is not None and p.time_base != Fraction(1, self.rate):
                pts = round(pts * p.time_base * self.rate)
                dur = round(dur * p.time_base * self.rate)
            out.append((bytes(p), int(pts), int(dur)))
        return out

    def close(self) -> None:
        self._fifo = self._fifo[:0]
