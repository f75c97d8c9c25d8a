"""`bodycam record`: a headless recording without buttons, for technicians, scripts and tests.

Buffers for ``--wait`` seconds, triggers a recording (pre-roll included), records for
``--seconds``, then stops. SIGTERM/SIGINT stop it cleanly with the open segment sealed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import config as configmod
from .cli_args import seconds as duration
from .device import RecordingDevice


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record", help="buffer, then record for a while, headless",
        description="Headless check without buttons: fill the pre-event buffer, trigger a recording, "
                    "record --seconds, stop and seal. The evidence goes to the data_dir like the "
                    "daemon's; do not run it beside a running daemon.")
    p.add_argument("--config", required=True, help="device config TOML")
    p.add_argument("--data", help="override [device] data_dir")
    p.add_argument("--wait", type=duration, default=None,
                   help="seconds of buffering before the trigger (default: the pre-event seconds)")
    p.add_argument("--seconds", type=duration, default=10.0,
                   help="seconds to record after the trigger (0 = until killed)")
    p.add_argument("--marker-at", type=duration, action="append", default=[],
                   help="add a marker this many seconds after the trigger (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"device": {"data_dir": str(Path(args.data).resolve())}} if args.data else None
    cfg = configmod.load(args.config, overrides=overrides)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    wait = cfg.buffer.pre_event_seconds if args.wait is None else args.wait
    with RecordingDevice(cfg) as dev:
        record(dev, wait=wait, seconds=args.seconds, stop=stop, markers=args.marker_at)
        stats = dev.pipeline.snapshot()
        summary = {"data_dir": str(dev.layout.root), "segments_sealed": dev.recorder.segments_sealed,
                   "frames_captured": stats.frames_captured, "dropped": stats.dropped, "faults": dev.faults,
                   "audio": dev.audio_status()}
    print(json.dumps(summary) if args.json else
          f"sealed {summary['segments_sealed']} segments in {summary['data_dir']}/segments; "
          f"{stats.frames_captured} frames, {stats.dropped} dropped")
    for fault in summary["faults"]:
        print(f"bodycam: recording stopped early: {fault}", file=sys.stderr)
    return 1 if summary["faults"] else 0


def record(dev: RecordingDevice, *, wait: float, seconds: float, stop: threading.Event,
           markers: list[float] | tuple[float, ...] = (), say: Callable[[str], None] | None = None) -> None:
    """Start ``dev``, buffer ``wait`` s, trigger, record ``seconds`` (0: until ``stop``), stop recording.

    The headless recording path, shared by `bodycam record` and `bodycam doctor --camera-test`.
    """
    say = say or (lambda line: print(line, flush=True))  # flushed: scripts wait for "recording"
    dev.start()
    for r in dev.recovered:
        say(f"recovered segment {r.sequence}: {r.frames} frames kept, {r.bytes_cut} torn bytes cut")
    stop.wait(wait)
    trigger = time.monotonic()
    if not stop.is_set():
        dev.pipeline.start_recording()
        say("recording")
    pending = sorted(markers)
    while not stop.is_set() and (seconds <= 0 or time.monotonic() - trigger < seconds):
        if dev.faults:  # storage full, camera lost...: the recording is sealed; do not buffer on silently
            break
        if pending and time.monotonic() - trigger >= pending[0]:
            pending.pop(0)
            dev.pipeline.marker()
        stop.wait(0.02)
    dev.pipeline.stop_recording("signal" if stop.is_set() else "end_of_run")
