"""Picks the camera source named by ``[camera] source``; the only place that knows all of them."""

from __future__ import annotations

from ..clock import Clock
from ..config import CameraConfig
from ..errors import SourceError
from .file_source import FileSource
from .frame import CameraSource
from .picamera2_source import Picamera2Source
from .synthetic import SyntheticSource
from .webcam import WebcamSource


def open_source(camera: CameraConfig, clock: Clock) -> CameraSource:
    """Build (not start) the configured source; ``start()`` or a ``with`` block opens it."""
    w, h, fps = camera.width, camera.height, camera.fps
    match camera.source:
        case "synthetic":
            return SyntheticSource(w, h, fps, seed=camera.seed, clock=clock)
        case "file":
            if not camera.file:
                raise SourceError("[camera] file: required when source = 'file'; "
                                  "give the path of a video file")
            return FileSource(camera.file, w, h, fps, loop=camera.loop, clock=clock)
        case "webcam":
            return WebcamSource(camera.device, w, h, fps, clock=clock)
        case "picamera2":
            return Picamera2Source(w, h, fps, clock=clock, tuning_file=camera.tuning_file,
                                   sensor_mode=camera.sensor_mode, retries=camera.capture_retries)
        case other:
            raise SourceError(f"[camera] source = {other!r}: must be one of 'synthetic', 'file', 'webcam', "
                              "'picamera2'")
