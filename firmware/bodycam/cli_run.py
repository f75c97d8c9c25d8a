"""`bodycam run`: the on-device daemon (systemd runs this; the simulator runs it with mock pins).

Logs one JSON object per line on stdout for journald. SIGTERM and SIGINT end it cleanly: the open
segment is sealed with reason "shutdown", the audit log gets power_off, and the exit status is 0.
Keys are never created here: a missing key is an error naming 'bodycam keygen' (or first boot).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from . import config as configmod
from . import logs
from .daemon import runner


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the camera daemon (buttons, indicators, control socket)",
        description="Run the camera: buffer continuously, record on the record button, seal and sign "
                    "segments, drive the indicators, answer `bodycam status`/`press` on the control "
                    "socket, and offload when docked. systemd runs it on a camera; ./scripts/sim here.")
    p.add_argument("--config", required=True, help="device config TOML")
    p.add_argument("--data", help="override [device] data_dir")
    p.add_argument("--backend", metavar="URL", help="override [offload] backend_url (the simulator uses it)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="least severe log messages written (default: info)")
    p.set_defaults(run=run)


def load_config(args: argparse.Namespace) -> configmod.Config:
    overrides: dict[str, dict[str, str]] = {}
    if args.data:
        overrides["device"] = {"data_dir": str(Path(args.data).resolve())}
    if getattr(args, "backend", None):
        overrides["offload"] = {"backend_url": args.backend}
    return configmod.load(args.config, overrides=overrides or None)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    logs.setup(args.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return runner.run(cfg, stop)
