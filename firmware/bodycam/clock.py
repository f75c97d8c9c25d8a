"""Injected time, so a 30-second behaviour can be tested without waiting 30 seconds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic_ns(self) -> int: ...

    def boottime_ns(self) -> int:
        """CLOCK_BOOTTIME: the clock libcamera's ``SensorTimestamp`` is documented to use."""
        ...

    def utc_ns(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks: CLOCK_MONOTONIC for ordering and intervals, CLOCK_REALTIME for UTC stamps, and
    CLOCK_BOOTTIME only to translate camera timestamps (capture/frame_time.py)."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def boottime_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def utc_ns(self) -> int:
        return time.time_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to (or when something sleeps on it)."""

    def __init__(self, *, utc_ns: int = 1_763_700_000_000_000_000, monotonic_ns: int = 1_000_000_000,
                 suspended_ns: int = 0) -> None:
        """``suspended_ns``: how far CLOCK_BOOTTIME runs ahead of CLOCK_MONOTONIC (time spent suspended)."""
        self._lock = threading.Lock()
        self._utc_offset = utc_ns - monotonic_ns
        self._mono = monotonic_ns
        self.suspended_ns = suspended_ns

    def monotonic_ns(self) -> int:
        with self._lock:
            return self._mono

    def boottime_ns(self) -> int:
        with self._lock:
            return self._mono + self.suspended_ns

    def utc_ns(self) -> int:
        with self._lock:
            return self._mono + self._utc_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += int(round(seconds * 1e9))

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def step_utc(self, seconds: float) -> None:
        """Jump the wall clock (as a dock time sync would) without touching monotonic time."""
        with self._lock:
            self._utc_offset += int(round(seconds * 1e9))


def iso_utc(utc_ns: int) -> str:
    """ISO 8601 UTC with milliseconds and a Z, the form used on watermarks and in manifests."""
    dt = datetime.fromtimestamp(utc_ns // 1_000_000_000, tz=UTC)
    ms = (utc_ns // 1_000_000) % 1000
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"
