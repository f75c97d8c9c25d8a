"""An encoded frame as it travels from the encoder through the pre-event buffer to a segment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One H.264 access unit with the capture times of the frame it encodes.

    ``index`` is the source's frame slot, so a jump in it is a dropped frame.
    """

    data: bytes
    keyframe: bool
    mono_ns: int
    utc_ns: int
    index: int

    @property
    def size(self) -> int:
        return len(self.data)
