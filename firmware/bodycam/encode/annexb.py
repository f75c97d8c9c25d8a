"""H.264 byte streams: Annex B NAL units, parameter sets, and the MP4 ``avcC`` record built from them.

Why this exists: the Pi 4's encoder (FFmpeg's ``h264_v4l2m2m``) never fills ``extradata`` and sends
SPS/PPS once, in a packet of their own, before the first picture. An MP4 segment needs them twice:
in its ``avcC`` box (the sample description, ISO/IEC 14496-15 section 5.3.3.1) and, so that any
fragment starting on a keyframe decodes alone, in front of every keyframe. Both come from here, taken
from the stream itself rather than from whatever the encoder chose to put in ``extradata``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
VCL_TYPES = frozenset(range(1, 6))  # coded slice NAL units: a picture, as opposed to headers

_START = re.compile(b"\x00\x00\x01")


def split_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without start codes (3- or 4-byte) or trailing zeros.

    Emulation prevention guarantees 00 00 01 never occurs inside a NAL unit, so a plain search is
    exact; the zero before a 4-byte start code is trailing_zero_8bits of the unit before it.
    """
    starts = [m.end() for m in _START.finditer(data)]
    nals = []
    for i, s in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[s:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def join_annexb(nals: Iterable[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def to_length_prefixed(nals: Iterable[bytes]) -> bytes:
    """MP4 sample data: each NAL unit behind its 4-byte big-endian length (``lengthSizeMinusOne`` 3)."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)


def has_picture(nals: Iterable[bytes]) -> bool:
    return any(nal_type(n) in VCL_TYPES for n in nals)


@dataclass(frozen=True)
class ParameterSets:
    """The SPS and PPS NAL units a decoder needs before the first picture of a stream."""

    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    @classmethod
    def find(cls, nals: Iterable[bytes]) -> ParameterSets | None:
        """The parameter sets among ``nals``, or None unless there is at least one SPS and one PPS."""
        nals = list(nals)
        sps = tuple(n for n in nals if nal_type(n) == NAL_SPS)
        pps = tuple(n for n in nals if nal_type(n) == NAL_PPS)
        return cls(sps, pps) if sps and pps else None

    def nals(self) -> list[bytes]:
        return [*self.sps, *self.pps]

    def avcc(self) -> bytes:
        """AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), lengthSizeMinusOne = 3.

        Profile, compatibility flags and level are bytes 1-3 of the first SPS. High profiles
        (100 and up) add chroma format and bit depths; we encode 8-bit 4:2:0 only, so those are
        written as such (chroma_format_idc 1, bit depth 8) and no SPS extensions.
        """
        sps0 = self.sps[0]
        if len(sps0) < 4:
            raise ValueError("SPS too short for an avcC record")
        profile = sps0[1]
        out = bytearray([1, profile, sps0[2], sps0[3], 0xFC | 3, 0xE0 | len(self.sps)])
        for s in self.sps:
            out += len(s).to_bytes(2, "big") + s
        out.append(len(self.pps))
        for p in self.pps:
            out += len(p).to_bytes(2, "big") + p
        if profile in (100, 110, 122, 144):
            out += bytes([0xFC | 1, 0xF8 | 0, 0xF8 | 0, 0])
        return bytes(out)


def with_parameter_sets(nals: list[bytes], params: ParameterSets) -> list[bytes]:
    """A keyframe's NAL units with SPS/PPS in front, unless it carries its own.

    They go after an access unit delimiter, if any, and before SEI and slices: the order H.264
    section 7.4.1.2.3 requires (an SEI may refer to the SPS).
    """
    if ParameterSets.find(nals) is not None:
        return nals
    at = 1 if nals and nal_type(nals[0]) == NAL_AUD else 0
    return [*nals[:at], *params.nals(), *nals[at:]]
