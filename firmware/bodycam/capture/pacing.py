"""Real-time plumbing every camera source shares: capture slots, drop accounting, and its lifecycle.

A camera produces a picture every 1/fps seconds whether or not anyone is ready for it. The sources
that have no camera (synthetic, file) reproduce that with a :class:`Pacer`; the ones with a camera
detect what the camera skipped with a :class:`GapCounter`. Either way a lost frame shows up as a gap
in ``Frame.index`` and in ``dropped``: footage that was never captured must be visible as such.
"""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..lifecycle import OpenOnce
from .frame import Frame


class Pacer:
    """Hands out capture slots at ``fps`` in real time on an injected clock.

    Slot ``i`` is due at ``t0 + i / fps``, where ``t0`` is the moment of the first ``wait_next``
    (not construction, so a slow start-up does not count as dropped frames). A consumer that is late
    by one or more whole slots gets the newest due slot; the ones in between are counted in
    ``dropped`` and never delivered, so a stall cannot turn into a burst of stale frames.
    """

    def __init__(self, fps: float, clock: Clock) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps!r}")
        self.fps = float(fps)
        self._clock = clock
        self._t0: int | None = None
        self._next = 0
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Slots skipped because the consumer was late."""
        return self._dropped

    @property
    def interval_ns(self) -> float:
        return 1e9 / self.fps

    def due_ns(self, slot: int) -> int:
        """Monotonic time at which ``slot`` is due (computed from ``t0``, so rounding never accumulates)."""
        if self._t0 is None:
            raise RuntimeError("the pacer has not started: call wait_next() first")
        return self._t0 + round(slot * 1e9 / self.fps)

    def wait_next(self) -> tuple[int, int]:
        """Sleep until the next slot is due; return ``(slot_index, slot_mono_ns)``."""
        now = self._clock.monotonic_ns()
        if self._t0 is None:
            self._t0 = now
        slot = self._next
        due = self.due_ns(slot)
        if now >= due:
            # Late: jump to the newest slot that is already due and account for the ones passed over.
            newest = max(slot, int((now - self._t0) * self.fps // 1e9))
            while self.due_ns(newest + 1) <= now:
                newest += 1
            while newest > slot and self.due_ns(newest) > now:
                newest -= 1
            self._dropped += newest - slot
            slot, due = newest, self.due_ns(newest)
        else:
            while now < due:
                self._clock.sleep((due - now) / 1e9)
                now = self._clock.monotonic_ns()
        self._next = slot + 1
        return slot, due


class GapCounter:
    """Counts frames a real camera skipped, from gaps between consecutive frame timestamps.

    A gap longer than 1.5 nominal intervals means at least one frame is missing; ``update`` returns
    how many slots the frame index must advance (1 for an on-time frame), so indices stay in step
    with time as they do for paced sources.
    """

    def __init__(self, fps: float) -> None:
        self.interval_ns = 1e9 / float(fps)
        self._last_ns: int | None = None
        self.dropped = 0

    def update(self, timestamp_ns: int) -> int:
        last, self._last_ns = self._last_ns, timestamp_ns
        if last is None:
            return 1
        gap = timestamp_ns - last
        if gap <= 1.5 * self.interval_ns:
            return 1
        missing = max(1, round(gap / self.interval_ns) - 1)
        self.dropped += missing
        return missing + 1


def utc_at(clock: Clock, mono_ns: int) -> int:
    """Wall-clock time at monotonic instant ``mono_ns`` (a slot's due time may lie slightly in the past)."""
    return clock.utc_ns() - (clock.monotonic_ns() - mono_ns)


class SourceBase(OpenOnce):
    """A camera's lifecycle (lifecycle.py).

    Subclasses implement ``_open``, ``_read``, ``_close`` (which must cope with a half-done ``_open``) and
    ``_dropped``. ``read`` holds the lifecycle's lock, so a control thread may close a source while a
    capture thread is reading from it: ``close`` waits for the frame in progress (at most one frame
    interval), and the next ``read`` returns ``None``.
    """

    width: int
    height: int
    fps: float

    def __init__(self, width: int, height: int, fps: float) -> None:
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"bad source geometry {width}x{height} @ {fps} fps")
        super().__init__()
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)

    def _read(self) -> Frame | None:
        raise NotImplementedError

    def _dropped(self) -> int:
        raise NotImplementedError

    @property
    def dropped(self) -> int:
        """Frames lost because the consumer (or the camera) fell behind real time."""
        return self._dropped()

    def camera_info(self) -> dict[str, Any]:
        """What the manifest's ``camera`` object says about this source (docs/format.md, section 3.1).

        ``source`` names the kind; ``frame_times`` says where frame times come from. Subclasses add
        what is meaningful for them (sensor, mode, crop for a real camera).
        """
        return {"source": "unknown", "frame_times": {"method": "delivery"}}

    def read(self) -> Frame | None:
        """Block until the next frame is due and return it; ``None`` once ended or closed."""
        with self._lock:
            return self._read() if self._readable() else None
