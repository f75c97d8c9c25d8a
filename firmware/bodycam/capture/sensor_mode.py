"""Which sensor mode the camera runs in: the widest field of view that reaches the frame rate.

A body camera is bought for its field of view. picamera2 picks the sensor mode whose size is closest
to the output size (picamera2.py, ``_make_libcamera_config``, ``score_mode``, a copy of libcamera's
scoring), so 1280x720 on a Camera Module 3 gets the IMX708's 1536x864 mode, which the kernel driver
(drivers/media/i2c/imx708.c) defines as "2x2 binned and cropped for 720p": a 3072x1728 window of the
4608x2592 array, two thirds of the width. Choosing the 2x2 binned full-array mode (2304x1296) and
letting the ISP scale keeps the whole lens.

The choice works from ``Picamera2.sensor_modes`` alone (each mode's ``size``, ``crop_limits``,
``bit_depth`` and maximum ``fps``), so it does the same for any sensor: among the modes fast enough
for the configured fps, the one whose crop covers the most of the pixel array; of those, one at least
as large as the output if there is one, else the largest; then the smallest (less data, more speed).
"""

from __future__ import annotations

from typing import Any

from ..errors import SourceError

FPS_SLACK = 0.995  # a mode listed at 29.99 fps runs a 30 fps request (its limit is rounded)


def size_of(mode: dict[str, Any]) -> tuple[int, int]:
    w, h = mode["size"]
    return int(w), int(h)


def crop_of(mode: dict[str, Any]) -> tuple[int, int, int, int]:
    """The part of the pixel array the mode reads, (x, y, w, h); the full size if a mode lacks it."""
    crop = mode.get("crop_limits")
    if not crop:
        w, h = size_of(mode)
        return 0, 0, w, h
    x, y, w, h = crop
    return int(x), int(y), int(w), int(h)


def _describe(modes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{w}x{h} ({m.get('fps', 0):g} fps)" for m in modes for w, h in [size_of(m)])


def _raw_modes(modes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # picamera2 lists non-raw formats as {"format": name} only: nothing to choose from there.
    return [m for m in modes if "size" in m]


def choose_sensor_mode(modes: list[dict[str, Any]], *, fps: float, output: tuple[int, int],
                       size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The mode to run: ``size`` if given (it must exist and reach ``fps``), else the widest view.

    Raises a one-line SourceError naming the modes there are when none fits.
    """
    raw = _raw_modes(modes)
    if not raw:
        raise SourceError("the camera lists no raw sensor modes; set [camera] sensor_mode = 'auto'")
    if size is not None:
        match = [m for m in raw if size_of(m) == size]
        if not match:
            raise SourceError(f"[camera] sensor_mode = '{size[0]}x{size[1]}': the sensor has no such mode; it has "
                              f"{_describe(raw)}")
        fast = [m for m in match if m.get("fps", 0) >= fps * FPS_SLACK]
        if not fast:
            raise SourceError(f"[camera] sensor_mode = '{size[0]}x{size[1]}' runs at most {match[0].get('fps', 0):g} "
                              f"fps, below [camera] fps = {fps:g}; lower fps or pick another of {_describe(raw)}")
        return max(fast, key=lambda m: m.get("bit_depth", 0))
    fast = [m for m in raw if m.get("fps", 0) >= fps * FPS_SLACK]
    if not fast:
        raise SourceError(f"no sensor mode reaches [camera] fps = {fps:g}: the sensor has {_describe(raw)}; "
                          "lower [camera] fps")

    def area(m: dict[str, Any]) -> int:
        _, _, w, h = crop_of(m)
        return w * h

    widest = max(area(m) for m in fast)
    candidates = [m for m in fast if area(m) == widest]
    big_enough = [m for m in candidates if size_of(m)[0] >= output[0] and size_of(m)[1] >= output[1]]
    if big_enough:
        return min(big_enough, key=lambda m: (size_of(m)[0] * size_of(m)[1], -m.get("bit_depth", 0)))
    return max(candidates, key=lambda m: (size_of(m)[0] * size_of(m)[1], m.get("bit_depth", 0)))


def field_of_view(crop: tuple[int, int, int, int], array: tuple[int, int]) -> tuple[float, float]:
    """Fraction of the pixel array's width and height that ``crop`` (ScalerCrop) shows."""
    _, _, w, h = crop
    return round(min(1.0, w / array[0]), 4), round(min(1.0, h / array[1]), 4)
