"""External tools (sfdisk, mtools, e2fsprogs, pip) behind one ``run`` that turns failures into one line.

Time-dependent tools get a fixed clock from the build epoch: e2fsprogs honours E2FSPROGS_FAKE_TIME
(mke2fs, debugfs, resize2fs) and E2FSCK_TIME (e2fsck); setuptools and mtools get SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import BodycamError


class ImageError(BodycamError, RuntimeError):
    """A build, flash or first-boot input is wrong or a tool failed; the message says what to do."""


# Which Debian package provides each tool, so a missing one gets an apt-get line.
PACKAGES = {
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "fsck.vfat": "dosfstools",
    "mcopy": "mtools",
    "mdir": "mtools",
    "mmd": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "xz": "xz-utils",
    "gpgv": "gpgv",
}

BUILD_TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mdir", "mmd", "mkfs.ext4", "debugfs", "e2fsck", "resize2fs")


def find_tool(name: str) -> str:
    """Absolute path of a tool; /usr/sbin is searched too because sudo-less PATHs often lack it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        pkg = PACKAGES.get(name, name)
        raise ImageError(f"{name} not found: install it with 'apt-get install {pkg}'")
    return path


def require(*names: str) -> None:
    missing = [n for n in names if not (shutil.which(n) or shutil.which(n, path="/usr/sbin:/sbin"))]
    if missing:
        pkgs = " ".join(sorted({PACKAGES.get(n, n) for n in missing}))
        raise ImageError(f"missing tools: {', '.join(missing)}; install them with 'apt-get install {pkgs}'")


def epoch_env(epoch: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every tool in a build: fixed clocks, C locale, UTC."""
    env = dict(os.environ)
    env.update(
        {
            "SOURCE_DATE_EPOCH": str(epoch),
            "E2FSPROGS_FAKE_TIME": str(epoch),
            "E2FSCK_TIME": str(epoch),
            "LC_ALL": "C",
            "TZ": "UTC",
            "MTOOLS_SKIP_CHECK": "1",
        }
    )
    env.update(extra or {})
    return env


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    input: bytes | None = None,  # noqa: A002
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; on failure raise ImageError naming ``what`` and the tool's last line of output."""
    argv = [str(c) for c in cmd]
    argv[0] = find_tool(argv[0]) if "/" not in argv[0] else argv[0]
    try:
        proc = subprocess.run(
            argv, input=input, capture_output=True, env=dict(env) if env else None, cwd=cwd, check=False
        )
    except OSError as e:
        raise ImageError(f"{what}: cannot run {argv[0]} ({e.strerror})") from None
    if proc.returncode not in ok_codes:
        detail = last_line(proc.stderr) or last_line(proc.stdout) or f"exit status {proc.returncode}"
        raise ImageError(f"{what}: {Path(argv[0]).name} failed: {detail}")
    return proc


def last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '1.5G', '4096' -> bytes (binary units: a card is partitioned in MiB)."""
    m = _SIZE.match(text)
    if not m:
        raise ImageError(f"size {text!r}: use a number with an optional K, M, G or T suffix, e.g. 256M")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
