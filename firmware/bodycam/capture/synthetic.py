"""A camera with no hardware: a moving, textured scene, so the rest of the pipeline runs anywhere.

The picture has what a real scene gives an H.264 encoder: a detailed background that pans (motion
vectors, texture to code), objects moving across it, and a panel with a frame counter. A lamp in the
top-right corner flashes once a second of the clock, when the synthetic microphone clicks, so
audio/video sync can be measured from a recording. It is also
deterministic: the image for slot ``i`` depends only on ``(seed, i, width, height)``, so a test can
say exactly which frame it expects, and :func:`read_index_code` reads the slot number back from the
picture even after lossy encoding.

It must cost almost nothing (the encoder needs the CPU), so the texture is built once and each frame
is a slice of it plus a few cv2 shapes; no per-frame noise.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..clock import Clock
from .flash import draw_flash, flash_due
from .frame import Frame
from .pacing import Pacer, SourceBase, utc_at

# The texture repeats every _TILE_H x _TILE_W pixels; the frame window pans across it.
_TILE_H, _TILE_W = 768, 1536
_PAN_X = 3  # px per slot, a slow walk's worth of panning
_PAN_Y_AMPLITUDE = 48  # px, a gentle vertical bob
_PAN_Y_PERIOD = 90  # slots
_CODE_BITS = 20  # slot number modulo 2**20 (~9.7 h at 30 fps) is drawn as a row of squares


def _code_block(width: int) -> int:
    """Side of one index-code square: big enough to survive H.264, small enough for 64-pixel frames."""
    return max(2, min(16, width // 40))


def read_index_code(image: np.ndarray) -> int:
    """Read the slot number (modulo 2**20) that SyntheticSource drew into ``image``.

    Works on decoded video too, as long as it has the size the source rendered at; end-to-end tests
    use it to check that no frame was lost or reordered between source and file.
    """
    b = _code_block(image.shape[1])
    q = b // 4  # read the middle of each square: its edges bleed after lossy coding
    value = 0
    for bit in range(_CODE_BITS):
        x = b + bit * b
        if image[b + q:2 * b - q, x + q:x + b - q].mean() >= 128:
            value |= 1 << bit
    return value


class SyntheticSource(SourceBase):
    """A paced, deterministic stand-in for the camera module (the simulator's default source)."""

    def __init__(self, width: int, height: int, fps: float, *, seed: int = 1, clock: Clock) -> None:
        super().__init__(width, height, fps)
        self.seed = int(seed)
        self._clock = clock
        self._pacer = Pacer(self.fps, clock)
        self._tile: np.ndarray | None = None
        self._shapes = self._make_shapes()

    # -- lifecycle -------------------------------------------------------------------------------

    def _open(self) -> None:
        self._texture()  # pay the one-off cost (~0.2 s) here rather than in the first read

    def _read(self) -> Frame:
        slot, mono_ns = self._pacer.wait_next()
        return Frame(image=self.render(slot, flash=flash_due(mono_ns, self.fps)), index=slot,
                     mono_ns=mono_ns, utc_ns=utc_at(self._clock, mono_ns))

    def _close(self) -> None:
        self._tile = None

    def _dropped(self) -> int:
        return self._pacer.dropped

    def camera_info(self) -> dict[str, object]:
        """No sensor: frames are rendered for capture slots, so their times are the slots' due times."""
        return {"source": "synthetic", "seed": self.seed, "frame_times": {"method": "paced"}}

    # -- the picture -----------------------------------------------------------------------------

    def render(self, index: int, *, flash: bool = False) -> np.ndarray:
        """The image for slot ``index``: a pure function of (seed, index, width, height, flash).

        ``flash``: the sync lamp (capture/flash.py) is lit; the source lights it on the frame nearest
        each flash instant of the clock, when the synthetic microphone clicks.
        """
        tile = self._texture()
        ox = (index * _PAN_X) % _TILE_W
        oy = round(_PAN_Y_AMPLITUDE * math.sin(2 * math.pi * index / _PAN_Y_PERIOD)) % _TILE_H
        img = np.empty((self.height, self.width, 3), np.uint8)
        _blit_wrapped(tile, img, oy, ox)
        self._draw_shapes(img, index)
        self._draw_panel(img, index)
        draw_flash(img, flash)
        return img

    def _texture(self) -> np.ndarray:
        """The background tile, built once per source (a few MB whatever the frame size)."""
        if self._tile is None:
            self._tile = _make_tile(np.random.default_rng([self.seed, 0x5EED]))
        return self._tile

    def _make_shapes(self) -> list[tuple[int, tuple[float, ...], tuple[int, int, int]]]:
        """Per-seed parameters of the moving objects: kind, motion (Lissajous) parameters, colour."""
        rng = np.random.default_rng([self.seed, 0x5A9E])
        shapes = []
        for kind in range(4):
            motion = tuple(float(v) for v in (
                rng.uniform(0.01, 0.05), rng.uniform(0, 2 * math.pi),   # x frequency (rad/slot), phase
                rng.uniform(0.01, 0.05), rng.uniform(0, 2 * math.pi),   # y frequency, phase
                rng.uniform(0.06, 0.14),                                 # size, fraction of min(w, h)
                rng.uniform(-0.08, 0.08)))                               # spin, rad/slot
            colour = tuple(int(c) for c in rng.integers(30, 256, 3))
            shapes.append((kind, motion, colour))
        return shapes

    def _draw_shapes(self, img: np.ndarray, index: int) -> None:
        h, w = img.shape[:2]
        for kind, (fx, px, fy, py, size, spin), colour in self._shapes:
            cx = int(w * (0.5 + 0.42 * math.sin(fx * index + px)))
            cy = int(h * (0.5 + 0.42 * math.sin(fy * index + py)))
            r = max(2, int(size * min(w, h)))
            if kind == 0:
                cv2.circle(img, (cx, cy), r, colour, -1, cv2.LINE_AA)
                cv2.circle(img, (cx, cy), max(1, r // 2), (20, 20, 20), max(1, r // 8), cv2.LINE_AA)
            elif kind == 3:
                cv2.ellipse(img, (cx, cy), (r, max(1, r // 2)), math.degrees(spin * index), 0, 360,
                            colour, -1, cv2.LINE_AA)
            else:
                n = 4 if kind == 1 else 3
                a = spin * index
                pts = np.array([[cx + r * math.cos(a + 2 * math.pi * k / n),
                                 cy + r * math.sin(a + 2 * math.pi * k / n)] for k in range(n)], np.int32)
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)

    def _draw_panel(self, img: np.ndarray, index: int) -> None:
        """Top-left: the machine-readable index code, a counter, and a dial turning once per 60 slots."""
        h, w = img.shape[:2]
        b = _code_block(w)
        scale = max(0.3, 0.8 * h / 720)
        thick = max(1, round(scale * 2))
        text = f"SIM {self.seed} #{index:07d}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        dial = max(3, th)
        panel_w = max(b * (_CODE_BITS + 2), b + tw + 3 * dial + b)
        panel_h = 3 * b + th + base + b
        img[:panel_h, :panel_w] = 16
        for bit in range(_CODE_BITS):
            x = b + bit * b
            img[b:2 * b, x:x + b] = 255 if (index >> bit) & 1 else 0
        y_text = 3 * b + th
        cv2.putText(img, text, (b, y_text), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
        centre = (b + tw + 2 * dial, y_text - th // 2)
        angle = 2 * math.pi * (index % 60) / 60
        cv2.circle(img, centre, dial, (200, 200, 200), 1, cv2.LINE_AA)
        tip = (int(centre[0] + dial * math.sin(angle)), int(centre[1] - dial * math.cos(angle)))
        cv2.line(img, centre, tip, (0, 200, 255), thick, cv2.LINE_AA)


def _blit_wrapped(tile: np.ndarray, out: np.ndarray, oy: int, ox: int) -> None:
    """Fill ``out`` with the window of the periodic ``tile`` starting at (oy, ox), wrapping at its edges.

    Plain slice copies (a handful when the window wraps), about as cheap as one memcpy of the frame.
    """
    th, tw = tile.shape[:2]
    oh, ow = out.shape[:2]
    y, ty = 0, oy
    while y < oh:
        sh = min(th - ty, oh - y)
        x, tx = 0, ox
        while x < ow:
            sw = min(tw - tx, ow - x)
            out[y:y + sh, x:x + sw] = tile[ty:ty + sh, tx:tx + sw]
            x, tx = x + sw, 0
        y, ty = y + sh, 0


def _make_tile(rng: np.random.Generator) -> np.ndarray:
    """A seamless BGR tile: 1/f noise (light, shade, gentle colour) plus wrapped rectangles and lines."""
    fy = np.fft.fftfreq(_TILE_H)[:, None]
    fx = np.fft.rfftfreq(_TILE_W)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0

    def field(beta: float) -> np.ndarray:  # periodic by construction (inverse FFT), scaled to about -1..1
        v = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((_TILE_H, _TILE_W))) / f ** beta,
                          s=(_TILE_H, _TILE_W))
        lo, hi = np.percentile(v, (1, 99))
        return (v - lo) / (hi - lo) * 2 - 1

    luma = 125 + 85 * field(1.4)
    tint = [30 * field(2.2) for _ in range(3)]
    tile = np.clip(np.stack([luma + t for t in tint], axis=-1), 0, 255).astype(np.uint8)
    # Hard edges, drawn at every wrap offset so the tile stays seamless.
    shifts = [(dx, dy) for dx in (-_TILE_W, 0, _TILE_W) for dy in (-_TILE_H, 0, _TILE_H)]
    for _ in range(160):
        x, y = int(rng.integers(0, _TILE_W)), int(rng.integers(0, _TILE_H))
        rw, rh = int(rng.integers(6, 90)), int(rng.integers(6, 60))
        grey = int(rng.integers(20, 236))
        colour = tuple(int(np.clip(grey + d, 0, 255)) for d in rng.integers(-40, 41, 3))
        filled = -1 if rng.random() < 0.6 else 2
        for dx, dy in shifts:
            cv2.rectangle(tile, (x + dx, y + dy), (x + dx + rw, y + dy + rh), colour, filled)
    for _ in range(30):
        x, y = int(rng.integers(0, _TILE_W)), int(rng.integers(0, _TILE_H))
        ex, ey = x + int(rng.integers(-300, 300)), y + int(rng.integers(-150, 150))
        grey = int(rng.integers(0, 256))
        for dx, dy in shifts:
            cv2.line(tile, (x + dx, y + dy), (ex + dx, ey + dy), (grey, grey, grey), 2, cv2.LINE_AA)
    grain = rng.integers(-4, 5, tile.shape, dtype=np.int16)  # static grain; it pans with the scene
    return np.clip(tile.astype(np.int16) + grain, 0, 255).astype(np.uint8)
