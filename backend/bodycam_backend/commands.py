"""The bodies of `bodycam backend` subcommands (parsers in cli.py)."""

from __future__ import annotations

import argparse
import logging
import sys

from bodycam import logs
from bodycam.clock import iso_utc

from . import anchor
from . import config as configmod
from .context import Backend, cli_actor, initialise
from .data import devices, people, uploads

log = logging.getLogger("bodycam.backend")


def _open(args: argparse.Namespace, *, store: bool = False) -> Backend:
    return Backend.open(configmod.load(args.config), with_store=store)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .api import build_app
    from .http_protocol import MAX_HEAD_BYTES, BodycamH11Protocol

    cfg = configmod.load(args.config)
    handler = logs.setup(cfg.server.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.propagate = False
        lg.setLevel(cfg.server.log_level.upper())
    backend = Backend.open(cfg)
    sole = backend.db.engine == "sqlite"  # the embedded backend is one process; PostgreSQL: maybe a fleet
    if sole:  # what a previous process held is free: it is gone
        backend.tus.forget_dead_leases()
        backend.admission.forget_all()
    expired = backend.tus.expire_stale(int(cfg.limits.upload_expiry_hours * 3600e9))
    # Others may be serving from the same staging directory: leave what they may be writing right now.
    grace = 0.0 if sole else 2 * max(cfg.limits.body_idle_seconds, cfg.limits.upload_lease_seconds) + 60
    recovered = backend.ingest.recover(grace_s=grace)
    resumable = uploads.count_open(backend.db)
    log.info(
        "backend starting",
        extra={
            "event": "start",
            "data": {
                "host": cfg.server.host,
                "port": cfg.server.port,
                "storage": cfg.storage.backend,
                "data_dir": str(cfg.data_dir),
                "database": backend.db.engine,
                "instance": backend.tus.instance,
                "staging_dir": str(cfg.staging_dir),
                "open_uploads": resumable,
                "expired_uploads": expired,
                "orphaned_staging_files": recovered["orphaned"],
                "store_files_restored": recovered["restored"],
                "max_concurrent_uploads": cfg.admission.max_concurrent_uploads,
            },
        },
    )
    app = build_app(backend, bench_put_route=cfg.server.bench_put)
    try:
        uvicorn.run(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            log_config=None,
            access_log=False,
            http=BodycamH11Protocol,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            proxy_headers=True,
            forwarded_allow_ips=cfg.server.forwarded_allow_ips,
            log_level=cfg.server.log_level,
            timeout_graceful_shutdown=5,
        )
    finally:
        backend.close()
    return 0


def init(args: argparse.Namespace) -> int:
    cfg = configmod.load(args.config)
    created = initialise(cfg)
    b = Backend.open(cfg, with_store=True)  # also checks the S3 bucket and its Object Lock
    print(
        f"backend data in {cfg.data_dir} ({'created' if created else 'already there'}); "
        f"receipt key {b.signer.key_id[:16]}..., storage {cfg.storage.backend}"
    )
    b.close()
    return 0


def token_create(args: argparse.Namespace) -> int:
    from .auth import create_person

    b = _open(args)
    try:
        token = create_person(b.db, args.name, args.role)
    except ValueError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    b.trail.record(cli_actor(), "token_create", f"person:{args.name}", role=args.role)
    print(token)
    return 0


def token_list(args: argparse.Namespace) -> int:

    b = _open(args)
    for r in people.all_people(b.db):
        print(
            f"{r['name']}\t{r['role']}\t{iso_utc(r['created_ns'])}\t"
            f"{'disabled' if r['disabled'] else 'active'}"
        )
    return 0


def _password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def user_add(args: argparse.Namespace) -> int:
    from .accounts import add_user

    b = _open(args)
    try:
        add_user(b.db, args.name, args.role, _password(args))
    except ValueError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    b.trail.record(cli_actor(), "user_add", f"person:{args.name}", role=args.role)
    print(f"{args.name} ({args.role}) can sign in to the review pages")
    return 0


def user_password(args: argparse.Namespace) -> int:
    from .accounts import set_password

    b = _open(args)
    try:
        set_password(b.db, args.name, _password(args))
    except ValueError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    b.trail.record(cli_actor(), "user_password", f"person:{args.name}")
    print(f"{args.name}: password set; their sessions were ended")
    return 0


def user_list(args: argparse.Namespace) -> int:

    b = _open(args)
    worn: dict[str, list[str]] = {}
    for a in people.assignments(b.db):
        if a["until_ns"] is None:
            worn.setdefault(a["name"], []).append(f"{a['serial']} since {iso_utc(a['from_ns'])}")
    for r in people.accounts(b.db):
        print(f"{r['name']}\t{r['role']}\t{'disabled' if r['disabled'] else 'active'}\t"
              f"{'password' if r['password_ns'] else 'token only'}\t{', '.join(worn.get(r['name'], [])) or '-'}")
    return 0


def user_assign(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from .db import now_ns
    from .enrol import check_serial

    b = _open(args)
    try:
        serial = check_serial(args.serial)
        if people.account(b.db, args.name) is None:
            raise ValueError(f"no account named {args.name!r}; create it with 'bodycam backend user add'")
        since = now_ns()
        if args.since:
            try:
                when = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
                since = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1e9)
            except ValueError:
                raise ValueError(f"--since {args.since!r}: give ISO 8601 UTC, e.g. 2026-12-01T06:00:00Z") from None
    except ValueError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    people.assign(b.db, serial, args.name, since)
    b.trail.record(cli_actor(), "assign", f"device:{serial}", person=args.name, since_utc=iso_utc(since))
    print(f"{serial} is worn by {args.name} from {iso_utc(since)}")
    return 0


def enrol_token(args: argparse.Namespace) -> int:
    from .enrol import issue_token

    b = _open(args)
    actor = cli_actor()
    try:
        token, expires = issue_token(
            b.db, args.serial, ttl_hours=b.cfg.enrolment.token_ttl_hours, created_by=actor.name
        )
    except ValueError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    b.trail.record(actor, "enrol_token", f"device:{args.serial}", expires_utc=iso_utc(expires))
    print(token)
    print(f"one-time enrolment token for {args.serial}, valid until {iso_utc(expires)}", file=sys.stderr)
    return 0


def revoke(args: argparse.Namespace) -> int:
    from .enrol import revoke as do_revoke

    b = _open(args)
    if devices.get(b.db, args.serial) is None:
        print(f"bodycam: no device {args.serial!r} is known to this backend", file=sys.stderr)
        return 2
    changed = do_revoke(b.db, args.serial)
    b.trail.record(cli_actor(), "revoke", f"device:{args.serial}", changed=changed)
    print(f"{args.serial}: revoked" + ("" if changed else " (it already was)"))
    return 0


def export(args: argparse.Namespace) -> int:
    from .export import export_recording

    b = _open(args, store=True)
    try:
        n = export_recording(b, args.recording, args.out, actor=cli_actor())
    finally:
        b.close()
    print(
        f"exported {n} segments of {args.recording} to {args.out}; check it with: bodycam verify {args.out}"
    )
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    b = _open(args, store=True)
    check = anchor.verify_trail(b)
    print(f"audit trail: {'OK' if check.ok else 'FAILED'} ({check.entries} entries, "
          f"{check.checkpoints} checkpoints anchored in the store)")
    for e in check.errors:
        print(f"error: {e}")
    return 0 if check.ok else 1


def category_add(args: argparse.Namespace) -> int:
    from .data import retention as q
    from .db import now_ns

    b = _open(args)
    name = args.name.strip()
    if not name or len(name) > 80:
        print("bodycam: give a category name of 1 to 80 characters", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 36500:
        print("bodycam: --days must be between 1 and 36500", file=sys.stderr)
        return 2
    if q.category(b.db, name) is not None:
        print(f"bodycam: category {name!r} exists already; its retention cannot be changed", file=sys.stderr)
        return 2
    q.add_category(b.db, name, args.days, cli_actor().name, now_ns())
    b.trail.record(cli_actor(), "category_add", f"category:{name}", days=args.days)
    print(f"category {name!r}: recordings kept {args.days} days after they end")
    return 0


def category_list(args: argparse.Namespace) -> int:
    from .data import retention as q

    b = _open(args)
    for r in q.categories(b.db):
        print(f"{r['name']}\t{r['retention_days']} days")
    return 0


def retention_run(args: argparse.Namespace) -> int:
    from . import retention, review

    b = _open(args, store=True)
    try:
        review.index(b)
        outcomes = retention.run(b, who=cli_actor(), dry_run=args.dry_run)
    finally:
        b.close()
    for o in outcomes:
        print(o.line())
    deleted = sum(o.action in ("deleted", "would_delete") for o in outcomes)
    kept = sum(o.action == "kept" for o in outcomes)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"retention: {verb} {deleted} recording{'s' * (deleted != 1)}, kept {kept} past retention "
          "(held or refused by the store)")
def db_upgrade(args: argparse.Namespace) -> int:
    from .data import migrate, open_database

    db = open_database(configmod.load(args.config), migrate=False)
    try:
        before, after = migrate.upgrade(db)
    finally:
        db.close()
    print(f"database ({db.engine}) at revision {after}" + ("" if before == after else f" (was {before or 'none'})"))
    return 0


def db_current(args: argparse.Namespace) -> int:
    from .data import migrate, open_database

    db = open_database(configmod.load(args.config), migrate=False)
    try:
        rev = migrate.current(db)
    finally:
        db.close()
    state = "up to date" if rev == migrate.HEAD else f"behind: run 'bodycam backend db upgrade' to reach {migrate.HEAD}"
    print(f"database ({db.engine}) at revision {rev or 'none'}; {state}")
    return 0
