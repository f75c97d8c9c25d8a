"""Segment manifests: the signed statement of what a segment holds. Format: docs/format.md."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..clock import iso_utc

FORMAT = "bodycam.segment/1"  # "audio" was added within it (docs/format.md 3.2): absent or null = no sound
TIME_BASE = 90_000  # MP4 ticks per second; frame pts are monotonic capture times in these ticks


def segment_stem(sequence: int) -> str:
    return f"seg-{sequence:010d}"


@dataclass(frozen=True)
class SegmentPaths:
    """Where one segment's files live; names carry only the sequence number, never client input."""

    directory: Path
    sequence: int

    @property
    def stem(self) -> str:
        return segment_stem(self.sequence)

    @property
    def media(self) -> Path:
        return self.directory / f"{self.stem}.mp4"

    @property
    def partial(self) -> Path:
        return self.directory / f"{self.stem}.mp4.partial"

    @property
    def manifest(self) -> Path:
        return self.directory / f"{self.stem}.json"

    @property
    def signature(self) -> Path:
        return self.directory / f"{self.stem}.sig"

    @property
    def journal(self) -> Path:
        return self.directory / f"{self.stem}.journal"


def stamp(utc_ns: int, mono_ns: int) -> dict[str, Any]:
    return {"utc": iso_utc(utc_ns), "utc_ns": utc_ns, "monotonic_ns": mono_ns}


@dataclass
class SegmentFacts:
    """Everything a manifest says, gathered while the segment is written (or re-derived on recovery)."""

    device_serial: str
    key_id: str
    officer_id: str
    recording_id: str
    segment_index: int
    sequence: int
    codec: str
    width: int
    height: int
    fps: float
    bitrate_kbps: int
    trigger: dict[str, Any]
    firmware_version: str
    clock: dict[str, Any]
    pre_event_seconds: float | None = None
    pre_event_configured_seconds: float | None = None
    pre_event_capped: bool | None = None  # the RAM cap, not the clock, cut the pre-roll short
    first_frame: dict[str, Any] | None = None
    last_frame: dict[str, Any] | None = None
    frame_count: int = 0
    dropped_frames: int = 0
    markers: list[dict[str, Any]] = field(default_factory=list)
    recovered: bool = False
    end_reason: str | None = None
    encoder: str = ""
    camera: dict[str, Any] | None = None  # the source's camera_info(); None if unknown (recovered)
    audio: dict[str, Any] | None = None   # the sound track (docs/format.md 3.2); None: recorded without sound

    def to_journal(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_journal(cls, header: dict[str, Any]) -> SegmentFacts:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in header.items() if k in known})


def render(facts: SegmentFacts, *, previous_manifest_sha256: str, media_name: str, media_sha256: str,
           media_size: int) -> bytes:
    """The exact bytes that get signed; key order is fixed so the same facts give the same bytes."""
    doc = {
        "format": FORMAT,
        "device_serial": facts.device_serial,
        "key_id": facts.key_id,
        "officer_id": facts.officer_id,
        "recording_id": facts.recording_id,
        "segment_index": facts.segment_index,
        "sequence": facts.sequence,
        "previous_manifest_sha256": previous_manifest_sha256,
        "media": {"file": media_name, "sha256": media_sha256, "size": media_size,
                  "container": "mp4 (fragmented)", "time_base": f"1/{TIME_BASE}"},
        "video": {"codec": facts.codec, "width": facts.width, "height": facts.height, "fps": facts.fps,
                  "bitrate_kbps": facts.bitrate_kbps, "encoder": facts.encoder},
        "first_frame": facts.first_frame,
        "last_frame": facts.last_frame,
        "frame_count": facts.frame_count,
        "dropped_frames": facts.dropped_frames,
        "trigger": facts.trigger,
        "pre_event_seconds": facts.pre_event_seconds,
        "pre_event_configured_seconds": facts.pre_event_configured_seconds,
        "pre_event_capped": facts.pre_event_capped,
        "markers": facts.markers,
        "recovered": facts.recovered,
        "end_reason": facts.end_reason,
        "firmware_version": facts.firmware_version,
        "clock": facts.clock,
        "camera": facts.camera,
        "audio": facts.audio,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()
