"""Clock offset against the backend, measured in the dock (backend-api.md section 2, ``/v1/time``).

offset = server ``utc_ns`` - the device's UTC at the middle of the round trip, from the sample with the
shortest round trip (the least queueing, so the best midpoint). The offset is always written to the
signed audit log (``clock_offset``), so footage recorded before the sync can be corrected afterwards:
NIST IR 8161 asks for clock-offset metadata, and the entry is that. The system clock is stepped only
when ``[offload] set_clock = true`` *and* the process may (root or CAP_SYS_TIME); otherwise the entry
says why not. Tests inject the setter.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clock import Clock, iso_utc
from ..storage.durable import atomic_write
from .client import BackendClient, Retryable

ClockSetter = Callable[[int], None]     # step the wall clock by this many nanoseconds
CAP_SYS_TIME = 25
STEP_THRESHOLD_NS = 100_000_000         # closer than 0.1 s: not worth a step (frames are 33 ms apart)
SAMPLES = 4


@dataclass(frozen=True)
class ClockOffset:
    offset_ns: int          # add to device time to get backend time
    rtt_ns: int
    server_utc_ns: int
    samples: int

    @property
    def offset_ms(self) -> float:
        return round(self.offset_ns / 1e6, 3)


def measure(client: BackendClient, clock: Clock, *, samples: int = SAMPLES) -> ClockOffset:
    """Best of ``samples`` round trips to ``GET /v1/time`` (unsigned: it is how signing gets its time)."""
    best: ClockOffset | None = None
    for _ in range(samples):
        t0_mono, t0_utc = clock.monotonic_ns(), clock.utc_ns()
        doc = client.get_json("/v1/time", signed=False)
        rtt = clock.monotonic_ns() - t0_mono
        server = doc.get("utc_ns")
        if not isinstance(server, int):
            raise Retryable(200, "bad_response", "/v1/time has no integer utc_ns")
        sample = ClockOffset(server - (t0_utc + rtt // 2), rtt, server, samples)
        if best is None or sample.rtt_ns < best.rtt_ns:
            best = sample
    assert best is not None
    return best


def _may_set_clock() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_TIME & 1)
    except OSError:
        pass
    return False


def system_clock_setter() -> ClockSetter | None:
    """A setter for CLOCK_REALTIME if this process may step it, else None."""
    if not _may_set_clock():
        return None

    def step(offset_ns: int) -> None:
        time.clock_settime_ns(time.CLOCK_REALTIME, time.clock_gettime_ns(time.CLOCK_REALTIME) + offset_ns)
    return step


def sync(client: BackendClient, clock: Clock, audit: Callable[..., Any], *, set_clock: bool,
         setter: ClockSetter | None) -> ClockOffset:
    """Measure, audit ``clock_offset``, step the clock if allowed; the client signs with server time after."""
    off = measure(client, clock)
    client.offset_ns = off.offset_ns
    if not set_clock:
        why = "set_clock = false"
    elif setter is None:
        why = "not permitted: setting the clock needs root or CAP_SYS_TIME"
    elif abs(off.offset_ns) < STEP_THRESHOLD_NS:
        why = f"within {STEP_THRESHOLD_NS // 1_000_000} ms"
    else:
        why = ""
    audit("clock_offset", offset_ms=off.offset_ms, rtt_ms=round(off.rtt_ns / 1e6, 3),
          server_utc=iso_utc(off.server_utc_ns), samples=off.samples, corrected=not why,
          **({"reason": why} if why else {}))
    if not why:
        assert setter is not None
        before, before_mono = clock.utc_ns(), clock.monotonic_ns()
        setter(off.offset_ns)
        stepped = (clock.utc_ns() - before) - (clock.monotonic_ns() - before_mono)
        client.offset_ns = off.offset_ns - stepped     # ~0 once the clock really moved
        audit("clock_set", from_utc=iso_utc(before), to_utc=iso_utc(clock.utc_ns()), step_ms=off.offset_ms)
    return off


def record(path: Path, off: ClockOffset, *, residual_ns: int, boot_id: str) -> None:
    """Keep the sync's result on disk, so every segment sealed after it carries the clock offset."""
    doc = {"last_sync_utc": iso_utc(off.server_utc_ns), "last_sync_utc_ns": off.server_utc_ns,
           "measured_offset_ms": off.offset_ms, "offset_ms": round(residual_ns / 1e6, 3),
           "rtt_ms": round(off.rtt_ns / 1e6, 3), "boot_id": boot_id}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
