"""Burns the capture time, device serial and officer id into every frame, before encoding.

The stamp is part of the evidence: anyone watching the video, with any player, sees when and by which
device it was recorded. White text on a darkened box stays legible on any scene and after H.264.
The box has a fixed size per frame size (the time string is monospaced in digits), so it does not
jitter, and only the pixels inside it are touched, which keeps the cost well under a millisecond.
"""

from __future__ import annotations

import cv2
import numpy as np

from .capture.frame import Frame
from .clock import iso_utc
from .config import WatermarkConfig

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TIME_TEMPLATE = "0000-00-00T00:00:00.000Z"  # Hershey digits share one width, so this sizes every time


def _printable(text: str) -> str:
    """The Hershey fonts only have ASCII; anything else would silently vanish, so show it as '?'."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


class _Layout:
    """Where everything goes for one frame size (computed once per size)."""

    def __init__(self, cfg: WatermarkConfig, lines: list[str], width: int, height: int) -> None:
        self.font_scale = max(0.45, 0.7 * cfg.scale * height / 720)  # below 0.45 Hershey text is a smudge
        self.thickness = max(1, round(1.6 * self.font_scale))
        pad = max(2, round(6 * self.font_scale))
        gap = max(1, round(6 * self.font_scale))
        sizes = [cv2.getTextSize(t, _FONT, self.font_scale, self.thickness) for t in lines]
        line_h = max(h + base for (_, h), base in sizes)
        box_w = max(w for (w, _), _ in sizes) + 2 * pad
        box_h = len(lines) * line_h + (len(lines) - 1) * gap + 2 * pad
        margin = max(0, round(10 * self.font_scale))
        left = cfg.position.endswith("left")
        top = cfg.position.startswith("top")
        x0 = margin if left else width - margin - box_w
        y0 = margin if top else height - margin - box_h
        # The box as placed (may stick out of a tiny frame) and as clipped to the frame.
        self.box = (x0, y0, x0 + box_w, y0 + box_h)
        cx0, cy0 = min(max(0, x0), width), min(max(0, y0), height)
        self.clip = (cx0, cy0, min(max(cx0, x0 + box_w), width), min(max(cy0, y0 + box_h), height))
        # Text origins (baseline-left) relative to the clipped box's corner.
        dx, dy = x0 - self.clip[0], y0 - self.clip[1]
        ascent = max(h for (_, h), _ in sizes)
        self.origins = [(dx + pad, dy + pad + ascent + i * (line_h + gap)) for i in range(len(lines))]


class Watermarker:
    """Draws the stamp onto ``Frame.image`` in place; configured once, applied to every frame."""

    def __init__(self, cfg: WatermarkConfig, *, serial: str, officer_id: str) -> None:
        self.cfg = cfg
        self._fixed_lines: list[str] = []
        if cfg.show_serial:
            self._fixed_lines.append(_printable(f"S/N {serial}"))
        if cfg.show_officer:
            self._fixed_lines.append(_printable(f"Officer {officer_id}"))
        self._layouts: dict[tuple[int, int], _Layout] = {}

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the pixels ``apply`` may change on a frame of this size (clipped to it)."""
        return self._layout(width, height).clip

    def _layout(self, width: int, height: int) -> _Layout:
        layout = self._layouts.get((width, height))
        if layout is None:
            layout = _Layout(self.cfg, [_TIME_TEMPLATE, *self._fixed_lines], width, height)
            self._layouts[(width, height)] = layout
        return layout

    def apply(self, frame: Frame) -> None:
        """Stamp ``frame.utc_ns`` (and serial, officer) into ``frame.image``; no-op when disabled."""
        if not self.cfg.enabled:
            return
        img = frame.image
        height, width = img.shape[:2]
        layout = self._layout(width, height)
        x0, y0, x1, y1 = layout.clip
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]  # a view: drawing into it cannot reach pixels outside the box
        np.right_shift(roi, 2, out=roi)  # darken to a quarter: translucent, and legible on white
        lines = [iso_utc(frame.utc_ns), *self._fixed_lines]
        for text, origin in zip(lines, layout.origins, strict=True):
            cv2.putText(roi, text, origin, _FONT, layout.font_scale, (255, 255, 255), layout.thickness,
                        cv2.LINE_AA)
