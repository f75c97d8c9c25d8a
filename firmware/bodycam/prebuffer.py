"""The pre-event buffer: the last N seconds of encoded video, kept in RAM as whole GOPs.

Unlike a byte ring that is cut anywhere, it only ever drops a whole GOP from its head, so it
always starts on a keyframe, and it keeps one GOP *more* than needed: the head keyframe is at or
before ``newest - seconds``, so a recording taken from it covers at least the configured seconds
(not "up to one GOP less"). A second bound in bytes stops a complex scene from exhausting RAM.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from .encode.packet import EncodedPacket


class PreEventBuffer:
    def __init__(self, *, seconds: float, max_bytes: int,
                 on_capped: Callable[[float], None] | None = None) -> None:
        """``on_capped(held_seconds)``: called (outside the lock) when the byte bound starts cutting
        into the configured seconds, once per stretch of capping; the config check makes it rare."""
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._gops: deque[list[EncodedPacket]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._on_capped = on_capped
        self.discarded_gops = 0  # dropped for the byte bound: pre-roll shorter than configured
        self.capped = False      # the byte bound holds the buffer below the configured seconds now

    def __len__(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._gops)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def duration_s(self) -> float:
        """Seconds of video held, first frame to last."""
        with self._lock:
            if not self._gops:
                return 0.0
            return (self._gops[-1][-1].mono_ns - self._gops[0][0].mono_ns) / 1e9

    def push(self, packet: EncodedPacket) -> None:
        with self._lock:
            if self.seconds <= 0:
                return
            if packet.keyframe:
                self._gops.append([packet])
            elif self._gops:
                self._gops[-1].append(packet)
            else:
                return  # never start on a partial GOP
            self._bytes += packet.size
            started_capping = self._trim(packet.mono_ns)
            held = self._held_s()
        if started_capping and self._on_capped is not None:
            self._on_capped(held)

    def _trim(self, newest_ns: int) -> bool:
        """Apply both bounds; True if the byte bound has just begun to cut into the configured seconds."""
        horizon = newest_ns - int(self.seconds * 1e9)
        while len(self._gops) > 1 and self._gops[1][0].mono_ns <= horizon:
            self._drop_head()
        cut = False
        while self._bytes > self.max_bytes and self._gops:
            self._drop_head()
            self.discarded_gops += 1
            cut = True
        if cut and not self.capped:
            self.capped = True
            return True
        return False

    def _held_s(self) -> float:
        return (self._gops[-1][-1].mono_ns - self._gops[0][0].mono_ns) / 1e9 if self._gops else 0.0

    def _drop_head(self) -> None:
        gop = self._gops.popleft()
        self._bytes -= sum(p.size for p in gop)

    def take(self, trigger_ns: int) -> list[EncodedPacket]:
        """Empty the buffer, returning packets from the last keyframe at or before trigger - seconds.

        If the buffer holds less than that (just booted, or the byte bound bit), everything it has.
        """
        with self._lock:
            start = trigger_ns - int(self.seconds * 1e9)
            gops = list(self._gops)
            self._gops.clear()
            self._bytes = 0
            self.capped = False
        first = 0
        for i, gop in enumerate(gops):
            if gop[0].mono_ns <= start:
                first = i
        return [p for gop in gops[first:] for p in gop]

    def clear(self) -> None:
        with self._lock:
            self._gops.clear()
            self._bytes = 0
            self.capped = False
