"""The composition root: builds the recording stack from a config, with every seam injectable.

Tests and the simulator pass a ManualClock, a synthetic source, an in-memory free-space probe or
another signer; the daemon on a Pi passes nothing and gets the real ones.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from .audio.chain import AudioChain
from .audio.chunk import AudioSource
from .audio.factory import open_audio
from .capture.factory import open_source
from .capture.frame import CameraSource
from .clock import Clock, SystemClock
from .config import Config
from .encode import H264Encoder, make_encoder
from .evidence.audit import AuditLog
from .evidence.chain import ChainState
from .evidence.sealer import Sealer
from .evidence.signer import FileKeySigner, Signer
from .layout import DataLayout
from .pipeline import Pipeline
from .prebuffer import PreEventBuffer
from .recorder import Recorder
from .recovery import Recovered, recover
from .segments.writer import AudioFormat
from .storage.reserve import FreeBytes, StorageGuard, statvfs_free
from .watermark import Watermarker

log = logging.getLogger(__name__)

CLOCK_PLAUSIBLE_AFTER_NS = 1_735_689_600 * 1_000_000_000  # 2025-01-01: earlier means no RTC, no sync


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(uuid.uuid4())


class RecordingDevice:
    """Source, encoder, buffer, recorder and audit log for one data directory."""

    def __init__(self, config: Config, *, clock: Clock | None = None, source: CameraSource | None = None,
                 signer: Signer | None = None, free_bytes: FreeBytes = statvfs_free,
                 offline: bool = False, encoder: H264Encoder | None = None,
                 audio_source: AudioSource | None = None) -> None:
        """``offline``: the source is not live (a replay), so a slow encoder makes it wait, not drop.

        ``encoder``: by default the one ``[encoder] codec`` picks on this machine (``make_encoder``);
        it is opened in ``start()``, so an encoder that cannot open is a fault the daemon shows.
        """
        self.config = config
        self.clock = clock or SystemClock()
        self.layout = DataLayout(config.data_dir)
        self.layout.create()
        self.signer = signer or FileKeySigner.load(config.key_path)
        self.faults: list[str] = []
        self.chain = ChainState(self.layout.chain)
        self._boot_id = boot_id()
        self.audit = AuditLog(self.layout.audit_log, signer=self.signer, clock=self.clock,
                              boot_id=self._boot_id)
        self.sealer = Sealer(signer=self.signer, chain=self.chain)
        self.storage = StorageGuard(self.layout.root,
                                    reserve_bytes=int(config.storage.reserve_megabytes * 1_000_000),
                                    free_bytes=free_bytes)
        self.recovered: list[Recovered] = recover(self.layout.segments, chain=self.chain, sealer=self.sealer,
                                                  serial=config.device.serial)
        for r in self.recovered:
            self.audit.append("segment_recovered", sequence=r.sequence, recording_id=r.recording_id,
                              frames=r.frames, bytes_kept=r.bytes_kept, bytes_cut=r.bytes_cut)
        cam = config.camera
        self.source = source or open_source(cam, self.clock)
        self.encoder = encoder or make_encoder(config)
        self.audio: AudioChain | None = open_audio(config, self.clock, audio_source)
        audio_format = (AudioFormat(self.audio.encoder.codec_name, self.audio.rate, self.audio.encoder.channels,
                                    self.audio.encoder.extradata) if self.audio else None)
        watermark = (Watermarker(config.watermark, serial=config.device.serial,
                                 officer_id=config.device.officer_id)
                     if config.watermark.enabled else None)
        self.prebuffer = PreEventBuffer(seconds=config.buffer.pre_event_seconds,
                                        max_bytes=config.buffer.cap_bytes(config.encoder),
                                        on_capped=self._prebuffer_capped)
        self.recorder = Recorder(config=config, layout=self.layout, sealer=self.sealer, chain=self.chain,
                                 storage=self.storage, clock=self.clock,
                                 codec=self.encoder.codec_name,
                                 clock_status=self.clock_status, camera_info=self._camera_info,
                                 events=self._event, audio=audio_format, audio_info=self._audio_info)
        self.pipeline = Pipeline(source=self.source, encoder=self.encoder, watermarker=watermark,
                                 prebuffer=self.prebuffer, recorder=self.recorder, clock=self.clock,
                                 on_fault=self._fault, drop_when_behind=not offline,
                                 audio=self.audio, pre_event_audio=config.audio.pre_event_audio,
                                 on_audio_fault=self._audio_fault)
        self._closed = False

    def clock_status(self) -> dict[str, Any]:
        """What manifests say about the clock (NIST IR 8161 clock-offset metadata).

        "synced" after a dock time sync in this boot, with the offset measured against the backend
        and what was left after any correction; a sync from an earlier boot is reported but does not
        vouch for a clock that has run (or been reset) since.
        """
        if self.clock.utc_ns() < CLOCK_PLAUSIBLE_AFTER_NS:
            return {"status": "not_set"}
        try:
            sync = json.loads(self.layout.clock_sync.read_text())
        except (OSError, ValueError):
            return {"status": "unsynced"}
        last = {k: sync.get(k) for k in ("last_sync_utc", "measured_offset_ms", "offset_ms")}
        if sync.get("boot_id") == self._boot_id:
            return {"status": "synced", **last}
        return {"status": "unsynced", "previous_boot_sync": last}

    def _camera_info(self) -> dict[str, Any]:
        """The manifest's ``camera`` object: what the source says about itself (docs/format.md 3.1)."""
        info = getattr(self.source, "camera_info", None)
        return dict(info()) if info else {"source": type(self.source).__name__}

    def _audio_info(self) -> dict[str, Any]:
        """The manifest's description of the sound track with the microphone's counters so far."""
        return {**self.audio.describe(), **self.audio.counters()} if self.audio else {}

    def _event(self, event: str, **data: Any) -> None:
        self.audit.append(event, **data)

    def _prebuffer_capped(self, held_seconds: float) -> None:
        """The byte cap cut the pre-event buffer below its seconds (a scene far above the bitrate)."""
        buf = self.config.buffer
        log.warning("pre-event buffer capped at %d bytes: holds %.1f s of the configured %g s",
                    self.prebuffer.max_bytes, held_seconds, buf.pre_event_seconds)
        self.audit.append("pre_event_capped", held_seconds=round(held_seconds, 3),
                          configured_seconds=buf.pre_event_seconds, max_bytes=self.prebuffer.max_bytes)

    def _audio_fault(self, message: str) -> None:
        log.error("%s; recording goes on without sound", message)
        self.audit.append("audio_fault", message=message)

    def audio_status(self) -> dict[str, Any] | None:
        """What the status (and the simulator's panel) says about sound; None without a microphone."""
        if self.audio is None:
            return None
        s = self.pipeline.snapshot()
        level = s.audio_level_dbfs
        return {"source": self.config.audio.source, "pre_event_audio": self.config.audio.pre_event_audio,
                "level_dbfs": round(level, 1) if level is not None else None, "recording": s.audio_recording,
                "xruns": s.audio_xruns, "missing_samples": s.audio_missing_samples,
                "fault": self.pipeline.audio_fault}

    def _fault(self, message: str) -> None:
        self.faults.append(message)
        self.audit.append("fault", message=message)

    def start(self) -> None:
        enc = self.encoder
        # A line torn by a power cut was cut off when the log was opened: say so, signed, with its size.
        torn = {"audit_torn_bytes_cut": self.audit.repaired_bytes} if self.audit.repaired_bytes else {}
        self.audit.append("power_on", serial=self.config.device.serial, config=self.config.source_path,
                          encoder=f"{enc.description}: {enc.reason}" if enc.reason else enc.description, **torn)
        a = self.config.audio
        self.audit.append("buffering_start", pre_event_seconds=self.config.buffer.pre_event_seconds,
                          audio=a.source, pre_event_audio=a.pre_event_audio if self.audio else None)
        self.pipeline.start()

    def close(self, reason: str = "shutdown") -> None:
        if self._closed:
            return
        self._closed = True
        self.pipeline.close(reason)
        self.audit.append("power_off", reason=reason)
        self.audit.close()

    def __enter__(self) -> RecordingDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
