"""`bodycam verify`: exit 0 only if everything verifies, 1 if anything failed, 2 on a usage error.

The exit code is the contract for scripts (the dock, the backend, a defence expert's shell loop);
the text is for people, ``--json`` for programs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .verify import VerifyInputError, verify_paths

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="check segments, the per-device chain and the audit log",
        description="Verify a device data directory, a directory of exported segments, or single "
                    "segment files (.json, .mp4) and audit logs. Exit 0 only if everything verifies.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="data directory, segment directory, manifest/media file, or audit.log")
    p.add_argument("--key", action="append", default=[], metavar="PUB_OR_CERT_PEM",
                   help="device public key or X.509 certificate (PEM) to trust; repeatable. Without it, "
                        "keys found beside the evidence are used, which proves integrity, not origin")
    p.add_argument("--decode", action="store_true",
                   help="also decode every segment and compare frame counts (slower)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = verify_paths([Path(p) for p in args.paths], public_keys=[Path(k) for k in args.key],
                              decode=args.decode)
    except VerifyInputError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(report.to_json() if args.json else report.render_text())
    return EXIT_OK if report.ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m bodycam.cli_verify``), same behaviour as ``bodycam verify``."""
    parser = argparse.ArgumentParser(prog="bodycam")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
