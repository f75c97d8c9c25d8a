"""What every camera source delivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(slots=True)
class Frame:
    """One captured picture.

    ``image`` is HxWx3 uint8 in BGR order (OpenCV's, so the watermark can draw on it in place).
    ``index`` counts frame slots since the source started, dropped ones included, so a gap in
    indices is a dropped frame. Times are on the injected clock's timeline and are those of capture:
    the sensor's own timestamp where the camera gives one (capture/frame_time.py), the capture slot
    for paced sources, the delivery time otherwise (``CameraSource.camera_info()`` says which).
    """

    image: np.ndarray
    index: int
    mono_ns: int
    utc_ns: int


class CameraSource(Protocol):
    """A camera: opened by ``start``, read until ``None`` (end of a non-looping file), then closed."""

    width: int
    height: int
    fps: float

    def start(self) -> None: ...

    def read(self) -> Frame | None:
        """Block until the next frame is due and return it; ``None`` when the source has ended."""
        ...

    @property
    def dropped(self) -> int:
        """Frames the source had to skip because its consumer fell behind real time."""
        ...

    def camera_info(self) -> dict[str, Any]:
        """What the manifest's ``camera`` object records about this source (docs/format.md 3.1)."""
        ...

    def close(self) -> None: ...
