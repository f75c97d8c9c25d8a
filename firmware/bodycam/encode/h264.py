"""H.264 through PyAV: libx264 in simulation and on a Pi 5, the Pi 4's V4L2 hardware encoder there.

Why not picamera2's own ``H264Encoder``: it runs its own thread and pushes to its own outputs, so
our pre-event buffer, its exact trigger (``force_keyframe`` on the next frame, packets routed under
the pipeline's lock) and the watermark on the exact frame that is encoded would all have to be
re-done around its callbacks; on a Pi 5 it is libav software encoding anyway, the same libx264 work
this path does. The one thing it does that FFmpeg's ``h264_v4l2m2m`` does not (repeat SPS/PPS on
every IDR) is done here, for every encoder, from the stream itself: see ``_wrap``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import av
import numpy as np
from av.codec.context import Flags
from av.video.frame import PictureType

from ..capture.frame import Frame
from ..errors import EncoderError
from .annexb import NAL_IDR, ParameterSets, has_picture, join_annexb, nal_type, split_nals, with_parameter_sets
from .packet import EncodedPacket
from .platform import HARDWARE_CODEC, Platform, choose_codec

ENCODER_TIME_BASE = Fraction(1, 90_000)


class EncoderContext(Protocol):
    """What H264Encoder needs of an opened PyAV codec context (and what a test double provides)."""

    @property
    def extradata(self) -> bytes | None: ...

    def encode(self, frame: av.VideoFrame | None = None) -> list[av.Packet]: ...


def open_context(*, width: int, height: int, fps: float, bitrate_kbps: int, gop_seconds: float,
                 codec: str = "libx264", preset: str = "ultrafast", threads: int = 0,
                 platform: Platform | None = None) -> av.CodecContext:
    """An opened H.264 encoder context with bodycam's settings (also the benchmark's baseline).

    ``codec = "auto"`` is resolved here too (see ``platform.choose_codec``). Every failure is one
    EncoderError line that says what to set: FFmpeg's own message for a V4L2 encoder that is not
    there (a Pi 5 told to use ``h264_v4l2m2m``) is a bare errno.
    """
    codec = choose_codec(codec, platform).codec
    try:
        ctx = av.CodecContext.create(codec, "w")
    except (av.error.FFmpegError, ValueError) as e:
        raise EncoderError(f"encoder {codec!r} is not available in this PyAV build ({e}); "
                           "set [encoder] codec = \"auto\"") from None
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = ENCODER_TIME_BASE
    ctx.framerate = Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = bitrate_kbps * 1000
    ctx.gop_size = max(1, round(gop_seconds * fps))
    ctx.max_b_frames = 0
    # Asks for SPS/PPS as extradata; libx264 obeys, h264_v4l2m2m ignores it (H264Encoder copes).
    ctx.flags |= Flags.global_header
    if threads:
        ctx.thread_count = threads
    if codec == "libx264":
        ctx.options = {"preset": preset, "tune": "zerolatency", "forced-idr": "1",
                       "x264-params": f"keyint={ctx.gop_size}:min-keyint={ctx.gop_size}:scenecut=0:"
                                      f"vbv-maxrate={bitrate_kbps}:vbv-bufsize={bitrate_kbps}"}
    try:
        ctx.open()
    except (av.error.FFmpegError, OSError, ValueError) as e:
        hint = (" (a Pi 5 has no H.264 hardware encoder; is the bcm2835-codec driver loaded?)"
                if codec == HARDWARE_CODEC else "")
        raise EncoderError(f"cannot open the {codec} encoder at {width}x{height} @ {fps:g} fps: {e}{hint}; "
                           "set [encoder] codec = \"auto\" (or \"libx264\")") from None
    return ctx


ContextOpener = Callable[..., EncoderContext]


class H264Encoder:
    """Encodes frames one by one; ``force_keyframe`` makes the next frame an IDR (record start).

    What every packet it returns guarantees, whatever the encoder underneath does:
    - its capture times are those of the frame it encodes, matched by pts (the encoder copies each
      frame's pts to its packet), not by arrival order: a hardware encoder holds frames and sends
      SPS/PPS as a packet with no picture, which an order-based match would pair with a frame;
    - headers that came without a picture are merged into the next picture's packet;
    - every IDR carries SPS/PPS in band (Annex B), so any segment or fragment that starts on it
      decodes on its own, and the segment writer takes its ``avcC`` from it.

    The context is opened by ``start()`` (or the first ``encode``), so a daemon that cannot open its
    encoder still boots into a fault state that says why. ``open_context`` is the seam: tests pass an
    opener with the same signature that returns a stand-in for the Pi's encoder.
    """

    def __init__(self, *, width: int, height: int, fps: float, bitrate_kbps: int, gop_seconds: float,
                 codec: str = "libx264", preset: str = "ultrafast", threads: int = 0,
                 hardware: bool | None = None, reason: str = "",
                 open_context: ContextOpener = open_context) -> None:
        """``reason``: why this codec (from ``platform.choose_codec``), for logs and the audit log."""
        self.width, self.height, self.fps = width, height, fps
        self.codec_name = codec
        self.reason = reason
        self.hardware = codec == HARDWARE_CODEC if hardware is None else hardware
        self._settings = dict(width=width, height=height, fps=fps, bitrate_kbps=bitrate_kbps,
                              gop_seconds=gop_seconds, codec=codec, preset=preset, threads=threads)
        self._open_context = open_context
        self._ctx: EncoderContext | None = None
        self._pending: dict[int, Frame] = {}   # pts -> frame sent to the encoder, no packet yet
        self._held: list[bytes] = []           # NAL units that came without a picture
        self._params: ParameterSets | None = None
        self._force_key = False
        self._flushed = False
        self.unmatched_packets = 0             # pictures with no frame to time them: dropped, counted

    @property
    def description(self) -> str:
        return f"{self.codec_name} ({'hardware' if self.hardware else 'software'})"

    @property
    def extradata(self) -> bytes:
        """SPS/PPS seen so far (Annex B); b"" before the first keyframe of a V4L2 encoder."""
        return join_annexb(self._params.nals()) if self._params else b""

    def start(self) -> None:
        """Open the encoder; raises EncoderError with what to set if it cannot. Idempotent."""
        if self._ctx is None:
            self._ctx = self._open_context(**self._settings)
            extradata = bytes(self._ctx.extradata or b"")
            if extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
                self._params = ParameterSets.find(split_nals(extradata))

    def oldest_pending_ns(self) -> int | None:
        """Capture time of the oldest frame sent to the encoder whose packet has not come out yet."""
        return next(iter(self._pending.values())).mono_ns if self._pending else None

    def force_keyframe(self) -> None:
        self._force_key = True

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        self.start()
        assert self._ctx is not None
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="bgr24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = frame.mono_ns * 9 // 100_000
        vf.time_base = ENCODER_TIME_BASE
        if self._force_key:
            vf.pict_type = PictureType.I
            self._force_key = False
        self._pending[vf.pts] = frame
        return self._wrap(self._ctx.encode(vf))

    def flush(self) -> list[EncodedPacket]:
        """Drain the encoder at end of stream. Safe on an encoder never used or already flushed."""
        if self._ctx is None or self._flushed:
            return []
        self._flushed = True
        return self._wrap(self._ctx.encode(None))

    def _wrap(self, packets: list[av.Packet]) -> list[EncodedPacket]:
        out = []
        for p in packets:
            nals = split_nals(bytes(p))
            params = ParameterSets.find(nals)
            if params is not None:
                self._params = params
            if not has_picture(nals):
                self._held += nals  # SPS/PPS (or SEI) on their own: they belong to the next picture
                continue
            frame = self._frame_for(p.pts)
            if frame is None:
                self.unmatched_packets += 1
                continue
            nals, self._held = self._held + nals, []
            keyframe = any(nal_type(n) == NAL_IDR for n in nals)
            if keyframe and self._params is not None:
                nals = with_parameter_sets(nals, self._params)
            out.append(EncodedPacket(join_annexb(nals), keyframe, frame.mono_ns, frame.utc_ns, frame.index))
        return out

    def _frame_for(self, pts: int | None) -> Frame | None:
        """The frame this packet encodes; frames sent before it and never answered were skipped.

        Exact pts first; failing that (a driver that rounds times: V4L2 carries microseconds, or
        no pts at all) the nearest pending frame, the oldest when there is no pts.
        """
        if not self._pending:
            return None
        key = pts if pts in self._pending else min(
            self._pending, key=lambda k: abs(k - pts) if pts is not None else 0)
        frame = self._pending.pop(key)
        for older in [k for k in self._pending if k < key]:
            del self._pending[older]
        return frame

    def close(self) -> None:
        self._pending.clear()
        self._held.clear()
        self._ctx = None
