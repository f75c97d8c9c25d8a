"""`bodycam offload`: one upload pass in the foreground, without the daemon (technician, card reader).

The daemon does the same by itself whenever the camera is docked. This takes the data directory's
lock, so it refuses to run beside a daemon (two writers would fork the audit log's chain). Exit
status: 0 everything pending was acknowledged and freed (or kept), 1 something was rejected or
failed (kept on the device; see the message), 2 the backend refused the device or a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import asdict

from .cli_enrol import load_config
from .errors import BodycamError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "offload", help="upload pending segments and the audit log now (no daemon)",
        description="One offload pass without the daemon: upload every segment not yet acknowledged, "
                    "then the audit log; a segment is freed only after the backend's signed receipt "
                    "checks out.")
    p.add_argument("--config", required=True, help="device config TOML")
    p.add_argument("--data", help="override [device] data_dir")
    p.add_argument("--backend", metavar="URL", help="override [offload] backend_url")
    p.add_argument("--json", action="store_true", help="print the pass result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, so `bodycam --help` does not load requests and the daemon.
    from .clock import SystemClock
    from .daemon.runner import DataDirLock
    from .device import boot_id
    from .evidence.audit import AuditLog
    from .evidence.signer import FileKeySigner
    from .layout import DataLayout
    from .offload import clocksync
    from .offload import enrol as enrolmod
    from .offload.client import BackendClient
    from .offload.uploader import Uploader

    cfg = load_config(args)
    o = cfg.offload
    if not o.backend_url:
        raise BodycamError("no backend: pass --backend URL or set [offload] backend_url")
    layout = DataLayout(cfg.data_dir)
    layout.create()
    lock = DataDirLock(cfg.data_dir / "run")
    signer = FileKeySigner.load(cfg.key_path)
    try:
        enrolment = enrolmod.load(enrolmod.EnrolPaths.of(cfg), signer)
        if enrolment is None:
            raise BodycamError("this camera is not enrolled: run 'bodycam enrol --config FILE --token TOKEN' "
                               "first")
        clock = SystemClock()
        audit = AuditLog(layout.audit_log, signer=signer, clock=clock, boot_id=boot_id())
        client = BackendClient(o.backend_url, signer, clock=clock, timeout=o.timeout_seconds,
                               verify=o.ca_file or o.verify_tls)
        try:
            setter = clocksync.system_clock_setter() if o.set_clock else None
            result = Uploader(layout=layout, serial=cfg.device.serial, client=client, pins=enrolment.pins,
                              config=o, clock=clock, audit=audit.append, clock_setter=setter
                              ).run_pass(threading.Event())
        finally:
            client.close()
            audit.close()
    finally:
        lock.release()
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(f"offload {result.outcome}: {len(result.uploaded)} segment(s) acknowledged"
              f" ({len(result.duplicates)} already held), {result.freed_bytes / 1e6:.1f} MB freed"
              + (f"; audit log up to entry {result.audit[1]}" if result.audit else ""))
        for what, seqs in (("rejected by the backend (kept, flagged)", result.rejected),
                           ("failed (kept)", result.failed)):
            if seqs:
                print(f"  {what}: sequence(s) {', '.join(map(str, seqs))}")
        if result.error:
            print(f"  error: {result.error}", file=sys.stderr)
    if result.outcome == "refused":
        return 2
    return 1 if (result.rejected or result.failed or result.error) else 0
