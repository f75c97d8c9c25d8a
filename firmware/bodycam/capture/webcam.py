"""A USB webcam through OpenCV's V4L2 backend: a real sensor for bench tests without a camera module.

A webcam runs on its own clock, so nothing is paced here: ``read`` waits for the camera. Frames it
lost (because we were slow, or the camera was) are found from gaps between grab times and counted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..clock import Clock
from ..errors import SourceError
from .frame import Frame
from .pacing import GapCounter, SourceBase

log = logging.getLogger(__name__)


class WebcamSource(SourceBase):
    """Reads ``device`` (a path such as /dev/video0, or an index such as "0") at the requested size/fps."""

    def __init__(self, device: str | int, width: int, height: int, fps: float, *, clock: Clock) -> None:
        super().__init__(width, height, fps)
        self.device = str(device)
        self._clock = clock
        self._cap: cv2.VideoCapture | None = None
        self._gaps = GapCounter(self.fps)
        self._index = -1
        self.delivered_size: tuple[int, int] | None = None  # what the camera actually gives, (w, h)

    def _open(self) -> None:
        target: str | int = int(self.device) if self.device.isdigit() else self.device
        if isinstance(target, str) and not Path(target).exists():
            raise SourceError(f"cannot open webcam {self.device}: no such device (set [camera] device)")
        if isinstance(target, str) and not os.access(target, os.R_OK | os.W_OK):
            raise SourceError(f"cannot open webcam {self.device}: permission denied; add the user to the "
                              "'video' group (or set [camera] device)")
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open webcam {self.device}: not a video capture device, or busy "
                              "(set [camera] device)")
        # MJPG first: most USB cameras only reach 720p30 and above compressed; V4L2 keeps YUYV otherwise.
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 2)  # few queued buffers: late frames are lost, not served stale
        got_w, got_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        got_fps = cap.get(cv2.CAP_PROP_FPS)
        if (got_w, got_h) != (self.width, self.height) or (got_fps and abs(got_fps - self.fps) > 0.5):
            log.warning("webcam %s delivers %dx%d @ %.3g fps, asked for %dx%d @ %.3g fps; frames are resized",
                        self.device, got_w, got_h, got_fps, self.width, self.height, self.fps)
        self._cap = cap

    def _read(self) -> Frame:
        assert self._cap is not None
        if not self._cap.grab():
            raise SourceError(f"webcam {self.device} stopped delivering frames; check the cable "
                              "(set [camera] device)")
        mono_ns, utc_ns = self._clock.monotonic_ns(), self._clock.utc_ns()
        ok, image = self._cap.retrieve()
        if not ok or image is None:
            raise SourceError(f"webcam {self.device} delivered an unreadable frame (set [camera] device)")
        self._index += self._gaps.update(mono_ns)
        self.delivered_size = (image.shape[1], image.shape[0])
        return Frame(image=self._fit(image), index=self._index, mono_ns=mono_ns, utc_ns=utc_ns)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[:2] == (self.height, self.width):
            return image
        shrinking = image.shape[0] > self.height
        return cv2.resize(image, (self.width, self.height),
                          interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _dropped(self) -> int:
        return self._gaps.dropped

    def camera_info(self) -> dict[str, object]:
        """A webcam gives no usable capture timestamp through OpenCV: frames are stamped at grab."""
        info: dict[str, object] = {"source": "webcam", "device": self.device, "frame_times": {"method": "delivery"}}
        if self.delivered_size:
            info["delivered_size"] = list(self.delivered_size)
        return info
