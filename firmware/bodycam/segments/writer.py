"""Writes encoded packets into one fragmented MP4 segment, fsyncing every fragment as it lands."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av

from ..encode.annexb import ParameterSets, split_nals, to_length_prefixed
from ..encode.packet import EncodedPacket
from ..evidence.manifest import TIME_BASE
from .hashing_file import HashingFile

STREAM_TIME_BASE = Fraction(1, TIME_BASE)


def _h264_template(width: int, height: int, fps: float) -> av.video.stream.VideoStream:
    """A stream to copy codec parameters from, in a container that is never written.

    PyAV opens (and so re-initialises) the encoder of a plain ``add_stream``, which would write
    its own SPS/PPS; a stream made from a template is muxed as-is, with our encoder's packets.
    """
    holder = av.open(io.BytesIO(), "w", format="mp4")
    template = holder.add_stream("h264", rate=Fraction(fps).limit_denominator(1001))
    template.width, template.height = width, height
    return template


def ticks(ns: int) -> int:
    return ns * TIME_BASE // 1_000_000_000


class SegmentWriter:
    """One segment file. pts are capture times relative to the segment's first frame, so a frame's
    UTC time is the manifest's first-frame UTC plus its pts, and dropped frames show as gaps.

    With ``frag_keyframe`` + ``frag_duration`` the muxer emits a moof+mdat at every keyframe and at
    least every ``fragment_seconds``; each emitted fragment is fsynced before the next packet, so a
    power cut loses at most the fragment being filled.

    The ``avcC`` comes from the SPS/PPS of the segment's first keyframe (the encoder puts them on
    every keyframe), not from the encoder's extradata, which the Pi 4's V4L2 encoder leaves empty.
    Samples are written length-prefixed by us: FFmpeg's mov muxer converts Annex B packets only when
    the extradata is Annex B too, and copies them unconverted (unplayable) next to an ``avcC``.
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: float, fragment_seconds: float) -> None:
        self.path = path
        self._file = HashingFile(path)
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                   "frag_duration": str(int(fragment_seconds * 1_000_000)),
                   "flush_packets": "1"}
        self._container = av.open(self._file, "w", format="mp4", options=options)
        stream = self._container.add_stream_from_template(_h264_template(width, height, fps))
        ctx = stream.codec_context
        ctx.width, ctx.height = width, height
        stream.time_base = STREAM_TIME_BASE
        self._stream = stream
        self.first: EncodedPacket | None = None
        self.last: EncodedPacket | None = None
        self.frame_count = 0
        self.dropped_frames = 0
        self.fsyncs = 0

    @property
    def bytes_written(self) -> int:
        return self._file.size

    def duration_ns(self) -> int:
        if self.first is None or self.last is None:
            return 0
        return self.last.mono_ns - self.first.mono_ns

    def write(self, packet: EncodedPacket) -> None:
        if self.first is None:
            if not packet.keyframe:
                raise ValueError("a segment must start on a keyframe")
            params = ParameterSets.find(split_nals(packet.data))
            if params is None:
                raise ValueError("a segment's first keyframe must carry SPS/PPS")
            # before the first mux, which writes the moov: the sample description gets this avcC
            self._stream.codec_context.extradata = params.avcc()
            self.first = packet
        elif self.last is not None and packet.index > self.last.index + 1:
            self.dropped_frames += packet.index - self.last.index - 1
        pts = ticks(packet.mono_ns - self.first.mono_ns)
        p = av.Packet(to_length_prefixed(split_nals(packet.data)))
        p.pts = p.dts = pts
        p.is_keyframe = packet.keyframe
        p.time_base = STREAM_TIME_BASE
        p.stream = self._stream
        self._container.mux(p)
        self.last = packet
        self.frame_count += 1
        if self._file.sync():
            self.fsyncs += 1

    def close(self) -> tuple[str, int]:
        """Finish the file (last fragment + index), fsync, and return (sha256 hex, size)."""
        if not self._file.closed:
            self._container.close()
            self._file.close()
        return self._file.hexdigest(), self._file.size

    def abandon(self) -> None:
        """Close without caring about the result: the file is left for crash recovery.

        The file is closed first, so the muxer cannot append its trailer behind a fragment a failed
        write left torn (recovery cuts a torn tail, not a torn middle).
        """
        try:
            self._file.close()
        except OSError:
            pass  # fsync on a full card: what reached the file is what recovery works from
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - writes into the closed file fail, as intended
            pass
