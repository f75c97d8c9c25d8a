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
    p.add_argument("--camera-test", action="store_true",
                   help="record a short test with the configured camera and encoder, verify and decode it, "
                        "and print what the camera did (stop the bodycam service first)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the --camera-test recording (default: 10)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.camera_test:
        from .camera_test import run_camera_test

        return run_camera_test(args.config, seconds=args.seconds)
    from .doctor import System, run_checks

    report = run_checks(System(), config_path=args.config, url=args.backend)
    print(report.to_json() if args.json else report.render())
    return 0 if report.ok else 1
