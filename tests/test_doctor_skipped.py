"""`bodycam doctor` names every check it did not run, and why, in the text and in --json."""

from __future__ import annotations

import json
from pathlib import Path

from test_doctor import FakeCamera


def test_a_healthy_pi_camera_skips_only_the_camera_test(tmp_path: Path) -> None:
    report = FakeCamera(tmp_path).report()
    assert [name for name, _ in report.skipped] == ["camera test"]
    lines = report.render().splitlines()
    assert lines[-2].split()[:3] == ["skip", "camera", "test"] and "--camera-test" in lines[-2]
    assert lines[-1] == "all good"


def test_no_pi_camera_skips_the_camera_stack_and_says_why(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path)
    cam.write("etc/bodycam/device.toml", '[device]\nserial = "BC-0417"\n[camera]\nsource = "synthetic"\n')
    report = cam.report()
    assert dict(report.skipped)["camera stack"] == "[camera] source = 'synthetic', not the Pi camera"
    assert "skip  camera stack [camera] source = 'synthetic'" in report.render()


def test_without_a_config_every_later_check_is_listed_as_skipped(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path)
    (cam.root / "etc/bodycam/device.toml").unlink()
    report = cam.report()
    names = [name for name, _ in report.skipped]
    assert names[0] == "daemon" and names[-1] == "backend" and len(names) == 11
    assert all(why == "needs the device config (fix 'config' first)" for _, why in report.skipped)
    text = report.render()
    assert "  skip  11 checks   needs the device config (fix 'config' first):" in text.splitlines()
    assert "daemon, camera, camera stack, encoder, pins, key, certificate, enrolment," in text
    assert max(map(len, text.splitlines()[-4:])) <= 100
    doc = json.loads(report.to_json())
    assert doc["ok"] is False and [s["name"] for s in doc["skipped"]] == names
