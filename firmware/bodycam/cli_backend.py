"""`bodycam backend ...`: the evidence backend's commands, when the backend package is installed.

A camera image carries only the firmware; there the command says what to install instead of failing
with an import error.
"""

from __future__ import annotations

import argparse
import sys

HINT = "the evidence backend is not installed here: pip install 'bodycam[backend]'"


def add_parser(sub: argparse._SubParsersAction) -> None:
    try:
        from bodycam_backend import cli
    except ImportError:
        p = sub.add_parser("backend", help="the reference evidence backend (not installed)",
                           description=f"The evidence backend cameras offload to; {HINT}.")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="the backend command and its arguments")
        p.set_defaults(run=_missing)
        return
    cli.add_parser(sub)


def _missing(args: argparse.Namespace) -> int:
    print(f"bodycam: {HINT}", file=sys.stderr)
    return 2
