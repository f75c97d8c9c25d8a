"""The production camera: Raspberry Pi Camera Module 3 Wide (imx708_wide) through picamera2/libcamera.

picamera2 and libcamera come from Raspberry Pi OS's apt packages, not PyPI, so they are imported in
``start()`` only: everything else (tests, the simulator) runs on machines where they do not exist.
tests/fake_picamera2.py models the parts of picamera2 used here, from its source.

Frames come as "RGB888", which libcamera defines by its word layout: in a numpy array the bytes are
B, G, R, exactly what OpenCV and the watermark expect, with no conversion.

- Sensor mode: the widest field of view that reaches the frame rate (capture/sensor_mode.py), passed
  as picamera2's ``sensor={"output_size", "bit_depth"}``; what the camera then really runs (mode,
  ScalerCrop) is read back and reported in ``camera_info()``, which goes into every manifest.
- Frame times: each request's ``SensorTimestamp``, mapped onto the injected clock
  (capture/frame_time.py), so times are those of the exposure, not of delivery. Drops are found from
  the same timestamps.
- Timeouts (picamera2 0.3.17 or later, for ``wait(job, timeout)`` and ``sensor=``; Bookworm's apt has
  it): ``capture_request`` queues a picamera2 ``Job``; when waiting for it times out, the job
  stays queued and later takes a request (a buffer) nobody would release. So a timed-out job is
  cancelled (``cancel_all_and_flush``, picamera2 >= 0.3.20; older ones: removed from the queue under
  the camera's lock), any request it took is released, the camera restarted, and the capture retried;
  ``capture_retries`` failures in a row are a SourceError, which the daemon shows as a fault.
"""

from __future__ import annotations

import inspect
import logging
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..clock import Clock
from ..config import parse_sensor_mode
from ..errors import SourceError
from .frame import Frame
from .frame_time import SensorTimeMapper
from .pacing import GapCounter, SourceBase
from .sensor_mode import choose_sensor_mode, crop_of, field_of_view, size_of

log = logging.getLogger(__name__)

NOT_INSTALLED = ("picamera2 is not installed: on a Raspberry Pi run 'sudo apt install python3-picamera2'; "
                 "elsewhere use [camera] source = 'synthetic'")
_BUFFERS = 6  # enough for the ISP to keep running while the encoder holds a frame or two
_MAX_ORPHANS = 16  # timed-out jobs kept to release what they take; older picamera2 may never finish them


class Picamera2Source(SourceBase):
    """Captures the main stream of camera ``camera_num`` at the configured size and frame rate."""

    def __init__(self, width: int, height: int, fps: float, *, clock: Clock, tuning_file: str = "",
                 camera_num: int = 0, timeout_s: float = 2.0, sensor_mode: str = "full-fov",
                 retries: int = 3) -> None:
        """``sensor_mode``: "full-fov", "auto" (picamera2's own choice) or a mode size "WxH"."""
        super().__init__(width, height, fps)
        self.tuning_file = tuning_file
        self.camera_num = camera_num
        self.timeout_s = timeout_s
        self.sensor_mode = sensor_mode
        self.sensor_size = parse_sensor_mode(sensor_mode)  # a ConfigError now rather than at start
        self.retries = max(1, retries)
        self._clock = clock
        self._cam: Any = None
        self._gaps = GapCounter(self.fps)
        self._times = SensorTimeMapper(clock, self.fps)
        self._index = -1
        self._orphans: list[Any] = []
        self.timeouts = 0  # capture timeouts recovered from (or not), for logs and tests
        self.restarts = 0
        self.model: str | None = None
        self._info: dict[str, Any] = {"source": "picamera2"}

    # --- opening --------------------------------------------------------------------------------

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
            raise SourceError(f"cannot open camera {self.camera_num}: {_one_line(e)} (is another program "
                              "using it?)") from None
        self._cam = cam  # from here on _close() closes it, whatever fails next
        if "timeout" not in inspect.signature(cam.wait).parameters:
            raise SourceError("picamera2 is too old (before 0.3.17: no capture timeouts, no sensor modes); run "
                              "'sudo apt update && sudo apt install python3-picamera2'")
        self.model = str(cam.camera_properties.get("Model", "unknown"))
        if self.model != "imx708_wide":
            log.warning("camera is %s, not the Camera Module 3 Wide (imx708_wide) bodycam is tuned for",
                        self.model)
        try:  # the first listing configures the camera once per mode: a second or two, at start only
            modes = list(cam.sensor_modes)
        except Exception as e:  # noqa: BLE001 - listing modes reconfigures the camera; libcamera raises anything
            raise SourceError(f"cannot list the sensor modes of camera {self.camera_num}: {_one_line(e)} "
                              "(set [camera] sensor_mode = 'auto' to skip)") from None
        mode = None
        if self.sensor_mode != "auto":
            mode = choose_sensor_mode(modes, fps=self.fps, output=(self.width, self.height), size=self.sensor_size)
        try:
            cam.configure(self._video_config(cam, mode))
            cam.start()
        except Exception as e:  # noqa: BLE001 - libcamera raises plain RuntimeErrors and worse
            raise SourceError(f"cannot start camera at {self.width}x{self.height} @ {self.fps:g} fps: "
                              f"{_one_line(e)} (check [camera] width, height, fps and sensor_mode)") from None
        self._info = self._read_back(cam, modes, mode)
        log.info("camera %s: sensor mode %s, crop %s", self.model, self._info.get("sensor_mode"),
                 self._info.get("crop"))

    def _video_config(self, cam: Any, mode: dict[str, Any] | None) -> Any:
        frame_us = round(1e6 / self.fps)
        kwargs: dict[str, Any] = dict(
            main={"size": (self.width, self.height), "format": "RGB888"}, buffer_count=_BUFFERS,
            controls={"FrameDurationLimits": (frame_us, frame_us)},  # fixes the sensor's frame rate
            display=None, encode=None)
        if mode is None:
            return cam.create_video_configuration(**kwargs)
        # picamera2's documented way to pick a mode (0.3.17 on): it scores the modes against this size and
        # depth, so the mode of exactly this size wins; what it really picked is read back after configure
        return cam.create_video_configuration(
            **kwargs, sensor={"output_size": size_of(mode), "bit_depth": int(mode["bit_depth"])})

    def _read_back(self, cam: Any, modes: list[dict[str, Any]], chosen: dict[str, Any] | None) -> dict[str, Any]:
        """What the camera really runs, for the manifest: asked-for is not evidence, read-back is."""
        props = cam.camera_properties
        try:
            sensor = (cam.camera_configuration() or {}).get("sensor") or {}
        except Exception:  # noqa: BLE001 - an old picamera2 without the read-back: say what we asked for
            sensor = {}
        size = tuple(sensor.get("output_size") or (size_of(chosen) if chosen else ()))
        depth = sensor.get("bit_depth") or (chosen or {}).get("bit_depth")
        running = next((m for m in modes if "size" in m and size_of(m) == size), chosen)
        areas = props.get("PixelArrayActiveAreas") or []
        array = tuple(areas[0][2:4]) if areas else tuple(props.get("PixelArraySize") or ())
        if not array:  # the widest mode's crop is the array
            array = max((crop_of(m)[2:] for m in modes if "size" in m), key=lambda wh: wh[0] * wh[1], default=())
        info: dict[str, Any] = {"source": "picamera2", "sensor": self.model, "sensor_mode_setting": self.sensor_mode,
                                "sensor_mode": {"size": list(size), "bit_depth": depth} if size else None,
                                "pixel_array": list(array) if array else None}
        if running is not None:
            info["sensor_mode_crop"] = list(crop_of(running))
        crop = (cam.camera_controls.get("ScalerCrop") or (None, None, None))[2]  # (min, max, default)
        self._set_crop(info, crop)
        return info

    def _set_crop(self, info: dict[str, Any], crop: Any) -> None:
        if not crop or len(crop) != 4:
            return
        info["crop"] = [int(v) for v in crop]
        if info.get("pixel_array"):
            fw, fh = field_of_view(tuple(info["crop"]), tuple(info["pixel_array"]))
            info["field_of_view"] = {"width": fw, "height": fh}

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
            raise SourceError(f"tuning file {name}: {_one_line(e)} (set [camera] tuning_file to a path, or '' "
                              "for default)") from None

    # --- reading --------------------------------------------------------------------------------

    def _read(self) -> Frame:
        request = self._capture()
        try:
            image = request.make_array("main")  # a copy, so the buffer can go straight back
            metadata = request.get_metadata()
        finally:
            request.release()
        sensor_ns = metadata.get("SensorTimestamp")
        when = self._times.map(sensor_ns)
        if "crop" not in self._info or self._index < 0:
            self._set_crop(self._info, metadata.get("ScalerCrop"))  # the crop the ISP really applied
        # Drops from the sensor's own clock (exact, unaffected by our scheduling) when it has one.
        self._index += self._gaps.update(int(sensor_ns) if sensor_ns is not None else when.mono_ns)
        return Frame(image=self._fit(image), index=self._index, mono_ns=when.mono_ns, utc_ns=when.utc_ns)

    def _capture(self) -> Any:
        """The next completed request, recovering from timeouts; ``retries`` in a row is a SourceError."""
        cam = self._cam
        for attempt in range(1, self.retries + 1):
            self._reap_orphans()
            job = cam.capture_request(wait=False)  # a Job: we keep it, so a timeout can be cleaned up
            try:
                return cam.wait(job, timeout=self.timeout_s)
            except (CancelledError, RuntimeError) as e:  # the job failed inside picamera2's event loop
                raise SourceError(f"camera capture failed: {_one_line(e)}; check the ribbon cable and power "
                                  "supply") from None
            except TimeoutError:
                self.timeouts += 1
                log.warning("camera delivered no frame for %g s (attempt %d of %d); restarting it",
                            self.timeout_s, attempt, self.retries)
                self._recover(job)
        raise SourceError(f"camera delivered no frame in {self.retries} tries of {self.timeout_s:g} s, restarting "
                          "it after each; check the ribbon cable and power supply")

    def _recover(self, job: Any) -> None:
        """Cancel the timed-out job, release whatever it took, restart the camera."""
        cam = self._cam
        self._cancel_jobs(cam)
        self._orphans.append(job)
        self._reap_orphans()
        try:
            cam.stop()  # releases the requests picamera2 holds; a hung job would block this, hence cancel first
            cam.start()
        except Exception as e:  # noqa: BLE001 - libcamera raises plain RuntimeErrors and worse
            raise SourceError(f"camera stopped delivering frames and could not be restarted: {_one_line(e)}; "
                              "check the ribbon cable and power supply") from None
        self.restarts += 1

    @staticmethod
    def _cancel_jobs(cam: Any) -> None:
        if hasattr(cam, "cancel_all_and_flush"):
            cam.cancel_all_and_flush()
            return
        # picamera2 < 0.3.20 has no public way: drop the queued jobs under the lock it guards them with.
        with cam.lock:
            cam._job_list = []  # noqa: SLF001

    def _reap_orphans(self) -> None:
        """Release requests that timed-out jobs took after we stopped waiting for them."""
        keep = []
        for job in self._orphans:
            try:
                request = job.get_result(timeout=0)
            except CancelledError:
                continue
            except TimeoutError:
                keep.append(job)  # not finished; it may still take a request
                continue
            except Exception:  # noqa: BLE001 - a job that failed holds nothing
                continue
            if request is not None:
                request.release()
        self._orphans = keep[-_MAX_ORPHANS:]

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """libcamera may align the stream size; deliver exactly the configured size anyway."""
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        if image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    # --- closing and reporting ------------------------------------------------------------------

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            if self._orphans:
                self._cancel_jobs(cam)  # so stop() inside close() is not queued behind a hung job
                self._reap_orphans()
            cam.close()  # stops the camera first
        except Exception as e:  # noqa: BLE001 - closing must not mask why we are closing
            log.warning("closing the camera failed: %s", e)

    def _dropped(self) -> int:
        return self._gaps.dropped

    def camera_info(self) -> dict[str, Any]:
        """Sensor, mode, crop and field of view as read back from the camera; how frames were timed."""
        return {**self._info, "frame_times": self._times.summary(), "capture_timeouts": self.timeouts}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
