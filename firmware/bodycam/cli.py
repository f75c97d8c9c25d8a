"""The `bodycam` command. Every error a user can cause ends as one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import BodycamError

# Subcommand modules, each with add_parser(subparsers) and run(args) -> int.
COMMANDS = ["cli_keygen", "cli_record", "cli_recover", "cli_verify", "cli_run", "cli_status", "cli_press", "cli_sim"]
COMMANDS += ["cli_backend"]  # the evidence backend (backend/bodycam_backend), if installed
COMMANDS += ["cli_image", "cli_provision", "cli_doctor"]  # technician tools (docs/technician.md)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bodycam", description="Open body-worn camera firmware.")
    parser.add_argument("--version", action="version", version=f"bodycam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BodycamError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
