"""`python -m bodycam_backend COMMAND ...`: the same commands as `bodycam backend COMMAND ...`."""

from __future__ import annotations

import argparse
import sys

from bodycam.errors import BodycamError

from . import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bodycam_backend")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    args = parser.parse_args(["backend", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.run(args) or 0)
    except BodycamError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
