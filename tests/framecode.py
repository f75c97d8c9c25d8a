"""Frames that carry their own index as a barcode, so decoded video proves which frames it holds."""

from __future__ import annotations

import numpy as np

BITS = 16
CELL = 8


def coded_frame(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    img = np.full((height, width, 3), 90, dtype=np.uint8)
    img[CELL * 2:, :, 1] = (np.arange(width, dtype=np.uint16) * 3 + index * 5).astype(np.uint8)  # motion
    for bit in range(BITS):
        on = (index >> bit) & 1
        y, x = (bit // 8) * CELL, (bit % 8) * CELL
        img[y:y + CELL, x:x + CELL] = 255 if on else 0
    return img


def read_code(img: np.ndarray) -> int:
    value = 0
    for bit in range(BITS):
        y, x = (bit // 8) * CELL, (bit % 8) * CELL
        if img[y + 2:y + CELL - 2, x + 2:x + CELL - 2].mean() > 127:
            value |= 1 << bit
    return value


def decode_indices(path) -> list[tuple[int, int, bool]]:
    """(frame code, pts, keyframe) for every frame PyAV decodes from ``path``."""
    import av

    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            out.append((read_code(frame.to_ndarray(format="bgr24")), frame.pts, frame.key_frame))
    return out
