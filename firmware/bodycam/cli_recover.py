"""`bodycam recover`: seal segments left open by a crash, without starting the camera.

The daemon does this itself at every start; technicians run it on a card taken out of a camera.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config as configmod
from .clock import SystemClock
from .device import boot_id
from .evidence.audit import AuditLog
from .evidence.chain import ChainState
from .evidence.sealer import Sealer
from .evidence.signer import FileKeySigner
from .layout import DataLayout
from .recovery import recover


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recover", help="seal segments left open by a crash or power cut",
        description="Seal the segments a crash or power cut left open: the torn tail is cut, the "
                    "complete fragments are sealed with recovered: true. The daemon does this itself "
                    "at start; run it by hand only with the daemon stopped.")
    p.add_argument("--config", required=True, help="device config TOML")
    p.add_argument("--data", help="override [device] data_dir")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"device": {"data_dir": str(Path(args.data).resolve())}} if args.data else None
    cfg = configmod.load(args.config, overrides=overrides)
    layout = DataLayout(cfg.data_dir)
    layout.create()
    signer = FileKeySigner.load(cfg.key_path)
    chain = ChainState(layout.chain)
    audit = AuditLog(layout.audit_log, signer=signer, clock=SystemClock(), boot_id=boot_id())
    try:
        results = recover(layout.segments, chain=chain, sealer=Sealer(signer=signer, chain=chain),
                          serial=cfg.device.serial)
        for r in results:
            audit.append("segment_recovered", sequence=r.sequence, recording_id=r.recording_id, frames=r.frames,
                         bytes_kept=r.bytes_kept, bytes_cut=r.bytes_cut)
            print(f"recovered seg {r.sequence}: {r.frames} frames kept, {r.bytes_cut} torn bytes cut")
    finally:
        audit.close()
    if not results:
        print("nothing to recover")
    return 0
