"""The pre-event buffer's RAM cap against its seconds: refused at config load when it cannot hold them,
sized automatically by default, and, if a scene still outruns it, said in the status, the audit log
and the manifest (real encoder, recorder and device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bodycam import config as configmod
from bodycam.errors import ConfigError
from rig import small_config


def test_a_cap_too_small_for_the_seconds_is_refused_with_the_size_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        configmod.from_dict({"buffer": {"pre_event_seconds": 30, "max_megabytes": 4},
                             "encoder": {"bitrate_kbps": 6000}})
    msg = str(e.value)
    assert msg.startswith("[buffer] max_megabytes = 4 holds only about ")
    assert "of the 30 s pre_event_seconds at [encoder] bitrate_kbps = 6000: set it to at least 35" in msg
    with pytest.raises(ConfigError, match="set it to at least 136"):  # the allowed 120 s need more than 64 MB
        configmod.from_dict({"buffer": {"pre_event_seconds": 120, "max_megabytes": 64}})


def test_the_default_cap_is_sized_from_bitrate_and_seconds() -> None:
    cfg = configmod.from_dict({"buffer": {"pre_event_seconds": 120}, "encoder": {"bitrate_kbps": 6000}})
    assert cfg.buffer.max_megabytes == 0
    assert cfg.buffer.cap_bytes(cfg.encoder) == int(6000 * 1000 / 8 * (120 + 1) * 1.5)
    explicit = configmod.from_dict({"buffer": {"pre_event_seconds": 10, "max_megabytes": 100}})
    assert explicit.buffer.cap_bytes(explicit.encoder) == 100_000_000


def test_shipped_configs_hold_their_seconds() -> None:
    root = Path(__file__).resolve().parents[1] / "config"
    paths = [root / "device.toml", root / "sim.toml", *sorted((root / "scenarios").glob("*-device.toml"))]
    assert len(paths) >= 3 and all(p.exists() for p in paths)
    for path in paths:
        cfg = configmod.load(path)  # raises if a cap could not hold the configured seconds
        # and it really holds them: the seconds at the configured bitrate, plus a GOP, fit under the cap
        need = cfg.encoder.bitrate_kbps * 1000 / 8 * (cfg.buffer.pre_event_seconds + cfg.encoder.gop_seconds)
        assert cfg.buffer.cap_bytes(cfg.encoder) >= need, path.name


def test_a_scene_that_outruns_the_cap_is_in_status_audit_and_manifest(tmp_path: Path, mock_factory) -> None:
    from bodycam.clock import ManualClock
    from bodycam.daemon.machine import StateMachine
    from bodycam.device import RecordingDevice
    from bodycam.evidence.signer import generate_key
    from test_daemon import FakeIndicators, wait_until

    cfg = small_config(tmp_path / "dev", buffer={"pre_event_seconds": 3})
    generate_key(cfg.key_path)
    dev = RecordingDevice(cfg)
    dev.prebuffer.max_bytes = 60_000  # as if the scene ran far above the bitrate the cap was sized for
    machine = StateMachine(dev, FakeIndicators(), clock=ManualClock())
    try:
        machine.boot()
        wait_until(lambda: machine.status()["buffer_capped"], what="the cap to bite")
        machine.on_gesture("record", "double")
        assert machine.state == "recording"
        wait_until(lambda: dev.recorder.segments_sealed or dev.recorder.recording_id, what="recording")
        machine.on_gesture("record", "hold")
        wait_until(lambda: dev.recorder.segments_sealed >= 1 and dev.recorder.recording_id is None,
                   what="sealed")
    finally:
        machine.shutdown("test")
    first = json.loads(sorted((tmp_path / "dev" / "segments").glob("seg-*.json"))[0].read_text())
    assert first["pre_event_capped"] is True
    assert first["pre_event_seconds"] < first["pre_event_configured_seconds"] == 3
    entries = [json.loads(json.loads(line)["entry"]) for line in
               (tmp_path / "dev" / "audit" / "audit.log").read_text().splitlines()]
    capped = [e for e in entries if e["event"] == "pre_event_capped"]
    assert capped and capped[0]["data"]["configured_seconds"] == 3 and capped[0]["data"]["max_bytes"] == 60_000
