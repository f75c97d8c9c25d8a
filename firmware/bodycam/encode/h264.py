"""H.264 through PyAV: libx264 in simulation, the Pi 4's V4L2 hardware encoder on the device."""

from __future__ import annotations

from collections import deque
from fractions import Fraction

import av
import numpy as np
from av.codec.context import Flags
from av.video.frame import PictureType

from ..capture.frame import Frame
from ..errors import SourceError
from .packet import EncodedPacket

ENCODER_TIME_BASE = Fraction(1, 90_000)


def open_context(*, width: int, height: int, fps: float, bitrate_kbps: int, gop_seconds: float,
                 codec: str = "libx264", preset: str = "ultrafast", threads: int = 0) -> av.CodecContext:
    """An opened H.264 encoder context with bodycam's settings (also the benchmark's baseline)."""
    try:
        ctx = av.CodecContext.create(codec, "w")
    except (av.error.FFmpegError, ValueError) as e:
        raise SourceError(f"encoder {codec!r} is not available in this PyAV build ({e}); "
                          "set [encoder] codec = 'libx264'") from None
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = ENCODER_TIME_BASE
    ctx.framerate = Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = bitrate_kbps * 1000
    ctx.gop_size = max(1, round(gop_seconds * fps))
    ctx.max_b_frames = 0
    ctx.flags |= Flags.global_header  # SPS/PPS as extradata, so every MP4 segment carries them
    if threads:
        ctx.thread_count = threads
    if codec == "libx264":
        ctx.options = {"preset": preset, "tune": "zerolatency", "forced-idr": "1",
                       "x264-params": f"keyint={ctx.gop_size}:min-keyint={ctx.gop_size}:scenecut=0:"
                                      f"vbv-maxrate={bitrate_kbps}:vbv-bufsize={bitrate_kbps}"}
    ctx.open()
    return ctx


class H264Encoder:
    """Encodes frames one by one; ``force_keyframe`` makes the next frame an IDR (record start).

    No B-frames, so packets come out in capture order and a FIFO maps each packet back to its
    frame's capture times even when the encoder holds a few frames (the V4L2 encoder does).
    """

    def __init__(self, *, width: int, height: int, fps: float, bitrate_kbps: int, gop_seconds: float,
                 codec: str = "libx264", preset: str = "ultrafast", threads: int = 0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.codec_name = codec
        ctx = open_context(width=width, height=height, fps=fps, bitrate_kbps=bitrate_kbps,
                           gop_seconds=gop_seconds, codec=codec, preset=preset, threads=threads)
        self._ctx = ctx
        self._pending: deque[Frame] = deque()
        self._force_key = False

    @property
    def extradata(self) -> bytes:
        return bytes(self._ctx.extradata or b"")

    def force_keyframe(self) -> None:
        self._force_key = True

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="bgr24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = frame.mono_ns * 9 // 100_000
        vf.time_base = ENCODER_TIME_BASE
        if self._force_key:
            vf.pict_type = PictureType.I
            self._force_key = False
        self._pending.append(frame)
        return self._wrap(self._ctx.encode(vf))

    def flush(self) -> list[EncodedPacket]:
        return self._wrap(self._ctx.encode(None))

    def _wrap(self, packets: list[av.Packet]) -> list[EncodedPacket]:
        out = []
        for p in packets:
            src = self._pending.popleft()
            out.append(EncodedPacket(bytes(p), bool(p.is_keyframe), src.mono_ns, src.utc_ns, src.index))
        return out

    def close(self) -> None:
        self._pending.clear()
