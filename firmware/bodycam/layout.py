"""Where things live in a device data directory (documented in docs/format.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def segments(self) -> Path:
        return self.root / "segments"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def chain(self) -> Path:
        return self.state / "chain.json"

    @property
    def clock_sync(self) -> Path:
        """The last dock time sync: what manifests report as their clock status."""
        return self.state / "clock.json"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit" / "audit.log"

    @property
    def device(self) -> Path:
        return self.root / "device"

    def create(self) -> None:
        for d in (self.segments, self.state, self.audit_log.parent):
            d.mkdir(parents=True, exist_ok=True)
