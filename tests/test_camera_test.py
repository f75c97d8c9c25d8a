"""`bodycam doctor --camera-test` end to end, and the manifest's `camera` object it reads back.

Real recordings (real encoder, real files, real signatures, real decoding) with the synthetic source
and with the fake picamera2 (tests/fake_picamera2.py) on the real clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bodycam import cli
from bodycam.camera_test import check_recording
from bodycam.clock import SystemClock
from bodycam.doctor import FAIL
from bodycam.verify import verify_paths
from fake_picamera2 import install


def write_config(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(f"""
[device]
serial = "BC-TEST-0001"
data_dir = "{tmp_path / 'device-data'}"
[camera]
source = "{source}"
width = 640
height = 360
fps = 30
[recording]
segment_seconds = 1
[buffer]
pre_event_seconds = 1
""")
    return path


def camera_test(config: Path, capsys: pytest.CaptureFixture[str], seconds: float = 1.5) -> tuple[int, list[str]]:
    rc = cli.main(["doctor", "--config", str(config), "--camera-test", "--seconds", str(seconds)])
    out = capsys.readouterr().out.splitlines()
    return rc, [" ".join(line.split()) for line in out[1:]]  # whitespace-normalised result lines


def test_camera_test_with_the_synthetic_source(tmp_path, capsys) -> None:
    config = write_config(tmp_path, "synthetic")
    rc, lines = camera_test(config, capsys)
    assert rc == 0, lines
    assert [line.split()[:2] for line in lines] == [["warn", "camera"], ["ok", "encoder"], ["ok", "fps"],
                                                    ["ok", "dropped"], ["ok", "frame"], ["ok", "verify"]]
    assert lines[0] == "warn camera synthetic test pattern (no sensor); set [camera] source = 'picamera2' on a camera"
    assert lines[1] == "ok encoder h264 by libx264 (software), 640x360, 6000 kbit/s"
    fps = float(lines[2].split()[2])
    assert 28.5 <= fps <= 31.5
    assert lines[3] == "ok dropped 0 frames (0.0%)"
    assert lines[4] == "ok frame times capture slots of a paced source (no sensor)"
    assert lines[5].startswith("ok verify ok: ") and lines[5].endswith(" frames decoded")
    assert not (tmp_path / "device-data").exists()  # the test never touches the device's evidence


def test_camera_test_with_the_fake_picamera2(tmp_path, capsys, monkeypatch) -> None:
    install(monkeypatch, SystemClock())
    config = write_config(tmp_path, "picamera2")
    rc, lines = camera_test(config, capsys)
    assert rc == 0, lines
    assert lines[0] == ("ok camera imx708_wide, sensor mode 2304x1296 10-bit (full-fov), crop 4608x2592 at (0,0), "
                        "field of view 100% x 100% of the sensor")
    assert lines[4] == "ok frame times sensor timestamps (exposure time, not delivery), no fallbacks"
    assert lines[5].startswith("ok verify ok: ")


def test_camera_test_reports_the_cropped_view_picamera2_would_choose(tmp_path, capsys, monkeypatch) -> None:
    install(monkeypatch, SystemClock())
    config = write_config(tmp_path, "picamera2")
    config.write_text(config.read_text().replace('source = "picamera2"', 'source = "picamera2"\nsensor_mode = "auto"'))
    rc, lines = camera_test(config, capsys, seconds=1.0)
    assert rc == 0
    assert lines[0] == ("ok camera imx708_wide, sensor mode 1536x864 10-bit (auto), crop 3072x1728 at (768,432), "
                        "field of view 67% x 67% of the sensor")


def test_a_busy_camera_fails_the_camera_test_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    fake = install(monkeypatch, SystemClock())
    monkeypatch.setattr(fake, "open_error", RuntimeError("Failed to acquire camera: Device or resource busy"))
    rc, lines = camera_test(write_config(tmp_path, "picamera2"), capsys)
    assert rc == 1
    assert lines == ["FAIL camera nothing recorded: cannot open camera 0: Failed to acquire camera: Device or "
                     "resource busy (is another program using it?)"]


def test_a_camera_fault_fails_the_camera_test(tmp_path) -> None:
    (tmp_path / "segments").mkdir()
    lines = check_recording(tmp_path, fps=30, faults=["camera delivered no frame in 3 tries of 2 s"])
    assert [(line.status, line.name) for line in lines] == [(FAIL, "camera")]
    assert "camera delivered no frame" in lines[0].detail


def test_the_signed_manifest_records_the_camera(tmp_path, capsys, monkeypatch) -> None:
    """`bodycam record` with the fake picamera2: the camera object is in every manifest, and verifies."""
    install(monkeypatch, SystemClock())
    config = write_config(tmp_path, "picamera2")
    data = tmp_path / "device-data"
    assert cli.main(["keygen", "--config", str(config)]) == 0
    assert cli.main(["record", "--config", str(config), "--wait", "0.5", "--seconds", "1.2"]) == 0
    manifests = [json.loads(p.read_text()) for p in sorted((data / "segments").glob("seg-*.json"))]
    assert manifests
    for m in manifests:
        cam = m["camera"]
        assert cam["source"] == "picamera2" and cam["sensor"] == "imx708_wide"
        assert cam["sensor_mode"] == {"size": [2304, 1296], "bit_depth": 10}
        assert cam["crop"] == [0, 0, 4608, 2592] and cam["pixel_array"] == [4608, 2592]
        assert cam["field_of_view"] == {"width": 1.0, "height": 1.0}
        assert cam["frame_times"] == {"method": "sensor_timestamp", "fallbacks": 0}
        added = ["clock", "camera", "audio"] if "audio" in m else ["clock", "camera"]
        assert list(m)[-len(added):] == added  # added at the end, in order: older fields keep their place
    assert verify_paths([data], decode=True).ok
