"""`bodycam enrol`: get this camera's certificate from the evidence backend and pin the backend's key.

First boot runs it (bodycam-enrol.service, retried by its timer until the camera has been docked
once); the simulator runs it on a new simulated camera. It is idempotent: an enrolled camera says so
and exits 0, so it is safe to run at every boot. It never writes the audit log (the daemon may be
running and owns it); the daemon notices the new certificate by itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config as configmod
from .errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enrol", help="enrol with the evidence backend (one-time token), pin its key",
        description="Send the device's CSR and a one-time enrolment token to the backend, store the "
                    "certificate it issues and pin the backend's receipt key (docs/daemon.md section 5).")
    p.add_argument("--config", required=True, help="device config TOML")
    p.add_argument("--data", help="override [device] data_dir")
    p.add_argument("--backend", metavar="URL", help="override [offload] backend_url")
    p.add_argument("--token", help="one-time enrolment token (default: [offload] enrol_token)")
    p.set_defaults(run=run)


def load_config(args: argparse.Namespace) -> configmod.Config:
    overrides = {"device": {"data_dir": str(Path(args.data).resolve())}} if args.data else {}
    if getattr(args, "backend", None):
        overrides["offload"] = {"backend_url": args.backend}
    return configmod.load(args.config, overrides=overrides or None)


def run(args: argparse.Namespace) -> int:
    from .evidence.signer import FileKeySigner
    from .offload import enrol as enrolmod  # here, so `bodycam --help` does not load requests

    cfg = load_config(args)
    signer = FileKeySigner.load(cfg.key_path)
    paths = enrolmod.EnrolPaths.of(cfg)
    have = enrolmod.load(paths, signer)
    if have is not None:
        where = f" ({have.backend_url})" if have.backend_url else ""
        print(f"already enrolled: {cfg.device.serial}, key id {signer.key_id[:16]}..., certificate "
              f"{paths.cert}, backend key {have.pins.key_id[:16]}... pinned{where}")
        return 0
    url = cfg.offload.backend_url
    if not url:
        raise ConfigError("no backend to enrol with: pass --backend URL or set [offload] backend_url")
    done = enrolmod.enrol(cfg, signer, url=url, token=args.token or cfg.offload.enrol_token)
    print(f"enrolled {done.serial} with {url}: certificate {paths.cert} (valid until "
          f"{done.certificate.not_valid_after_utc:%Y-%m-%d}), backend key {done.pins.key_id[:16]}... pinned "
          f"in {paths.backend_dir}")
    return 0
