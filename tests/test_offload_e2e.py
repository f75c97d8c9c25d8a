"""The whole dock path with real processes: `bodycam enrol`, the real daemon (`bodycam run`, mock pins)
recording a clip with a marker, `bodycam dock`, uploads to a real backend with progress in `bodycam
status`, verified receipts, local deletion, `bodycam backend export`, and offline `bodycam verify` of
both the export and the device directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from backendkit import BackendProcess
from bodycam.daemon.control import ControlError, request, socket_path
from bodycam.evidence.signer import generate_key
from bodycam.verify import verify_paths

BODYCAM = [sys.executable, "-m", "bodycam.cli"]

DEVICE = """
[device]
serial = "BC-E2E-0001"
officer_id = "PC-4711"
data_dir = "data"
[camera]
width = 160
height = 120
fps = 10
[encoder]
bitrate_kbps = 300
[buffer]
pre_event_seconds = 1
[recording]
segment_seconds = 1
[storage]
reserve_megabytes = 0
[offload]
backend_url = "{url}"
chunk_bytes = 16384
max_backoff_seconds = 1.0
"""


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BODYCAM, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})


def status(data: Path) -> dict[str, Any]:
    return request(socket_path(data), {"cmd": "status"})


def wait_until(cond, *, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except ControlError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def audit(data: Path) -> list[dict[str, Any]]:
    lines = (data / "audit" / "audit.log").read_text().splitlines()
    return [json.loads(json.loads(line)["entry"]) for line in lines]


@pytest.mark.slow
def test_record_dock_upload_receipt_free_export_and_verify_offline(tmp_path: Path) -> None:
    backend = BackendProcess(tmp_path / "backend")
    backend.cli("init")
    backend.start()
    cfg = tmp_path / "device.toml"
    cfg.write_text(DEVICE.format(url=backend.url))
    data = tmp_path / "data"
    proc = None
    try:
        generate_key(data / "device" / "key.pem")
        # enrolment: refused with a bad token (one line), then enrolled, then idempotent
        bad = cli("enrol", "--config", str(cfg), "--token", "bce_nonsense")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "enrol_token_invalid" in bad.stderr
        token = backend.enrol_token("BC-E2E-0001")
        r = cli("enrol", "--config", str(cfg), "--token", token)
        assert r.returncode == 0 and "enrolled BC-E2E-0001" in r.stdout, r.stderr
        r = cli("enrol", "--config", str(cfg))
        assert r.returncode == 0 and r.stdout.startswith("already enrolled"), r.stdout + r.stderr
        cert = data / "device" / "device.cert.pem"
        assert cert.exists() and (data / "device" / "backend" / "backend.pub.pem").exists()

        with open(tmp_path / "daemon.log", "w") as log:
            proc = subprocess.Popen([*BODYCAM, "run", "--config", str(cfg)], stdout=log,
                                    stderr=subprocess.STDOUT,
                                    env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})
        wait_until(lambda: status(data)["state"] == "buffering", timeout=30, what="buffering")
        s = status(data)
        assert s["offload"]["phase"] == "idle" and s["offload"]["enrolled"] is True
        wait_until(lambda: status(data)["buffer_seconds"] >= 1.0, timeout=30, what="a full pre-event buffer")
        assert "start_recording" in cli("press", "double", "--config", str(cfg)).stdout
        time.sleep(1.0)
        assert "marker" in cli("press", "single", "--config", str(cfg)).stdout
        # two 1 s segments sealed (not a guessed sleep): the dock seals the third
        wait_until(lambda: len(list((data / "segments").glob("seg-*.json"))) >= 2, timeout=30,
                   what="two sealed segments")
        # dock while recording: the recording stops, buffering stops, the upload starts by itself
        r = cli("dock", "--config", str(cfg))
        assert r.returncode == 0 and "state docked" in r.stdout
        wait_until(lambda: status(data)["offload"]["phase"] == "done", timeout=40, what="upload done")
        s = status(data)
        off = s["offload"]
        segs = sorted((data / "receipts").glob("seg-*.receipt.json"))
        assert len(segs) >= 3 and off["uploaded"] == len(segs) and off["pending"] == 0
        assert off["bytes_done"] == off["bytes_total"] > 0 and off["last_error"] is None
        assert off["backend_reachable"] is True and abs(off["clock_offset_ms"]) < 1000
        assert off["last_receipt"]["sequence"] in [int(p.name[4:14]) for p in segs]
        assert s["buffer_seconds"] == 0, "no buffering while docked"
        assert not list((data / "segments").glob("seg-*")), "freed after verified receipts"
        shown = cli("status", "--config", str(cfg))
        assert "offload:" in shown.stdout and "done" in shown.stdout, shown.stdout
        entries = audit(data)
        events = [e["event"] for e in entries]
        for ev in ("dock", "buffering_stop", "clock_offset", "upload_start", "segment_offloaded",
                   "upload_done"):
            assert ev in events, ev
        offloaded = {e["data"]["sequence"] for e in entries if e["event"] == "segment_offloaded"}
        sealed = {e["data"]["sequence"] for e in entries if e["event"] == "segment_sealed"}
        assert offloaded == sealed

        assert "undocked" in cli("undock", "--config", str(cfg)).stdout
        wait_until(lambda: status(data)["state"] == "buffering", timeout=10, what="buffering again")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc = None

        # offline verification of the device directory: freed segments are accounted for
        report = verify_paths([data])
        assert report.ok, report.render_text()
        # export from the backend, verified offline against the enrolled certificate
        rid = json.loads(json.loads(segs[0].read_text())["receipt"])["recording_id"]
        out = tmp_path / "export"
        r = backend.cli("export", rid, "--out", str(out))
        assert "exported" in r.stdout
        v = cli("verify", str(out), "--key", str(out / "BC-E2E-0001.cert.pem"))
        assert v.returncode == 0 and "verify: OK" in v.stdout, v.stdout + v.stderr
        assert (out / "audit.log").exists(), "the device's audit log reached the backend"
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        backend.stop()


DOCK_SCENARIO = """
[scenario]
name = "dock"
description = "record with a marker, dock: upload to the embedded backend, verified receipts, free, verify"
config = "{config}"

[[step]]
expect_state = "buffering"
within = 15.0

[[step]]
wait = 3.5

[[step]]
press = "double"

[[step]]
expect_state = "recording"
within = 2.0

[[step]]
wait = 1.0

[[step]]
marker = true

[[step]]
wait = 1.5

[[step]]
dock = true

[[step]]
within = 30.0
[step.expect]
state = "docked"
offload = {{ phase = "done", pending = 0 }}
segments_on_disk = 0
backend_segments_at_least = 2

[[step]]
verify = true

[[step]]
undock = true

[[step]]
expect_state = "buffering"
within = 5.0
"""


@pytest.mark.slow
def test_simulator_runs_the_embedded_backend_and_docking_uploads_end_to_end(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    scenario = tmp_path / "dock.toml"
    scenario.write_text(DOCK_SCENARIO.format(config=root / "config" / "scenarios" / "smoke-device.toml"))
    data = tmp_path / "sim"
    r = cli("sim", "--scenario", str(scenario), "--data", str(data), timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "evidence backend at http://127.0.0.1:" in r.stdout and "enrolled BC-SIM-SMOKE" in r.stdout
    assert "PASSED" in r.stdout
    # the review pages' URL and a sign-in that works (checked against the backend's own database)
    m = re.search(r"review the footage in a browser at (http://127\.0\.0\.1:\d+/) "
                  r"\(sign in as (\w+), password (\S+)\)", r.stdout)
    assert m, r.stdout
    from bodycam_backend.accounts import Sessions
    from bodycam_backend.config import ReviewConfig
    from bodycam_backend.data import connect

    db = connect("", sqlite_path=data / "backend" / "data" / "backend.sqlite3")
    try:
        assert Sessions(db, ReviewConfig()).sign_in(m.group(2), m.group(3), "127.0.0.1")[1].role == "supervisor"
    finally:
        db.close()
    device = data / "device"
    assert list((device / "receipts").glob("seg-*.receipt.json"))
    assert not list((device / "segments").glob("seg-*.mp4"))
    held = list((data / "backend" / "data" / "store" / "devices" / "BC-SIM-SMOKE" / "segments").glob("*.mp4"))
    assert len(held) >= 2
    again = cli("enrol", "--config", str(root / "config" / "scenarios" / "smoke-device.toml"),
                "--data", str(device))
    assert again.returncode == 0 and again.stdout.startswith("already enrolled"), again.stdout + again.stderr
