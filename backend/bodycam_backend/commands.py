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
