"""The production camera: Raspberry Pi Camera Module 3 Wide (imx708_wide) through picamera2/libcamera.

picamera2 and libcamera come from Raspberry Pi OS's apt packages, not PyPI, so they are imported in
``start()`` only: everything else (tests, the simulator) runs on machines where they do not exist.

Frames come as "RGB888", which libcamera defines by its word layout: in a numpy array the bytes are
B, G, R, exactly what OpenCV and the watermark expect, with no conversion. Drops are found from the
sensor's own timestamps (exact, unaffected by our scheduling); the frame is stamped from the injected
clock at delivery, so every source stamps on the same timeline as the rest of the firmware.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..clock import Clock
from ..errors import SourceError
from .frame import Frame
from .pacing import GapCounter, SourceBase

log = logging.getLogger(__name__)

NOT_INSTALLED = ("picamera2 is not installed: on a Raspberry Pi run 'sudo apt install python3-picamera2'; "
                 "elsewhere use [camera] source = 'synthetic'")
_BUFFERS = 6  # enough for the ISP to keep running while the encoder holds a frame or two


class Picamera2Source(SourceBase):
    """Captures the main stream of camera ``camera_num`` at the configured size and frame rate."""

    def __init__(self, width: int, height: int, fps: float, *, clock: Clock, tuning_file: str = "",
                 camera_num: int = 0, timeout_s: float = 2.0) -> None:
        super().__init__(width, height, fps)
        self.tuning_file = tuning_file
        self.camera_num = camera_num
        self.timeout_s = timeout_s
        self._clock = clock
        self._cam: Any = None
        self._gaps = GapCounter(self.fps)
        self._index = -1
        self.model: str | None = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(NOT_INSTALLED) from None
        tuning = self._load_tuning(Picamera2)
        try:
            cam = Picamera2(self.camera_num, tuning=tuning)
        except IndexError:
            raise SourceError(f"no camera {self.camera_num} found: check the ribbon cable and run "
                              "'rpicam-hello --list-cameras'") from None
        except RuntimeError as e:
            raise SourceError(f"cannot open camera {self.camera_num}: {e} (is another program using it?)") \
                from None
        try:
            self.model = str(cam.camera_properties.get("Model", "unknown"))
            if self.model != "imx708_wide":
                log.warning("camera is %s, not the Camera Module 3 Wide (imx708_wide) bodycam is tuned for",
                            self.model)
            frame_us = round(1e6 / self.fps)
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                buffer_count=_BUFFERS,
                controls={"FrameDurationLimits": (frame_us, frame_us)},  # fixes the sensor's frame rate
                display=None, encode=None)
            cam.configure(config)
            cam.start()
        except Exception as e:  # noqa: BLE001 - libcamera raises plain RuntimeErrors and worse
            cam.close()
            raise SourceError(f"cannot start camera at {self.width}x{self.height} @ {self.fps:g} fps: {e} "
                              "(check [camera] width, height and fps)") from None
        self._cam = cam

    def _load_tuning(self, picamera2_cls: Any) -> str | dict | None:
        """A path is passed through; a bare name (imx708_wide.json) is looked up in libcamera's folders."""
        name = self.tuning_file
        if not name:
            return None  # libcamera picks the tuning for the detected sensor
        if "/" in name:
            if not Path(name).is_file():
                raise SourceError(f"tuning file not found: {name} "
                                  "(set [camera] tuning_file to a path, or '' for default)")
            return name
        try:
            return picamera2_cls.load_tuning_file(name)
        except (RuntimeError, OSError, ValueError) as e:
            raise SourceError(f"tuning file {name}: {e} (set [camera] tuning_file to a path, or '' for "
                              "default)") from None

    def _read(self) -> Frame:
        try:
            request = self._cam.capture_request(wait=self.timeout_s)
        except TimeoutError:
            raise SourceError(f"camera delivered no frame for {self.timeout_s:g} s; check the ribbon cable "
                              "and power supply") from None
        try:
            image = request.make_array("main")  # a copy, so the buffer can go straight back
            sensor_ns = request.get_metadata().get("SensorTimestamp")
        finally:
            request.release()
        mono_ns, utc_ns = self._clock.monotonic_ns(), self._clock.utc_ns()
        # Without a sensor timestamp (never seen, but cheap to survive) fall back to delivery time.
        self._index += self._gaps.update(int(sensor_ns) if sensor_ns is not None else mono_ns)
        return Frame(image=self._fit(image), index=self._index, mono_ns=mono_ns, utc_ns=utc_ns)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """libcamera may align the stream size; deliver exactly the configured size anyway."""
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        if image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.close()  # stops the camera first
            except Exception as e:  # noqa: BLE001 - closing must not mask why we are closing
                log.warning("closing the camera failed: %s", e)

    def _dropped(self) -> int:
        return self._gaps.dropped
