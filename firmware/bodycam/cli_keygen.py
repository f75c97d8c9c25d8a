"""`bodycam keygen`: create the device key (on the device, never on a build machine)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import config as configmod
from .evidence.signer import generate_key, public_key_path
from .layout import ensure_writable_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keygen", help="create the device key (refuses to overwrite one)",
        description="Create the device's ECDSA P-256 signing key (mode 0600) and its public half, "
                    "on the device itself. An existing key is never overwritten.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="device config; the key goes to its key_file / data_dir")
    g.add_argument("--key", help="path of the private key file to create")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.key:
        path = Path(args.key)
    else:
        cfg = configmod.load(args.config)
        path = cfg.key_path
        ensure_writable_dir(cfg.data_dir)
    ensure_writable_dir(path.parent, what="key folder")
    signer = generate_key(path)
    print(f"device key: {path} (mode 0600)")
    print(f"public key: {public_key_path(path)}")
    print(f"key id:     {signer.key_id}")
    return 0
