"""Top-level MP4 box walking, enough to cut a torn fragmented MP4 back to its last whole fragment."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path


def iter_boxes(data: bytes | memoryview) -> Iterator[tuple[str, int, int]]:
    """Yield (type, offset, size) for each top-level box; stops at the first box that runs past the end."""
    pos, end = 0, len(data)
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            if pos + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        elif size == 0:
            size = end - pos
        if size < 8 or pos + size > end:
            return
        yield kind.decode("latin-1"), pos, size
        pos += size


def complete_length(path: Path) -> int:
    """Bytes of ``path`` that form a playable file: header boxes plus every complete moof+mdat pair.

    Returns 0 when even the header (ftyp + moov) is incomplete.
    """
    data = path.read_bytes()
    good = 0
    have_moov = False
    pending_moof = False
    for kind, offset, size in iter_boxes(data):
        if kind == "moov":
            have_moov = True
            good = offset + size
        elif kind == "moof":
            pending_moof = True
        elif kind == "mdat" and pending_moof:
            pending_moof = False
            good = offset + size
        elif kind in ("ftyp", "free", "styp", "sidx"):
            if not pending_moof:
                good = offset + size
        elif kind == "mfra" and not pending_moof:
            good = offset + size
    return good if have_moov else 0
