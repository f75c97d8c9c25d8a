"""Admission control: a bound on concurrent uploads, answered with 503 + Retry-After when full.

Counted per upload, not per request: an admitted upload keeps its slot between PATCH chunks while it
makes progress, so a dock storm drains at full speed instead of thrashing; a slot held by a device
that went silent is freed after ``idle_seconds``. Per process; behind a load balancer each node
admits its own share.
"""

from __future__ import annotations

import threading
import time

from .errors import ApiError


class Admission:
    def __init__(self, *, limit: int, retry_after_s: int, idle_s: float) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.idle_s = idle_s
        self._active: dict[str, float] = {}
        self._lock = threading.Lock()
        self.refused = 0
        self.peak = 0

    def _expire(self, now: float) -> None:
        for uid in [u for u, t in self._active.items() if now - t > self.idle_s]:
            del self._active[uid]

    def busy(self) -> ApiError:
        return ApiError(
            503,
            "busy",
            f"the backend is at its limit of {self.limit} concurrent uploads; retry "
            f"after {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
            retry_after=self.retry_after_s,
        )

    def admit(self, upload_id: str) -> None:
        """Take (or refresh) a slot for this upload, or raise 503 busy."""
        now = time.monotonic()
        with self._lock:
            if upload_id in self._active:
                self._active[upload_id] = now
                return
            if len(self._active) >= self.limit:
                self._expire(now)
            if len(self._active) >= self.limit:
                self.refused += 1
                raise self.busy()
            self._active[upload_id] = now
            self.peak = max(self.peak, len(self._active))

    def release(self, upload_id: str) -> None:
        with self._lock:
            self._active.pop(upload_id, None)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)
