"""`bodycam status`: what the running daemon is doing, for a technician or a script (--json).

It only asks the daemon over its control socket; with no daemon it says how to start one (exit 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import config as configmod
from .daemon.control import request, socket_path
from .daemon.words import clock_words
from .errors import ConfigError
from .offload.describe import describe as describe_offload


def add_socket_args(p: argparse.ArgumentParser) -> None:
    """--config/--data, shared by every command that talks to the daemon."""
    p.add_argument("--config", help="device config TOML (the socket is under its data_dir)")
    p.add_argument("--data", help="the daemon's data directory (overrides the config's data_dir)")


def socket_from_args(args: argparse.Namespace) -> Path:
    if args.data:
        return socket_path(Path(args.data).resolve())
    if not args.config:
        raise ConfigError("give --config FILE (or --data DIR) so the daemon's socket can be found")
    return socket_path(configmod.load(args.config).data_dir)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="ask the running daemon for its state",
        description="Ask the running daemon, over its control socket, for its state, buffer, "
                    "recording, storage, clock, dock and faults (docs/daemon.md section 3).")
    add_socket_args(p)
    p.add_argument("--json", action="store_true", help="print the raw status object")
    p.set_defaults(run=run)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.0f} MB"


def render(s: dict[str, Any]) -> str:
    """A few aligned lines; the first says the state, the last says what is wrong, if anything."""
    state = s["state"] + (f" ({s['recording_id']})" if s.get("recording_id") else "")
    flags = [f for f, on in (("in the dock", s.get("docked") and s["state"] != "docked"),
                             ("stealth on", s.get("stealth")),
                             ("stop pending: press again to confirm", s.get("stop_pending"))) if on]
    battery = s.get("battery_percent")
    rows = [
        ("state", ", ".join([state, *flags])),
        ("device", f"{s['serial']} officer {s['officer_id']}, firmware {s['firmware_version']}, "
                   f"up {s['uptime_seconds']:.0f} s"),
        ("buffer", f"{s['buffer_seconds']:.1f} s, {s['buffer_bytes'] / 1e6:.1f} MB"),
        ("frames", f"{s['frames_captured']} captured, {s['dropped']} dropped"),
        ("segments", f"{s['segments_sealed']} sealed this boot, {s['pending_uploads']} on disk to upload"),
        ("storage", f"{_mb(s['free_bytes'])} free, {_mb(s['headroom_bytes'])} above the "
                    f"{_mb(s['reserve_bytes'])} reserve"),
        ("clock", clock_words(s["clock"])),
        ("battery", "unknown" if battery is None
         else f"{battery:.0f} %" + (" LOW" if s.get("low_battery") else "")),
    ]
    offload = s.get("offload")
    if offload:
        rows.append(("offload", describe_offload(offload)))
    if s.get("fault") or s.get("last_fault"):
        rows.append(("fault", s.get("fault") or f"(cleared) {s['last_fault']}"))
    return "\n".join(f"{k + ':':<10}{v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    reply = request(socket_from_args(args), {"cmd": "status"})
    reply.pop("ok", None)
    print(json.dumps(reply, indent=2) if args.json else render(reply))
    return 0
