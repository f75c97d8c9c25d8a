"""`scripts/bench record --pi`: CPU per frame of each H.264 encoder path, for the day it runs on a Pi.

Each path is the firmware's own per-frame work after capture: burn the watermark, convert BGR to
YUV 4:2:0, encode (through ``H264Encoder``: pts matching, SPS/PPS on every IDR), and mux into a
fragmented MP4 segment that is hashed as it is written. CPU time is the whole process's
(``time.process_time``: every thread, the encoder's included), divided by the frames; the baseline is a
bare PyAV libx264 encode of the same frames measured in the same run, so the ratios stay comparable
from one machine to another.

Paths:
- ``libx264 (software)``: what a Pi 5 (no H.264 block) and the simulator run.
- ``h264_v4l2m2m (hardware)``: the Pi 4's bcm2835-codec. On a board that has it, the real encoder;
  elsewhere ``tests/v4l2fake.py``, libx264 made to behave like it (no extradata, SPS/PPS once in a
  packet of their own, packets a frame late), so the firmware's code around it is measured and this
  bench runs anywhere. The report says which one ran.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from bodycam import config as configmod
from bodycam.capture.frame import Frame
from bodycam.capture.synthetic import SyntheticSource
from bodycam.clock import SystemClock
from bodycam.encode.h264 import H264Encoder, open_context
from bodycam.encode.platform import HARDWARE_CODEC, SOFTWARE_CODEC, Platform
from bodycam.segments.writer import SegmentWriter
from bodycam.watermark import Watermarker

TESTS = Path(__file__).resolve().parents[1] / "tests"


@dataclass
class EncoderPath:
    name: str
    codec: str
    hardware: bool
    opener: Any
    real: bool  # False: the stand-in for hardware this machine does not have


def paths(board: Platform) -> list[EncoderPath]:
    out = [EncoderPath(f"{SOFTWARE_CODEC} (software)", SOFTWARE_CODEC, False, open_context, True)]
    if board.hardware_encoder_device() is not None and HARDWARE_CODEC in board.codecs:
        out.append(EncoderPath(f"{HARDWARE_CODEC} (hardware)", HARDWARE_CODEC, True, open_context, True))
    else:
        sys.path.insert(0, str(TESTS))
        from v4l2fake import open_v4l2m2m_like

        out.append(EncoderPath(f"{HARDWARE_CODEC} (stand-in: libx264 acting as it)", HARDWARE_CODEC, True,
                         open_v4l2m2m_like, False))
    return out


def frames(width: int, height: int, n: int) -> list[np.ndarray]:
    src = SyntheticSource(width, height, 30, seed=11, clock=SystemClock())
    return [src.render(i) for i in range(n)]


def encode_bare(ctx: Any, images: list[np.ndarray]) -> None:
    """The baseline's work: BGR -> YUV 4:2:0 and encode, nothing else (also `bench record`'s)."""
    for i, img in enumerate(images):
        vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
        vf.pts = i * 3000
        ctx.encode(vf)
    ctx.encode(None)


def bare_cpu_ms(images: list[np.ndarray], cfg: configmod.Config) -> float:
    """PyAV alone: convert and encode with libx264, nothing else."""
    c, e = cfg.camera, cfg.encoder
    ctx = open_context(width=c.width, height=c.height, fps=c.fps, bitrate_kbps=e.bitrate_kbps,
                       gop_seconds=e.gop_seconds, codec=SOFTWARE_CODEC, preset=e.preset)
    t = time.process_time()
    encode_bare(ctx, images)
    return (time.process_time() - t) * 1000 / len(images)


def path_cpu_ms(path: EncoderPath, images: list[np.ndarray], cfg: configmod.Config, tmp: Path) -> tuple[float, int]:
    """The firmware's per-frame work on ``path``; returns (CPU ms per frame, bytes written)."""
    c, e = cfg.camera, cfg.encoder
    enc = H264Encoder(width=c.width, height=c.height, fps=c.fps, bitrate_kbps=e.bitrate_kbps,
                      gop_seconds=e.gop_seconds, codec=path.codec, hardware=path.hardware, preset=e.preset,
                      open_context=path.opener)
    enc.start()
    mark = Watermarker(cfg.watermark, serial="BC-BENCH", officer_id="PC-BENCH")
    seg = tmp / f"{path.codec}-{time.monotonic_ns()}.mp4"
    writer = SegmentWriter(seg, width=c.width, height=c.height, fps=c.fps,
                           fragment_seconds=cfg.recording.fragment_seconds)
    interval = round(1e9 / c.fps)
    t = time.process_time()
    for i, img in enumerate(images):
        frame = Frame(img.copy(), i, 10**9 + i * interval, 1_800_000_000 * 10**9 + i * interval)
        mark.apply(frame)
        for p in enc.encode(frame):
            writer.write(p)
    for p in enc.flush():
        writer.write(p)
    writer.close()
    cpu = (time.process_time() - t) * 1000 / len(images)
    size = seg.stat().st_size
    seg.unlink()
    return cpu, size


def run(tmp: Path, cfg_path: Path, *, quick: bool) -> dict[str, Any]:
    cfg = configmod.load(cfg_path)
    n, repeats = (45, 1) if quick else (300, 3)
    images = frames(cfg.camera.width, cfg.camera.height, n)
    board = Platform()
    result: dict[str, Any] = {"resolution": f"{cfg.camera.width}x{cfg.camera.height}", "frames": n,
                              "hardware_encoder": str(board.hardware_encoder_device() or "none on this machine"),
                              "paths": {}}
    base: list[float] = []
    per: dict[str, list[float]] = {}
    written: dict[str, int] = {}
    chosen = paths(board)
    for _ in range(repeats):  # interleaved, so drifting load hits every variant alike
        base.append(bare_cpu_ms(images, cfg))
        for p in chosen:
            cpu, size = path_cpu_ms(p, images, cfg, tmp)
            per.setdefault(p.name, []).append(cpu)
            written[p.name] = size
    b = statistics.median(base)
    result["bare_libx264_cpu_ms_per_frame"] = round(b, 3)
    for p in chosen:
        ms = statistics.median(per[p.name])
        result["paths"][p.name] = {"cpu_ms_per_frame": round(ms, 3), "ratio_to_bare_libx264": round(ms / b, 3),
                                   "cpu_share_at_fps": round(ms * cfg.camera.fps / 1000, 3),
                                   "real_encoder": p.real, "segment_bytes": written[p.name]}
    return result
