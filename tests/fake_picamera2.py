"""A fake ``picamera2`` module for tests, modelled on picamera2's own source (raspberrypi/picamera2,
v0.3.x) and the IMX708 kernel driver. Install it with ``install(monkeypatch, clock)``.

What it models, and where from:
- ``sensor_modes`` of a Camera Module 3 Wide: picamera2.py ``Picamera2.sensor_modes`` gives dicts of
  format, bit_depth, size, fps (maximum) and crop_limits. Sizes and crops are those of the kernel's
  drivers/media/i2c/imx708.c mode table: 4608x2592 (full array), 2304x1296 ("regular 2x2 binned",
  the full 4608x2592 array) and 1536x864 ("2x2 binned and cropped for 720p": 3072x1728 at 768,432).
  The fps are those picamera2 lists for the sensor (14.35, 56.03, 120.13).
- Mode choice: picamera2.py ``_make_libcamera_config`` scores every raw mode against the requested
  ``sensor`` output size and bit depth (or the raw, else the main stream size) the way libcamera does
  (``score_mode``) and takes the lowest score; ``create_video_configuration(sensor=...)`` accepts only
  ``output_size`` and ``bit_depth`` (``check_camera_config``); ``camera_configuration()["sensor"]``
  reads the choice back after ``configure``.
- ScalerCrop: the ISP crops the mode's field of view to the output aspect ratio; reported in each
  request's metadata and as ``camera_controls["ScalerCrop"] = (min, max, default)``.
- Requests and jobs: ``capture_request(wait=False)`` queues a ``Job`` (job.py) in ``_job_list``
  (``dispatch_functions``); ``wait(job, timeout)`` is ``job.get_result(timeout)``, and a timed-out job
  *stays queued*: the next completed request goes to it, and whoever never reads it never releases it.
  ``cancel_all_and_flush`` (picamera2 >= 0.3.20) cancels and clears queued jobs; ``stop`` (``stop_``)
  releases the completed requests picamera2 itself holds but not the ones handed out.
- Buffers: ``buffer_count`` buffers; a request holds one until ``release`` (request.py
  ``CompletedRequest.release``, reference counted). Deliberately stricter than libcamera: a buffer of
  a leaked request never comes back, not even across stop/start, so a leak runs the pool dry and
  captures time out; a test that leaks fails.
- Time: frame k of a run is exposed at ``t0 + k * interval`` on CLOCK_BOOTTIME (``SensorTimestamp``)
  and delivered ``latency_ns`` later; waiting sleeps on the injected clock (a ManualClock advances).
"""

from __future__ import annotations

import types
from concurrent.futures import CancelledError
from typing import Any

import numpy as np

IMX708_WIDE_MODES: list[dict[str, Any]] = [
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (1536, 864), "fps": 120.13,
     "crop_limits": (768, 432, 3072, 1728), "exposure_limits": (9, None)},
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (2304, 1296), "fps": 56.03,
     "crop_limits": (0, 0, 4608, 2592), "exposure_limits": (13, 77208384, None)},
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (4608, 2592), "fps": 14.35,
     "crop_limits": (0, 0, 4608, 2592), "exposure_limits": (26, 112015443, None)},
]
IMX708_PROPERTIES = {"Model": "imx708_wide", "PixelArraySize": (4608, 2592),
                     "PixelArrayActiveAreas": [(0, 0, 4608, 2592)]}


def picamera2_score(mode: dict[str, Any], bit_depth: int, output_size: tuple[int, int]) -> float:
    """picamera2's (and libcamera's) mode score, rewritten from picamera2.py ``score_mode``: lower wins.

    A mode smaller than asked costs twice the shortfall, a larger one a quarter of the excess; aspect
    ratio and bit depth differences cost far more.
    """
    def cost(desired: float, actual: float) -> float:
        d = desired - actual
        return -d / 4 if d < 0 else d * 2

    w, h = mode["size"]
    score = cost(output_size[0], w) + cost(output_size[1], h)
    score += 1500 * cost(output_size[0] / output_size[1], w / h)
    return score + 500 * abs(bit_depth - mode["bit_depth"])


def isp_crop(mode: dict[str, Any], output: tuple[int, int]) -> tuple[int, int, int, int]:
    """The ISP's default ScalerCrop: the mode's crop, cut centrally to the output aspect ratio."""
    x, y, w, h = mode["crop_limits"]
    ar = output[0] / output[1]
    if w / h > ar:
        nw = int(round(h * ar))
        return x + (w - nw) // 2, y, nw, h
    nh = int(round(w / ar))
    return x, y + (h - nh) // 2, w, nh


class FakeJob:
    """picamera2's Job (job.py): a result that arrives later, or a cancellation."""

    def __init__(self) -> None:
        self.result: Any = None
        self.done = False
        self.cancelled = False

    def get_result(self, timeout: float | None = None) -> Any:
        if self.cancelled:
            raise CancelledError()
        if not self.done:
            raise TimeoutError()
        return self.result

    def cancel(self) -> None:
        if not self.done:
            self.cancelled = True


class FakeCompletedRequest:
    """request.py CompletedRequest: one buffer, reference counted, back to the pool at zero."""

    def __init__(self, cam: FakePicamera2, sensor_ns: int, frame: int) -> None:
        self.cam, self.sensor_ns, self.frame, self.ref_count = cam, sensor_ns, frame, 1

    def make_array(self, name: str) -> np.ndarray:
        if name != "main":
            raise RuntimeError(f"Stream {name!r} is not defined")
        w, h = self.cam.delivered_size or self.cam.config["main"]["size"]
        return np.full((h, w, 3), self.frame % 251, np.uint8)

    def get_metadata(self) -> dict[str, Any]:
        md = {"ScalerCrop": self.cam.scaler_crop, "ExposureTime": 10000,
              "FrameDuration": round(self.cam.interval_ns / 1000)}
        if self.cam.send_timestamps:
            md["SensorTimestamp"] = self.sensor_ns + self.cam.timestamp_offset_ns
        return md

    def release(self) -> None:
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        if self.ref_count == 0:
            self.cam.free_buffers += 1
            self.cam.outstanding.discard(self)


class FakePicamera2:
    """Stands in for picamera2.Picamera2; see the module docstring for what it models."""

    instances: list[FakePicamera2] = []
    clock: Any = None
    modes: list[dict[str, Any]] = IMX708_WIDE_MODES
    properties: dict[str, Any] = IMX708_PROPERTIES
    has_cancel = True           # False: a picamera2 older than 0.3.20
    fail_configure: str = ""    # a RuntimeError message configure() raises
    open_error: BaseException | None = None

    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        if self.open_error is not None:
            raise self.open_error
        import threading
        self.camera_num, self.tuning = camera_num, tuning
        self.camera_properties = dict(self.properties)
        self.camera_controls: dict[str, Any] = {}
        self.config: dict[str, Any] | None = None
        self.mode: dict[str, Any] | None = None
        self.started = False
        self.closes = self.stops = self.starts = 0
        self.lock = threading.Lock()
        self._job_list: list[FakeJob] = []
        self.free_buffers = 0
        self.buffer_count = 0
        self.outstanding: set[FakeCompletedRequest] = set()
        self.latency_ns = 40_000_000
        self.drop: set[int] = set()     # frame numbers (of the current run) the sensor never delivers
        self.stalled_until_ns = 0       # nothing is delivered before this CLOCK_BOOTTIME instant
        self.late_result_on_timeout = False  # a frame completes just after a waiter gave up
        self.send_timestamps = True
        self.timestamp_offset_ns = 0    # a camera stamping in another clock domain than CLOCK_BOOTTIME
        self.delivered_size: tuple[int, int] | None = None  # libcamera's aligned size, if different
        self._t0 = 0
        self._k = 0
        FakePicamera2.instances.append(self)

    # --- configuration ----------------------------------------------------------------------------

    @staticmethod
    def load_tuning_file(name: str) -> dict:
        if name != "imx708_wide.json":
            raise RuntimeError("Tuning file not found")
        return {"version": 2, "algorithms": []}

    @property
    def sensor_modes(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.modes]

    def create_video_configuration(self, main: dict, *, buffer_count: int = 6, controls: dict | None = None,
                                   display: str | None = "main", encode: str | None = "main",
                                   sensor: dict | None = None, raw: dict | None = None) -> dict:
        if sensor is not None and set(sensor) - {"bit_depth", "output_size"}:
            raise RuntimeError(f"Unexpected keys {set(sensor) - {'bit_depth', 'output_size'}} in sensor configuration")
        return {"main": dict(main), "buffer_count": buffer_count, "controls": dict(controls or {}),
                "sensor": dict(sensor or {}), "raw": dict(raw) if raw else None}

    def configure(self, config: dict) -> None:
        if self.fail_configure:
            raise RuntimeError(self.fail_configure)
        sensor = config.get("sensor") or {}
        bit_depth = sensor.get("bit_depth") or 10  # the native mode's depth, as picamera2's sensor_format
        size = sensor.get("output_size") or (config["raw"] or {}).get("size") or config["main"]["size"]
        self.mode = min(self.modes, key=lambda m: picamera2_score(m, bit_depth, tuple(size)))
        self.config = config
        config["sensor"] = {"bit_depth": self.mode["bit_depth"], "output_size": tuple(self.mode["size"])}
        crop = isp_crop(self.mode, tuple(config["main"]["size"]))
        self.camera_controls = {"ScalerCrop": ((0, 0, 64, 64), (0, 0, 4608, 2592), crop)}
        self.buffer_count = self.free_buffers = config["buffer_count"]

    def camera_configuration(self) -> dict | None:
        return self.config

    @property
    def scaler_crop(self) -> tuple[int, int, int, int]:
        return self.camera_controls["ScalerCrop"][2]

    @property
    def interval_ns(self) -> int:
        limits = (self.config or {}).get("controls", {}).get("FrameDurationLimits")
        if limits:
            return limits[0] * 1000
        return round(1e9 / self.mode["fps"]) if self.mode else 33_333_333

    # --- running ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self.starts += 1
        self._t0, self._k = self.clock.boottime_ns(), 0  # a new run: frame numbers start again

    def stop(self) -> None:
        self.started = False
        self.stops += 1

    def close(self) -> None:
        if self.started:
            self.stop()
        self.closes += 1

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> Any:
        job = FakeJob()
        with self.lock:
            self._job_list.append(job)
        if wait is False:
            return job
        return self.wait(job, None if wait is True or wait is None else wait)

    def cancel_all_and_flush(self) -> None:
        with self.lock:
            for job in self._job_list:
                job.cancel()
            self._job_list = []

    def __getattribute__(self, name: str) -> Any:
        if name == "cancel_all_and_flush" and not type(self).has_cancel:
            raise AttributeError(name)
        return super().__getattribute__(name)

    def wait(self, job: FakeJob, timeout: float | None = None) -> Any:
        """Frames complete, oldest queued job first, until ``job`` has one or ``timeout`` passes."""
        deadline = self.clock.boottime_ns() + int((timeout if timeout is not None else 3600) * 1e9)
        while not job.done and not job.cancelled:
            due = self._next_delivery()
            if due is None or due > deadline:
                self.clock.sleep(max(0, deadline - self.clock.boottime_ns()) / 1e9)
                if self.late_result_on_timeout:
                    self.late_result_on_timeout = False
                    self._complete_into(job)
                raise TimeoutError()
            self.clock.sleep(max(0, due - self.clock.boottime_ns()) / 1e9)
            self._complete_next()
        return job.get_result()

    def _frame_ns(self, k: int) -> int:
        return self._t0 + k * self.interval_ns

    def _next_delivery(self) -> int | None:
        """When the next frame reaches picamera2; None if none will (stopped, or no free buffer)."""
        if not self.started or self.free_buffers == 0:
            return None
        now = self.clock.boottime_ns()
        while (self._k in self.drop or self._frame_ns(self._k) < self.stalled_until_ns
               or self._frame_ns(self._k) + self.latency_ns < now - self.interval_ns):
            self._k += 1  # skipped by the sensor, stalled, or long gone (its buffer was reused)
        return self._frame_ns(self._k) + self.latency_ns

    def _take_frame(self) -> FakeCompletedRequest:
        self.free_buffers -= 1
        request = FakeCompletedRequest(self, self._frame_ns(self._k), self._k)
        self.outstanding.add(request)
        self._k += 1
        return request

    def _complete_next(self) -> None:
        with self.lock:
            job = self._job_list.pop(0)
        job.result, job.done = self._take_frame(), True

    def _complete_into(self, job: FakeJob) -> None:
        """The race after a timeout: the frame arrives just as the waiter gives up."""
        if self._next_delivery() is None:
            return
        with self.lock:
            if job in self._job_list:
                self._job_list.remove(job)
        job.result, job.done = self._take_frame(), True


def install(monkeypatch: Any, clock: Any) -> type[FakePicamera2]:
    """Make ``import picamera2`` give the fake, running on ``clock``; returns the class (reset)."""
    FakePicamera2.instances = []
    FakePicamera2.clock = clock
    monkeypatch.setattr(FakePicamera2, "has_cancel", True)
    monkeypatch.setattr(FakePicamera2, "fail_configure", "")
    monkeypatch.setattr(FakePicamera2, "open_error", None)
    monkeypatch.setattr(FakePicamera2, "modes", IMX708_WIDE_MODES)
    monkeypatch.setitem(__import__("sys").modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    return FakePicamera2
