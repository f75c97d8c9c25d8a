"""`bodycam provision`: make sure this camera has its key, public key and CSR (first boot runs it).

Unlike `bodycam keygen` it succeeds when a key already exists (it never replaces one), so it can run
again after a power cut; it only creates what is missing.
"""

from __future__ import annotations

import argparse

from . import config as configmod
from . import provision


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "provision", help="create the device key (if missing), public key and CSR",
        description="First boot's key step: create the device key if there is none, write its public "
                    "key and a CSR for enrolment. Safe to repeat.")
    p.add_argument("--config", required=True, help="device config TOML")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = provision.ensure(configmod.load(args.config))
    print(f"device key: {result.key} ({'created' if result.created_key else 'kept'}); key id {result.key_id}")
    print(f"CSR: {result.csr}")
    return 0
