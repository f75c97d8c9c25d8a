"""`bodycam backend ...`: serve, init, people tokens, enrolment tokens, revoke, export, audit-verify.

Kept free of heavy imports at module level so `bodycam --help` stays fast and works on a camera
without the backend's dependencies; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = os.environ.get("BODYCAM_BACKEND_CONFIG", "/etc/bodycam/backend.toml")
MISSING_EXTRAS = "the backend needs its dependencies: pip install 'bodycam[backend]'"


def add_parser(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"backend TOML config (default {DEFAULT_CONFIG}, or $BODYCAM_BACKEND_CONFIG)",
    )
    p = sub.add_parser(
        "backend",
        help="the reference evidence backend (serve, enrol, revoke, export)",
        description="The evidence backend cameras offload to. API: docs/backend-api.md.",
    )
    bsub = p.add_subparsers(dest="backend_command", required=True, metavar="COMMAND")
    bsub.add_parser("serve", parents=[common], help="run the HTTP service").set_defaults(run=_run("serve"))
    bsub.add_parser(
        "init", parents=[common], help="create data dir, agency CA, receipt key and database"
    ).set_defaults(run=_run("init"))
    tok = bsub.add_parser("token", help="people's account tokens")
    tsub = tok.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tc = tsub.add_parser("create", parents=[common], help="create an account and print its token once")
    tc.add_argument("name")
    tc.add_argument("--role", choices=("admin", "reviewer"), default="reviewer")
    tc.set_defaults(run=_run("token_create"))
    tsub.add_parser("list", parents=[common], help="list accounts").set_defaults(run=_run("token_list"))
    et = bsub.add_parser(
        "enrol-token", parents=[common], help="issue a one-time enrolment token for a camera"
    )
    et.add_argument("serial")
    et.set_defaults(run=_run("enrol_token"))
    rv = bsub.add_parser("revoke", parents=[common], help="refuse a lost or stolen camera from now on")
    rv.add_argument("serial")
    rv.set_defaults(run=_run("revoke"))
    ex = bsub.add_parser("export", parents=[common], help="write a recording's evidence bundle for court")
    ex.add_argument("recording")
    ex.add_argument("--out", required=True, type=Path, metavar="DIR", help="new or empty directory")
    ex.set_defaults(run=_run("export"))
    bsub.add_parser(
        "audit-verify", parents=[common], help="check the backend audit trail's chain and signatures"
    ).set_defaults(run=_run("audit_verify"))


def _run(name: str):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        try:
            from . import commands
        except ImportError as e:
            print(f"bodycam: {MISSING_EXTRAS} ({e.name} is missing)", file=sys.stderr)
            return 2
        return getattr(commands, name)(args)

    return run
