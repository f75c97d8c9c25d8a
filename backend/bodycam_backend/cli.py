"""`bodycam backend ...`: serve, init, people tokens, enrolment tokens, revoke, export, audit-verify, db.

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
ROLES = ("admin", "supervisor", "reviewer", "officer", "auditor")  # bodycam_backend.permissions.ROLES


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
    bsub.add_parser(
        "serve", parents=[common], help="run the HTTP service",
        description="Serve the evidence API (docs/backend-api.md) and the review pages (docs/review.md) "
                    "on [server] host and port.",
    ).set_defaults(run=_run("serve"))
    bsub.add_parser(
        "init", parents=[common], help="create data dir, agency CA, receipt key and database",
        description="Create the data directory, the agency CA, the receipt-signing key and the database. "
                    "Safe to repeat: nothing existing is replaced.",
    ).set_defaults(run=_run("init"))
    tok = bsub.add_parser("token", help="people's account tokens",
                          description="Accounts for people (admins, reviewers) and their API tokens.")
    tsub = tok.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tc = tsub.add_parser("create", parents=[common], help="create an account and print its token once",
                         description="Create an account and print its API token, once: only its hash is kept.")
    tc.add_argument("name", help="the person's name, as the audit trail will show it")
    tc.add_argument("--role", choices=ROLES, default="reviewer",
                    help="reviewer (default): views and downloads evidence; admin: also enrols, revokes, audits; "
                         "the others as in docs/review.md")
    tc.set_defaults(run=_run("token_create"))
    tsub.add_parser(
        "list", parents=[common], help="list accounts", description="List the accounts and their roles."
    ).set_defaults(run=_run("token_list"))
    _add_user_parser(bsub, common)
    _add_retention_parsers(bsub, common)
    et = bsub.add_parser(
        "enrol-token", parents=[common], help="issue a one-time enrolment token for a camera",
        description="Issue a one-time token a camera with this serial presents at enrolment; put it in "
                    "the camera's [offload] enrol_token or pass it to `bodycam enrol --token`.",
    )
    et.add_argument("serial", help="the camera's serial, e.g. BC-0417")
    et.set_defaults(run=_run("enrol_token"))
    rv = bsub.add_parser("revoke", parents=[common], help="refuse a lost or stolen camera from now on",
                         description="Refuse every later request signed by this camera's key; "
                                     "what it uploaded before stays.")
    rv.add_argument("serial", help="the camera's serial")
    rv.set_defaults(run=_run("revoke"))
    ex = bsub.add_parser("export", parents=[common], help="write a recording's evidence bundle for court",
                         description="Write a recording's evidence bundle: segments, device certificate, "
                                     "audit log, receipts and a README; `bodycam verify DIR` checks it offline.")
    ex.add_argument("recording", help="the recording id, e.g. BC-0417-0000000042 (GET /v1/recordings)")
    ex.add_argument("--out", required=True, type=Path, metavar="DIR", help="new or empty directory")
    ex.set_defaults(run=_run("export"))
    dbp = bsub.add_parser(
        "db", help="the metadata database's schema version (migrations)",
        description="The database's schema is versioned (alembic migrations shipped with the backend). "
                    "`init` and `serve` upgrade it by themselves; these commands do it, or show it, on their own.",
    )
    dsub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dsub.add_parser(
        "upgrade", parents=[common], help="migrate the database to the newest schema",
        description="Migrate the database ([database] url, or SQLite in data_dir) to the newest schema. "
                    "Safe to repeat and to run from several instances at once; nothing is lost.",
    ).set_defaults(run=_run("db_upgrade"))
    dsub.add_parser(
        "current", parents=[common], help="print the schema revision the database is at",
        description="Print the database's engine, its schema revision and the newest this backend knows.",
    ).set_defaults(run=_run("db_current"))
    bsub.add_parser(
        "audit-verify", parents=[common], help="check the backend audit trail's chain and signatures",
        description="Check the backend's own audit trail: every entry's signature and the hash chain.",
    ).set_defaults(run=_run("audit_verify"))


def _add_user_parser(bsub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    user = bsub.add_parser("user", help="people who sign in to the review pages",
                           description="Accounts that sign in to the review pages with a password "
                                       "(docs/review.md), and which camera each officer wears.")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    ua = usub.add_parser("add", parents=[common], help="create an account that signs in with a password",
                         description="Create an account; the password is asked for twice (or read from "
                                     "standard input with --password-stdin). Only its argon2 hash is kept.")
    ua.add_argument("name", help="the person's name, as the audit trail will show it")
    ua.add_argument("--role", choices=ROLES, required=True,
                    help="admin, supervisor, reviewer, officer (own recordings only) or auditor")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    ua.set_defaults(run=_run("user_add"))
    up = usub.add_parser("password", parents=[common], help="set a new password (signs the person out)",
                         description="Set a new password for an account and end its sessions.")
    up.add_argument("name", help="the account")
    up.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    up.set_defaults(run=_run("user_password"))
    usub.add_parser("list", parents=[common], help="list accounts, roles and camera assignments",
                    description="List the accounts, their roles and the cameras assigned to officers."
                    ).set_defaults(run=_run("user_list"))
    us = usub.add_parser("assign", parents=[common], help="record that an officer wears a camera from now on",
                         description="Record that NAME wears camera SERIAL from --since (default now) until "
                                     "the camera is assigned to someone else; recordings started in that time "
                                     "are NAME's (an officer sees only their own).")
    us.add_argument("name", help="the officer's account")
    us.add_argument("serial", help="the camera's serial, e.g. BC-0417")
    us.add_argument("--since", metavar="UTC", help="ISO 8601 UTC start, e.g. 2026-12-01T06:00:00Z (default now)")
    us.set_defaults(run=_run("user_assign"))


def _add_retention_parsers(bsub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cat = bsub.add_parser("category", help="recording categories and their retention",
                          description="Categories a reviewer gives recordings; each keeps its recordings for "
                                      "its retention period after they end (the longest category wins).")
    csub = cat.add_subparsers(dest="category_command", required=True, metavar="ACTION")
    ca = csub.add_parser("add", parents=[common], help="add a category",
                         description="Add a category with its retention period.")
    ca.add_argument("name", help='e.g. "Evidence - crime"')
    ca.add_argument("--days", type=int, required=True, help="keep its recordings this many days after they end")
    ca.set_defaults(run=_run("category_add"))
    csub.add_parser("list", parents=[common], help="list the categories",
                    description="List the categories and their retention.").set_defaults(run=_run("category_list"))
    ret = bsub.add_parser("retention", help="delete recordings whose retention is over",
                          description="Retention of recordings (docs/review.md).")
    rsub = ret.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    rr = rsub.add_parser("run", parents=[common], help="delete what has expired and is not held by an open case",
                         description="Delete every recording past its retention and not in an open case, from "
                                     "stores that allow it; each deletion goes to the audit trail; prints what "
                                     "it did.")
    rr.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")
    rr.set_defaults(run=_run("retention_run"))


def _run(name: str):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        try:
            from . import commands
        except ImportError as e:
            print(f"bodycam: {MISSING_EXTRAS} ({e.name} is missing)", file=sys.stderr)
            return 2
        return getattr(commands, name)(args)

    return run
