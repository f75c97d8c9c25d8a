"""A real `kill -9` of a recording process, then recovery and a passing verify (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bodycam.verify import verify_paths

pytestmark = pytest.mark.slow


def bodycam(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bodycam.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def write_config(tmp: Path) -> Path:
    cfg = tmp / "device.toml"
    cfg.write_text(f"""
[device]
serial = "BC-CRASH-0001"
officer_id = "PC-9"
data_dir = "{tmp / 'data'}"
[camera]
width = 320
height = 240
fps = 30
[encoder]
bitrate_kbps = 1500
[buffer]
pre_event_seconds = 1
[recording]
segment_seconds = 2
fragment_seconds = 0.5
[storage]
reserve_megabytes = 0
""")
    return cfg


@pytest.mark.parametrize("delay", [2.3, 3.05, 3.77])
def test_kill_9_mid_segment_recovers_everything_older_than_one_second(tmp_path, delay) -> None:
    cfg = write_config(tmp_path)
    assert bodycam("keygen", "--config", str(cfg)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "bodycam.cli", "record", "--config", str(cfg),
                             "--wait", "1.2", "--seconds", "0", "--marker-at", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "recording", proc.stderr.read() if proc.stderr else line
        time.sleep(delay)
        killed_at = time.time_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    segments = tmp_path / "data" / "segments"
    # almost always the kill lands in an open segment; rarely between sealing one and opening the next
    # (a journal beside sealed media is only a leftover of sealing: recovery removes it, recovers nothing)
    was_open = bool(list(segments.glob("*.partial"))
                    or [j for j in segments.glob("*.journal") if not j.with_suffix(".mp4").exists()])

    out = bodycam("recover", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert ("recovered seg" in out.stdout) == was_open

    report = verify_paths([tmp_path / "data"], decode=True)  # both tracks decode, sound ends with pictures
    assert report.ok, report.render_text()
    manifests = [json.loads(p.read_bytes()) for p in sorted(segments.glob("seg-*.json"))]
    assert [m["sequence"] for m in manifests] == list(range(1, len(manifests) + 1))
    assert manifests[-1]["recovered"] is was_open
    # a kill just after a segment opened leaves it empty; the newest frame is then in the one before
    last = max((m for m in manifests if m["frame_count"]), key=lambda m: m["last_frame"]["utc_ns"])
    lost_s = (killed_at - last["last_frame"]["utc_ns"]) / 1e9
    assert lost_s <= 1.0, f"the last {lost_s:.2f} s before the kill were lost"
    # the recovered file itself decodes to the frame count its manifest claims
    import av
    with av.open(str(segments / last["media"]["file"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == last["frame_count"]
    # sound is kept up to the same point as the pictures (synthetic microphone, the default source)
    heard = max((m for m in manifests if m["audio"]["sample_count"]), key=lambda m: m["audio"]["last_sample"]["utc_ns"])
    lost_sound_s = (killed_at - heard["audio"]["last_sample"]["utc_ns"]) / 1e9
    assert lost_sound_s <= 1.0, f"the last {lost_sound_s:.2f} s of sound before the kill were lost"
    assert abs(heard["audio"]["last_sample"]["utc_ns"] - last["last_frame"]["utc_ns"]) < 0.6e9
    with av.open(str(segments / heard["media"]["file"])) as c:
        assert sum(f.samples for f in c.decode(audio=0)) == heard["audio"]["sample_count"]
    events = [json.loads(json.loads(line)["entry"])["event"]
              for line in (tmp_path / "data" / "audit" / "audit.log").read_text().splitlines()]
    assert ("segment_recovered" in events) == was_open
    assert os.stat(segments / last["media"]["file"]).st_mode & 0o222 == 0  # sealed read-only
