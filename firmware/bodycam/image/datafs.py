"""The evidence partition: a fresh ext4 made with ``mkfs.ext4 -d`` from an (empty) staging tree.

It is small in the image and grown to the end of the card at first boot (online, journaled), so
the image stays quick to flash. Options that matter for evidence: a journal (power cuts), 4 KiB
blocks and the default inode ratio even though the image copy is small (it will be tens of GB),
room reserved for growing up to 1 TiB, no root-reserved blocks (the daemon keeps its own reserve).
UUID and directory hash seed are derived from the base image's disk id, so builds are reproducible.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from .tools import run

LABEL = "bodycam-data"
NAMESPACE = uuid.UUID("6f3c0d1e-5b7a-4c2e-9a41-b0d1ca3e0001")
MOUNT_OPTIONS = "defaults,noatime,nodev,nosuid,noexec"
MAX_GROW_BLOCKS = 1 << 28  # 1 TiB of 4 KiB blocks


def fixed_uuid(label_id: str, purpose: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{label_id}/{purpose}"))


def make(out: Path, size_bytes: int, stage: Path, *, label_id: str, env: Mapping[str, str]) -> None:
    out.unlink(missing_ok=True)
    stage.mkdir(parents=True, exist_ok=True)
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-T",
            "default",
            "-m",
            "0",
            "-L",
            LABEL,
            "-U",
            fixed_uuid(label_id, "data-fs"),
            "-E",
            f"hash_seed={fixed_uuid(label_id, 'data-hash')},root_owner=0:0,resize={MAX_GROW_BLOCKS}",
            "-d",
            stage,
            out,
            f"{size_bytes // 1024}K",
        ],
        what="creating the evidence partition",
        env=env,
    )
