"""Manifests carry the dock's clock sync (NIST IR 8161 clock-offset metadata)."""

from __future__ import annotations

import json

from bodycam.device import RecordingDevice, boot_id
from bodycam.evidence.signer import generate_key
from bodycam.offload.clocksync import ClockOffset, record
from rig import small_config


def test_clock_status_reports_the_sync_of_this_boot_only(tmp_path) -> None:
    cfg = small_config(tmp_path / "data")
    generate_key(cfg.key_path)
    dev = RecordingDevice(cfg)
    try:
        assert dev.clock_status() == {"status": "unsynced"}
        off = ClockOffset(offset_ns=1_234_000_000, rtt_ns=2_000_000, server_utc_ns=1_795_000_000_000_000_000,
                          samples=3)
        record(dev.layout.clock_sync, off, residual_ns=1_000_000, boot_id=boot_id())
        status = dev.clock_status()
        assert status["status"] == "synced"
        assert status["measured_offset_ms"] == 1234.0 and status["offset_ms"] == 1.0
        assert status["last_sync_utc"].endswith("Z")
        # a sync from another boot does not vouch for this boot's clock
        doc = json.loads(dev.layout.clock_sync.read_text())
        dev.layout.clock_sync.write_text(json.dumps(doc | {"boot_id": "another-boot"}))
        status = dev.clock_status()
        assert status["status"] == "unsynced" and status["previous_boot_sync"]["measured_offset_ms"] == 1234.0
    finally:
        dev.audit.close()
