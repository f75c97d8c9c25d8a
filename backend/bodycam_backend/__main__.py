"""`python -m bodycam_backend COMMAND ...`: the same commands as `bodycam backend COMMAND ...`."""

from __future__ import annotations

import argparse
import sys

from bodycam.cli import run_parsed

from . import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bodycam_backend")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return run_parsed(parser.parse_args(["backend", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
