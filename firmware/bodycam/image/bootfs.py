"""The boot partition: copied out of the base with mtools, cleaned, and rebuilt with mkfs.vfat.

Rebuilding (instead of editing in place) gives a FAT whose bytes depend only on the files: the volume
id and label are the base's, every timestamp is the build epoch, and files go in sorted order.
Files that would let someone in without our say are dropped: Raspberry Pi Imager's ``userconf.txt``
(a password hash), ``ssh``/``ssh.txt`` (turns on password SSH), ``firstrun.sh`` and ``custom.toml``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .tools import ImageError, run

REMOVE = ("ssh", "ssh.txt", "userconf", "userconf.txt", "firstrun.sh", "custom.toml")
BATCH = 100


@dataclass(frozen=True)
class FatInfo:
    label: str
    volume_id: int
    fat32: bool


def read_info(fat: Path) -> FatInfo:
    with open(fat, "rb") as f:
        bs = f.read(512)
    if (
        len(bs) < 512
        or bs[510:512] != b"\x55\xaa"
        or struct.unpack_from("<H", bs, 11)[0] not in (512, 1024, 2048, 4096)
    ):
        raise ImageError(
            "base image: partition 1 is not a FAT file system (expected the Raspberry Pi boot partition)"
        )
    fat32 = struct.unpack_from("<H", bs, 22)[0] == 0
    ext = 64 if fat32 else 36
    volume_id = struct.unpack_from("<I", bs, ext + 3)[0] if bs[ext + 2] == 0x29 else 0
    label = bs[ext + 7 : ext + 18].decode("ascii", errors="replace").strip() if bs[ext + 2] == 0x29 else ""
    return FatInfo(label="" if label == "NO NAME" else label, volume_id=volume_id, fat32=fat32)


def extract(fat: Path, dest: Path, env: Mapping[str, str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    proc = run(["mdir", "-b", "-i", fat, "::/"], what="reading the boot partition", env=env, ok_codes=(0, 1))
    if proc.stdout.strip():
        run(
            ["mcopy", "-s", "-n", "-m", "-i", fat, "::/*", f"{dest}/"],
            what="copying the boot partition",
            env=env,
        )


def clean(stage: Path) -> list[str]:
    """Remove files that would add users, passwords or password SSH; returns the names removed."""
    removed = []
    for name in REMOVE:
        for p in stage.iterdir():
            if p.name.lower() == name and p.is_file():
                p.unlink()
                removed.append(p.name)
    return sorted(removed)


def normalise_times(tree: Path, epoch: int) -> None:
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(tree, (epoch, epoch))


def rebuild(
    stage: Path, out: Path, size_bytes: int, info: FatInfo, epoch: int, env: Mapping[str, str]
) -> None:
    """mkfs.vfat a fresh file system of the partition's size and copy ``stage`` in, sorted."""
    normalise_times(stage, epoch)
    out.unlink(missing_ok=True)
    cmd: list[str | Path] = ["mkfs.vfat", "-C", "--invariant", "-i", f"{info.volume_id:08X}"]
    if info.label:
        cmd += ["-n", info.label]
    if info.fat32:
        cmd += ["-F", "32"]
    run([*cmd, out, str(size_bytes // 1024)], what="creating the boot file system", env=env)
    for dirpath, dirnames, filenames in sorted_walk(stage):
        rel = Path(dirpath).relative_to(stage)
        target = "::/" + ("" if rel == Path(".") else rel.as_posix() + "/")
        for d in dirnames:
            run(["mmd", "-i", out, target + d], what="creating a boot directory", env=env)
        files = [Path(dirpath) / f for f in filenames]
        for i in range(0, len(files), BATCH):
            run(["mcopy", "-m", "-i", out, *files[i : i + BATCH], target], what="copying boot files", env=env)


def sorted_walk(top: Path):  # type: ignore[no-untyped-def]
    """os.walk with names sorted (byte order), so files land in the same clusters on every build."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        yield dirpath, list(dirnames), sorted(filenames)
