"""`scripts/bench record`: the recording pipeline's speed, drops, memory and trigger latency.

Every figure is measured in this run, against a baseline measured in the same run:
1. throughput: the full pipeline with sound (source -> watermark -> encode -> buffer -> segment ->
   hash -> sign -> fsync, and microphone -> drift correction -> AAC -> the same segments) over a bare
   PyAV encode of the same frames and samples with the same settings; the median of at least 5
   interleaved rounds, so one noisy round cannot decide it;
2. dropped frames and audio xruns over a real-time minute of recording at 1280x720 and 1920x1080,
   30 fps, in a real `bodycam record` process with its synthetic microphone, whose RSS is sampled
   with a 30 s pre-event buffer full at 1080p;
3. trigger -> recording state latency, and trigger -> pre-roll sealed on disk, over repeated presses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from bodycam import config as configmod
from bodycam.audio.chunk import AudioChunk
from bodycam.audio.encoder import open_audio_context
from bodycam.capture.flash import click_signal
from bodycam.capture.frame import Frame
from bodycam.capture.synthetic import SyntheticSource
from bodycam.clock import SystemClock
from bodycam.controls.indicators import Indicators
from bodycam.daemon.machine import StateMachine
from bodycam.device import RecordingDevice
from bodycam.encode.h264 import open_context
from bodycam.evidence.signer import generate_key
from encoder_paths import encode_bare

TARGETS = {"ratio": 0.90, "dropped_720p": 0, "xruns_720p": 0, "rss_mb": 250, "trigger_p99_ms": 50}
RATE, CHUNK = 48000, 960  # the default microphone: 48 kHz mono, 20 ms reads


def make_config(tmp: Path, name: str, *, width: int, height: int, pre: float) -> Path:
    data = tmp / name
    path = tmp / f"{name}.toml"
    path.write_text(f"""
[device]
serial = "BC-BENCH-0001"
officer_id = "PC-BENCH"
data_dir = "{data}"
[camera]
width = {width}
height = {height}
fps = 30
[buffer]
pre_event_seconds = {pre}
[storage]
reserve_megabytes = 0
""")
    generate_key(configmod.load(path).key_path)
    return path


# --- 1. throughput ------------------------------------------------------------------------------

class ReplaySource:
    """Unpaced frames from memory, so throughput is limited by the pipeline, not by a clock."""

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        self.frames, self.fps = frames, fps
        self.height, self.width = frames[0].shape[:2]
        self._i = 0
        self._clock = SystemClock()

    def start(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self._i >= len(self.frames):
            return None
        i = self._i
        self._i += 1
        # capture times on the nominal grid, as a camera would stamp them
        return Frame(self.frames[i].copy(), i, 10**9 + int(i * 1e9 / self.fps), 1_800_000_000 * 10**9 + i)

    @property
    def dropped(self) -> int:
        return 0

    def close(self) -> None:
        pass


class ReplayMicrophone:
    """Unpaced sound from memory, kept in step with a ReplaySource (a chunk is read once the pictures
    have reached its time), as a microphone and a camera are in step in real life."""

    def __init__(self, samples: np.ndarray, video: ReplaySource) -> None:
        self.samples, self.video = samples, video
        self.sample_rate, self.channels = RATE, 1
        self._pos = 0
        self._closed = False

    xruns = 0
    missing_samples = 0

    def info(self) -> dict:
        return {"kind": "replay"}

    def start(self) -> None:
        pass

    def read(self) -> AudioChunk | None:
        if self._closed or self._pos >= len(self.samples):
            return None
        end_s = (self._pos + CHUNK) / RATE
        while self.video._i / self.video.fps < end_s and self.video._i < len(self.video.frames) and not self._closed:
            time.sleep(0.0005)
        chunk = AudioChunk(self.samples[self._pos:self._pos + CHUNK, None], 10**9 + round(self._pos * 1e9 / RATE))
        self._pos += CHUNK
        return chunk

    def close(self) -> None:
        self._closed = True


def sound_for(n_frames: int, fps: float) -> np.ndarray:
    """The synthetic microphone's signal for as long as ``n_frames`` last (a tone and its clicks)."""
    n = int(n_frames / fps * RATE) // CHUNK * CHUNK
    return click_signal(10**9 + np.round(np.arange(n) * (1e9 / RATE)).astype(np.int64))


def encode_sound_bare(samples: np.ndarray, cfg: configmod.Config) -> None:
    """PyAV's AAC encoder on the same samples, 1024 at a time, nothing else."""
    import av

    a = cfg.audio
    ctx = open_audio_context(a.codec, a.sample_rate, a.channels, a.bitrate_kbps)
    n = ctx.frame_size
    for i in range(0, len(samples) - n + 1, n):
        f = av.AudioFrame.from_ndarray(samples[None, i:i + n], format=ctx.format.name, layout=ctx.layout.name)
        f.sample_rate, f.pts = a.sample_rate, i
        ctx.encode(f)
    ctx.encode(None)


def bare_encode(frames: list[np.ndarray], sound: np.ndarray, cfg: configmod.Config) -> float:
    """The baseline: PyAV alone, the same encoder settings, no watermark, buffer, muxing or evidence."""
    enc = cfg.encoder
    ctx = open_context(width=cfg.camera.width, height=cfg.camera.height, fps=cfg.camera.fps,
                       bitrate_kbps=enc.bitrate_kbps, gop_seconds=enc.gop_seconds, codec=enc.codec,
                       preset=enc.preset, threads=enc.threads)
    t = time.perf_counter()
    encode_bare(ctx, frames)
    encode_sound_bare(sound, cfg)
    return len(frames) / (time.perf_counter() - t)


def pipeline_encode(frames: list[np.ndarray], sound: np.ndarray, cfg_path: Path, run: int) -> tuple[float, int]:
    cfg = configmod.load(cfg_path, overrides={"device": {"data_dir": str(cfg_path.parent / f"tp{run}")},
                                              "buffer": {"pre_event_seconds": 0}})
    generate_key(cfg.key_path)
    video = ReplaySource(frames, cfg.camera.fps)
    dev = RecordingDevice(cfg, source=video, offline=True, audio_source=ReplayMicrophone(sound, video))
    t = time.perf_counter()
    dev.pipeline.start_recording()
    dev.start()
    dev.pipeline.source_ended.wait()
    dev.close("end_of_run")
    elapsed = time.perf_counter() - t
    return len(frames) / elapsed, dev.recorder.segments_sealed


def throughput(tmp: Path, n: int, repeats: int) -> dict:
    cfg_path = make_config(tmp, "throughput", width=1280, height=720, pre=0)
    cfg = configmod.load(cfg_path)
    src = SyntheticSource(1280, 720, 30, seed=7, clock=SystemClock())
    frames = [src.render(i) for i in range(n)]
    sound = sound_for(n, 30)
    base, full, sealed = [], [], 0
    for r in range(repeats):  # interleaved, so drift in machine load hits both equally
        base.append(bare_encode(frames, sound, cfg))
        fps, sealed = pipeline_encode(frames, sound, cfg_path, r)
        full.append(fps)
    b, f = statistics.median(base), statistics.median(full)
    ratios = [round(x / y, 3) for x, y in zip(full, base, strict=True)]
    return {"frames": n, "sound_s": round(len(sound) / RATE, 2), "rounds": repeats,
            "bare_pyav_fps": round(b, 1), "pipeline_fps": round(f, 1),
            "ratio": round(statistics.median(ratios), 3), "round_ratios": ratios, "segments_per_run": sealed}


# --- 2. real-time drops and RSS -------------------------------------------------------------------

def realtime(tmp: Path, name: str, *, width: int, height: int, pre: float, wait: float, seconds: float) -> dict:
    cfg = make_config(tmp, name, width=width, height=height, pre=pre)
    proc = subprocess.Popen([sys.executable, "-m", "bodycam.cli", "record", "--config", str(cfg),
                             "--wait", str(wait), "--seconds", str(seconds), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = buffered_peak = 0
    t0 = time.monotonic()
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss
        except psutil.Error:
            break
        peak = max(peak, rss)
        if time.monotonic() - t0 < wait + 0.5:
            buffered_peak = max(buffered_peak, rss)
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"bench: bodycam record failed: {err.strip().splitlines()[-1:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    audio = summary.get("audio") or {}
    return {"resolution": f"{width}x{height}", "recorded_s": seconds, "frames": summary["frames_captured"],
            "dropped": summary["dropped"], "audio_xruns": audio.get("xruns"),
            "audio_missing_samples": audio.get("missing_samples"), "segments": summary["segments_sealed"],
            "rss_peak_mb": round(peak / 2**20, 1), "rss_buffer_full_mb": round(buffered_peak / 2**20, 1)}


# --- 3. trigger latency ---------------------------------------------------------------------------

def trigger_latency(tmp: Path, presses: int, pre: float) -> dict:
    """Double press (as the button panel delivers it) -> the state machine says "recording".

    The real state machine, audit log (fsynced per entry) and indicators on gpiozero's mock pins;
    the pre-roll is muxed by the writer thread afterwards, measured separately.
    """
    cfg = configmod.load(make_config(tmp, "trigger", width=1280, height=720, pre=pre))
    clock = SystemClock()
    state_ms, disk_ms = [], []
    dev = RecordingDevice(cfg, clock=clock)
    indicators = Indicators(cfg.indicators, clock=clock)
    machine = StateMachine(dev, indicators, clock=clock)
    try:
        machine.boot()
        time.sleep(pre + 1.5)
        for _ in range(presses):
            t = time.perf_counter()
            machine.on_gesture("record", "double")
            assert machine.state == "recording"
            state_ms.append((time.perf_counter() - t) * 1000)
            while dev.recorder.recording_id is None:  # writer has the pre-roll muxed and fsynced
                time.sleep(0.001)
            disk_ms.append((time.perf_counter() - t) * 1000)
            time.sleep(0.3)
            machine.on_gesture("record", "hold")
            time.sleep(pre + 1.2)  # let the buffer fill again
    finally:
        machine.shutdown("bench")
        indicators.close()
    q = lambda xs, p: round(float(np.percentile(xs, p)), 2)  # noqa: E731
    return {"presses": presses, "pre_event_s": pre, "state_p50_ms": q(state_ms, 50), "state_p99_ms": q(state_ms, 99),
            "preroll_on_disk_p50_ms": q(disk_ms, 50), "preroll_on_disk_p99_ms": q(disk_ms, 99)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench record")
    ap.add_argument("--quick", action="store_true", help="seconds instead of minutes (checks the bench runs)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pi", action="store_true",
                    help="CPU per frame of each encoder path (software, hardware) instead; on a machine without "
                         "the Pi 4's encoder the hardware path is its stand-in from tests/v4l2fake.py")
    args = ap.parse_args(argv)
    q = args.quick
    results: dict = {}
    if args.pi:
        return encoder_paths_report(quick=q, as_json=args.json)
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-") as d:
        tmp = Path(d)
        print("bench record: throughput with sound (pipeline vs bare PyAV encode, 1280x720, 48 kHz)...",
              file=sys.stderr, flush=True)
        results["throughput"] = throughput(tmp, 60 if q else 300, 2 if q else 5)
        secs = 4 if q else 60
        print(f"bench record: {secs} s real-time recording at 1280x720@30...", file=sys.stderr, flush=True)
        results["realtime_720p"] = realtime(tmp, "rt720", width=1280, height=720, pre=2 if q else 30,
                                            wait=2 if q else 5, seconds=secs)
        print(f"bench record: 1080p@30 with a full {'2' if q else '30'} s buffer, then {secs} s recording...",
              file=sys.stderr, flush=True)
        results["realtime_1080p"] = realtime(tmp, "rt1080", width=1920, height=1080, pre=2 if q else 30,
                                             wait=3 if q else 33, seconds=secs)
        print("bench record: trigger latency...", file=sys.stderr, flush=True)
        results["trigger"] = trigger_latency(tmp, 3 if q else 30, 1.0 if q else 5.0)
    tp, r7, r10, tr = results["throughput"], results["realtime_720p"], results["realtime_1080p"], results["trigger"]
    checks = {
        "throughput ratio": (tp["ratio"], f">= {TARGETS['ratio']}", tp["ratio"] >= TARGETS["ratio"]),
        "dropped frames 720p30": (r7["dropped"], "== 0", r7["dropped"] == 0),
        "audio xruns 720p30": (r7["audio_xruns"], "== 0", r7["audio_xruns"] == 0),
        "dropped frames 1080p30": (r10["dropped"], "(reported)", True),
        "RSS 1080p, buffer full (MB)": (r10["rss_peak_mb"], f"<= {TARGETS['rss_mb']}",
                                        r10["rss_peak_mb"] <= TARGETS["rss_mb"]),
        "trigger->recording p99 (ms)": (tr["state_p99_ms"], f"<= {TARGETS['trigger_p99_ms']}",
                                        tr["state_p99_ms"] <= TARGETS["trigger_p99_ms"]),
    }
    print(json.dumps(results, indent=2))
    if not args.json:
        print()
        for name, (value, target, ok) in checks.items():
            print(f"  {name:32} {value!s:>10}  target {target:10} {'ok' if ok else 'MISSED'}")
    return 0


def encoder_paths_report(*, quick: bool, as_json: bool) -> int:
    import encoder_paths

    with tempfile.TemporaryDirectory(prefix="bodycam-bench-") as d:
        tmp = Path(d)
        print("bench record --pi: CPU per frame of each encoder path (watermark, encode, mux, hash), 1280x720...",
              file=sys.stderr, flush=True)
        result = encoder_paths.run(tmp, make_config(tmp, "pi", width=1280, height=720, pre=0), quick=quick)
    print(json.dumps(result, indent=2))
    if not as_json:
        print()
        baseline = "bare PyAV libx264 encode (baseline)"
        print(f"  {baseline:46} {result['bare_libx264_cpu_ms_per_frame']:8.2f} ms CPU/frame")
        for name, p in result["paths"].items():
            print(f"  {name:46} {p['cpu_ms_per_frame']:8.2f} ms CPU/frame  x{p['ratio_to_bare_libx264']:.2f} of "
                  f"baseline  {p['cpu_share_at_fps'] * 100:.0f}% of a core at 30 fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
