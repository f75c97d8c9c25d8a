"""A card that fills under a recording (another writer takes the space between two reserve checks):
a real `bodycam record` process on a real, small tmpfs, filled by `dd` while it records.

What must hold (issue: sudden out-of-space): the process ends with one line and exit 1, the recording is
sealed from what reached the card (cut back to whole fragments, verifies and decodes), the audit log
keeps its `storage_full` entry with no torn line, and no `.partial` or temp file is left.
The tmpfs lives in a private mount namespace (`unshare --map-root-user --mount`), so no root is needed
and nothing outlives the test; the card's contents are copied out before the namespace ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bodycam.verify import verify_paths

ROOT = Path(__file__).resolve().parents[1]


def card_config(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(the card's mount point, where its contents are copied out, a sim config recording onto it)."""
    card, out = tmp_path / "card", tmp_path / "copied"
    card.mkdir()
    cfg = tmp_path / "device.toml"
    text = (ROOT / "config" / "sim.toml").read_text()
    cfg.write_text("\n".join(
        f'data_dir = "{card}"' if ln.startswith("data_dir") else
        "reserve_megabytes = 0" if ln.startswith("reserve_megabytes") else ln
        for ln in text.splitlines()) + "\n")
    return card, out, cfg


def in_private_mount_namespace(script: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    return subprocess.run(["unshare", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_a_card_filled_by_another_writer_mid_recording(tmp_path: Path) -> None:
    card, out, cfg = card_config(tmp_path)
    bodycam = f"{sys.executable} -m bodycam.cli"
    script = f"""
set -e
mount -t tmpfs -o size=16m tmpfs {card}
{bodycam} keygen --config {cfg} > /dev/null
{bodycam} record --config {cfg} --wait 1 --seconds 20 > {tmp_path}/out.txt 2> {tmp_path}/err.txt &
rec=$!
while ! grep -q recording {tmp_path}/out.txt 2>/dev/null; do sleep 0.1; done
sleep 1.5
dd if=/dev/zero of={card}/filler bs=64k 2> /dev/null || true   # another writer takes every byte left
set +e
wait $rec
echo $? > {tmp_path}/rc.txt
rm -f {card}/filler
cp -a {card}/. {out}/
"""
    r = in_private_mount_namespace(script, timeout=120)
    assert r.returncode == 0, r.stderr
    err = (tmp_path / "err.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "1"
    assert "Traceback" not in err and err.strip().splitlines() == [
        "bodycam: recording stopped early: write failed: No space left on device"], err

    segments = sorted(p.name for p in (out / "segments").iterdir())
    assert not [n for n in segments if n.endswith((".partial", ".tmp", ".journal"))], segments
    manifests = [json.loads((out / "segments" / n).read_text()) for n in segments if n.endswith(".json")]
    assert manifests and manifests[-1]["end_reason"] == "storage_full" and manifests[-1]["recovered"] is True
    assert manifests[-1]["frame_count"] > 0

    log = (out / "audit" / "audit.log").read_bytes()
    assert log.endswith(b"\n")
    events = [json.loads(json.loads(line)["entry"])["event"] for line in log.splitlines()]
    assert "storage_full" in events and "fault" in events

    report = verify_paths([out], decode=True)
    assert report.ok, report.render_text()
    assert report.warnings == [], report.warnings
    shutil.rmtree(out)


def test_the_daemon_seals_and_logs_when_the_card_fills_then_stops_cleanly_in_its_fault(tmp_path: Path) -> None:
    """Under `bodycam run`: a double press records, the card fills, the daemon goes to its fault state
    with the segment already sealed; SIGTERM in that state then shuts down with nothing left open."""
    card, out, cfg = card_config(tmp_path)
    bodycam = f"{sys.executable} -m bodycam.cli"
    script = f"""
set -e
mount -t tmpfs -o size=16m tmpfs {card}
{bodycam} keygen --config {cfg} > /dev/null
{bodycam} run --config {cfg} > {tmp_path}/daemon.log 2>&1 &
daemon=$!
until {bodycam} status --config {cfg} > /dev/null 2>&1; do sleep 0.2; done
sleep 1
{bodycam} press double --config {cfg} > /dev/null
sleep 1.5
dd if=/dev/zero of={card}/filler bs=64k 2> /dev/null || true
for i in $(seq 50); do
    {bodycam} status --config {cfg} --json > {tmp_path}/status.json
    grep -q '"state": "fault"' {tmp_path}/status.json && break
    sleep 0.2
done
kill -TERM $daemon
set +e
wait $daemon
echo $? > {tmp_path}/rc.txt
rm -f {card}/filler
cp -a {card}/. {out}/
"""
    r = in_private_mount_namespace(script, timeout=180)
    assert r.returncode == 0, r.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "fault" and "No space left" in status["fault"], status
    assert (tmp_path / "rc.txt").read_text().strip() == "0", (tmp_path / "daemon.log").read_text()[-2000:]
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
    names = sorted(p.name for p in (out / "segments").iterdir())
    assert not [n for n in names if n.endswith((".partial", ".tmp", ".journal"))], names
    report = verify_paths([out], decode=True)
    assert report.ok, report.render_text()
    events = [json.loads(json.loads(line)["entry"])["event"] for line in (out / "audit" / "audit.log").read_bytes()
              .splitlines()]
    assert "storage_full" in events and events[-1] == "power_off", events[-5:]
