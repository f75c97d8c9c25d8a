"""Writes encoded packets into one fragmented MP4 segment, fsyncing every fragment as it lands."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..audio.encoder import AudioPacket
from ..encode.annexb import ParameterSets, split_nals, to_length_prefixed
from ..encode.packet import EncodedPacket
from ..evidence.manifest import TIME_BASE
from .hashing_file import HashingFile

STREAM_TIME_BASE = Fraction(1, TIME_BASE)
MOVIE_TIMESCALE = 720_000  # edit lists count in it: exact for 90 kHz video and 48 kHz (or 8-32 kHz) sound


def _h264_template(width: int, height: int, fps: float) -> av.video.stream.VideoStream:
    """A stream to copy codec parameters from, in a container that is never written.

    PyAV opens (and so re-initialises) the encoder of a plain ``add_stream``, which would write
    its own SPS/PPS; a stream made from a template is muxed as-is, with our encoder's packets.
    """
    holder = av.open(io.BytesIO(), "w", format="mp4")
    template = holder.add_stream("h264", rate=Fraction(fps).limit_denominator(1001))
    template.width, template.height = width, height
    return template


@dataclass(frozen=True)
class AudioFormat:
    """What the segment's sound track is: the encoder's codec, rate, channels and its extradata."""

    codec: str          # FFmpeg codec name: "aac" or "opus"
    sample_rate: int
    channels: int
    extradata: bytes


def _audio_template(fmt: AudioFormat) -> av.audio.stream.AudioStream:
    holder = av.open(io.BytesIO(), "w", format="mp4")
    template = holder.add_stream(fmt.codec, rate=fmt.sample_rate)
    template.codec_context.layout = "mono" if fmt.channels == 1 else "stereo"
    return template


def _segment_extradata(fmt: AudioFormat) -> bytes:
    """The codec header for a segment's sound track.

    Opus's header (``OpusHead``, RFC 7845 5.1) carries a pre-skip: samples a player drops from the start
    of the track, the encoder's warm-up. A segment's first packet is taken from the middle of a running
    stream and its pts already says where it belongs, so nothing is to be skipped: pre-skip 0, or every
    segment would lose (and shift) its first 6.5 ms. AAC's header has no such field.
    """
    data = fmt.extradata
    if fmt.codec in ("opus", "libopus") and data.startswith(b"OpusHead") and len(data) >= 12:
        return data[:10] + b"\x00\x00" + data[12:]
    return data


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

    def __init__(self, path: Path, *, width: int, height: int, fps: float, fragment_seconds: float,
                 audio: AudioFormat | None = None) -> None:
        self.path = path
        self._file = HashingFile(path)
        # max_interleave_delta: the muxer holds packets to interleave the two tracks; bounded so a
        # microphone that stalls cannot hold video back (and out of the next fsync) for long.
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                   "frag_duration": str(int(fragment_seconds * 1_000_000)),
                   "flush_packets": "1", "max_interleave_delta": str(int(fragment_seconds * 1_000_000))}
        if audio is not None:
            # Sound may start after the first picture (pre-event video without sound, or a segment that
            # opens between two audio frames). A fragmenting mov muxer would shift each track to start
            # at 0 and lose that offset; an edit list keeps it, which needs the moov written once the
            # first fragment is known (delay_moov: still strictly sequential, still before any media).
            options.update({"movflags": options["movflags"] + "+delay_moov", "use_editlist": "1",
                            "movie_timescale": str(MOVIE_TIMESCALE),
                            "avoid_negative_ts": "disabled"})
        self._container = av.open(self._file, "w", format="mp4", options=options)
        stream = self._container.add_stream_from_template(_h264_template(width, height, fps))
        ctx = stream.codec_context
        ctx.width, ctx.height = width, height
        stream.time_base = STREAM_TIME_BASE
        self._stream = stream
        self._audio: av.audio.stream.AudioStream | None = None
        if audio is not None:
            a = self._container.add_stream_from_template(_audio_template(audio))
            a.codec_context.extradata = _segment_extradata(audio) or None
            a.time_base = Fraction(1, audio.sample_rate)
            self._audio = a
        self.audio_rate = audio.sample_rate if audio else 0
        self.audio_first: AudioPacket | None = None
        self.audio_last: AudioPacket | None = None
        self._audio_first_pts = 0
        self.audio_samples = 0
        self.audio_packets = 0
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

    def audio_pts(self, packet: AudioPacket) -> int:
        """pts of an audio packet in this segment (1/sample_rate), counted from the first video frame."""
        assert self.first is not None
        if self.audio_first is None:
            return round((packet.mono_ns - self.first.mono_ns) * self.audio_rate / 1e9)
        return self._audio_first_pts + packet.pos - self.audio_first.pos

    def write_audio(self, packet: AudioPacket) -> bool:
        """Mux a sound packet that starts at or after this segment's first frame; False if it does not."""
        if self._audio is None or self.first is None:
            return False
        pts = self.audio_pts(packet)
        if pts < 0 or (self.audio_last is not None and packet.pos <= self.audio_last.pos):
            return False
        if self.audio_first is None:
            self.audio_first, self._audio_first_pts = packet, pts
        p = av.Packet(packet.data)
        p.pts = p.dts = pts
        p.duration = packet.samples
        p.time_base = self._audio.time_base
        p.stream = self._audio
        self._container.mux(p)
        self.audio_last = packet
        self.audio_samples += packet.samples
        self.audio_packets += 1
        if self._file.sync():
            self.fsyncs += 1
        return True

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
