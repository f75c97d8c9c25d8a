"""`bodycam doctor`: on a camera, check everything and say what is wrong and what to do (exit 1 if
anything failed). Run it with sudo: it reads the device key's permissions and the daemon's socket.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check camera, pins, key, certificate, clock, storage, backend, service",
        description="Diagnose a camera: every check prints ok/warn/FAIL and what to do.",
    )
    p.add_argument(
        "--config", default="/etc/bodycam/device.toml", help="device config (default: %(default)s)"
    )
    p.add_argument("--backend", metavar="URL", help="backend URL to test (default: from the config)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .doctor import System, run_checks

    report = run_checks(System(), config_path=args.config, url=args.backend)
    print(report.to_json() if args.json else report.render())
    return 0 if report.ok else 1
