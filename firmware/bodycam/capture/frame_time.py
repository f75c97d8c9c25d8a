"""Frame times from the camera's own timestamps, mapped onto the firmware's clock.

A frame delivered by picamera2 is already old: exposure, readout, ISP and queueing take a frame or
two. Stamping it at delivery would make every burned-in and manifest UTC time late by that latency.
libcamera instead gives each request a ``SensorTimestamp`` (ns, documented as CLOCK_BOOTTIME; the
Pi's capture drivers stamp the start of frame). We translate it with one measurement per frame:

    age = boottime_now - SensorTimestamp        (how long ago the sensor captured it)
    frame mono = monotonic_now - age,  frame utc = utc_now - age

The three "now" readings are taken together at delivery, so the translation needs no long-lived
offset and follows a wall-clock step at once, like every other stamp the firmware makes.

How the mapping is checked: ``age`` must be >= 0 (a frame cannot come from the future) and at most
``max_age_frames`` frame intervals (what buffering can explain), and frame times must increase. An
age outside that means the timestamp is not in the clock domain we assume (a different libcamera or
kernel, a driver that stamps CLOCK_MONOTONIC after a suspend, a bogus value): the frame then falls
back to its delivery time, a warning is logged, and ``fallbacks`` counts it so the manifest's
``camera.frame_times`` says how many frames were stamped at delivery instead.

Note: picamera2 itself compares ``SensorTimestamp`` with ``time.monotonic_ns()`` (picamera2.py,
``wait_for_timestamp_``); on a Pi, which never suspends, CLOCK_BOOTTIME and CLOCK_MONOTONIC are equal,
so both readings agree there, and the check above catches any machine where they do not. picamera2
itself reads no wall-clock metadata for frames (its camera-sync examples read ``SyncTimer`` only), so
nothing here depends on one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameTime:
    mono_ns: int
    utc_ns: int
    from_sensor: bool  # False: fell back to delivery time


class SensorTimeMapper:
    """Maps ``SensorTimestamp`` values (CLOCK_BOOTTIME ns) to the firmware's monotonic and UTC time."""

    def __init__(self, clock: Clock, fps: float, *, max_age_frames: float = 6.0) -> None:
        self._clock = clock
        self.max_age_ns = int(max_age_frames * 1e9 / fps)
        self.mapped = 0
        self.fallbacks = 0
        self.last_problem: str | None = None
        self._last_mono: int | None = None

    def map(self, sensor_ns: int | None) -> FrameTime:
        """Time of the frame the sensor stamped ``sensor_ns``, or its delivery time if that is implausible."""
        boot, mono, utc = self._clock.boottime_ns(), self._clock.monotonic_ns(), self._clock.utc_ns()
        problem = None
        if sensor_ns is None:
            problem = "the camera gave no SensorTimestamp"
        else:
            age = boot - int(sensor_ns)
            if age < 0:
                problem = f"SensorTimestamp is {-age / 1e6:.1f} ms in the future of CLOCK_BOOTTIME"
            elif age > self.max_age_ns:
                problem = (f"SensorTimestamp is {age / 1e6:.1f} ms old, more than {self.max_age_ns / 1e6:.0f} ms "
                           "(a few frame intervals)")
            elif self._last_mono is not None and mono - age <= self._last_mono:
                problem = "SensorTimestamp did not advance"
            else:
                self.mapped += 1
                self._last_mono = mono - age
                return FrameTime(mono - age, utc - age, True)
        self.fallbacks += 1
        self.last_problem = problem
        if self.fallbacks == 1 or self.fallbacks % 300 == 0:
            log.warning("frame stamped at delivery, not by the sensor: %s (%d such frames so far)",
                        problem, self.fallbacks)
        mono = max(mono, (self._last_mono or 0) + 1)
        self._last_mono = mono
        return FrameTime(mono, utc, False)

    def summary(self) -> dict[str, object]:
        """What the manifest's ``camera.frame_times`` says: the method and how often it fell back."""
        return {"method": "sensor_timestamp", "fallbacks": self.fallbacks}
