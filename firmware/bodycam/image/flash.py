"""`bodycam image flash IMAGE DEVICE`: write an image to an SD card, then read it back and compare.

Safety first, in this order, each a refusal with one line saying why:
  * DEVICE must exist and be a whole disk (not a partition); a regular file needs --force
  * never the disk holding / (not even with --force)
  * never a disk with a mounted partition, active swap or a device-mapper/LVM holder: unmount first
  * removable media only (USB card readers, SD/MMC slots), unless --force
  * the image must fit; a reader with no card (size 0) says so
  * it states model and size and asks for "yes" unless --yes; with no terminal and no --yes it refuses
Block devices are also opened with O_EXCL, so the kernel refuses a disk something else holds.

Everything read from the system goes through ``SysProbe`` (``/sys``, ``/proc``, ``os.stat``), so the
checks are tested with fake sysfs trees; the write and read-back are tested on an image file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .progress import Progress
from .tools import ImageError, human

CHUNK = 4 << 20
BLKFLSBUF = 0x1261  # flush the buffer cache, so the read-back comes from the card, not from RAM
BLKRRPART = 0x125F  # re-read the partition table


@dataclass(frozen=True)
class Target:
    path: Path
    kind: str  # "block" or "file"
    size: int
    name: str = ""  # sdb, mmcblk0
    model: str = ""
    removable: bool = False
    problems: tuple[str, ...] = ()  # refusals --force cannot override
    forceable: tuple[str, ...] = ()  # refusals --force overrides

    def describe(self) -> str:
        if self.kind == "file":
            return f"{self.path} (a regular file, {human(self.size)})"
        what = "removable" if self.removable else "NOT removable"
        return f"{self.path}: {self.model or 'unknown model'}, {human(self.size)}, {what}"


@dataclass
class SysProbe:
    """Where the facts come from; tests point the roots at fake trees and replace ``stat``."""

    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    stat: Callable[[Path], os.stat_result] = field(default=os.stat)

    def _read(self, path: Path, default: str = "") -> str:
        try:
            return path.read_text().strip()
        except OSError:
            return default

    def sysfs_dir(self, major: int, minor: int) -> Path | None:
        p = self.sys_root / "dev" / "block" / f"{major}:{minor}"
        return p.resolve() if p.exists() else None

    def disk_of(self, major: int, minor: int) -> str | None:
        """The whole-disk name holding device major:minor (itself if it is a disk)."""
        d = self.sysfs_dir(major, minor)
        if d is None:
            return None
        return d.parent.name if (d / "partition").exists() else d.name

    def mounted(self) -> set[str]:
        """major:minor of every mounted block device."""
        out = set()
        for line in self._read(self.proc_root / "self" / "mountinfo").splitlines():
            f = line.split()
            if len(f) > 2 and not f[2].startswith("0:"):
                out.add(f[2])
        return out

    def root_devnum(self) -> tuple[int, int] | None:
        for line in self._read(self.proc_root / "self" / "mountinfo").splitlines():
            f = line.split()
            if len(f) > 4 and f[4] == "/":
                major, minor = f[2].split(":")
                return int(major), int(minor)
        return None

    def swaps(self) -> set[str]:
        """Names (sda2, dm-0) of active swap devices."""
        lines = self._read(self.proc_root / "swaps").splitlines()[1:]
        return {Path(ln.split()[0]).name for ln in lines if ln.split()}

    def block(self, name: str) -> Path:
        return self.sys_root / "block" / name

    def partitions(self, name: str) -> list[str]:
        d = self.block(name)
        return sorted(p.name for p in d.iterdir() if (p / "partition").exists()) if d.is_dir() else []

    def devnum(self, name: str, part: str | None = None) -> str:
        d = self.block(name) / part if part else self.block(name)
        return self._read(d / "dev")

    def holders(self, name: str) -> list[str]:
        out = []
        for d in [self.block(name)] + [self.block(name) / p for p in self.partitions(name)]:
            h = d / "holders"
            if h.is_dir():
                out += sorted(x.name for x in h.iterdir())
        return out

    def size(self, name: str) -> int:
        return int(self._read(self.block(name) / "size", "0") or 0) * 512

    def removable(self, name: str) -> bool:
        """USB readers set removable=1; built-in SD/MMC slots do not, but their media is a card."""
        if self._read(self.block(name) / "removable") == "1":
            return True
        return self._read(self.block(name) / "device" / "type") in ("SD", "MMC")

    def model(self, name: str) -> str:
        dev = self.block(name) / "device"
        parts = [self._read(dev / "vendor"), self._read(dev / "model") or self._read(dev / "name")]
        return " ".join(p for p in parts if p)


def inspect(path: Path, probe: SysProbe) -> Target:
    """Everything the safety checks need to know about DEVICE, without touching it."""
    try:
        st = probe.stat(path)
    except FileNotFoundError:
        raise ImageError(
            f"{path}: no such device; list disks with 'lsblk -d -o NAME,SIZE,MODEL,RM'"
        ) from None
    if stat.S_ISREG(st.st_mode):
        return Target(path, "file", st.st_size, forceable=(f"{path} is a regular file, not a disk",))
    if not stat.S_ISBLK(st.st_mode):
        raise ImageError(f"{path}: not a block device; give a whole disk such as /dev/sdb or /dev/mmcblk0")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    sysdir = probe.sysfs_dir(major, minor)
    if sysdir is None:
        raise ImageError(f"{path}: not found in /sys/dev/block; is it a real disk?")
    if (sysdir / "partition").exists():
        raise ImageError(f"{path} is a partition; give the whole disk (/dev/{sysdir.parent.name})")
    name = sysdir.name
    problems: list[str] = []
    forceable: list[str] = []
    root = probe.root_devnum()
    if root is not None and probe.disk_of(*root) == name:
        problems.append(f"{path} holds the running system's root file system")
    mounted = probe.mounted()
    busy = [p for p in [None, *probe.partitions(name)] if probe.devnum(name, p) in mounted]
    if busy:
        parts = ", ".join(f"/dev/{p or name}" for p in busy)
        problems.append(
            f"{path} is mounted ({parts}): unmount it first, e.g. 'sudo umount {parts.split(', ')[0]}'"
        )
    swap = probe.swaps() & {name, *probe.partitions(name)}
    if swap:
        problems.append(f"{path} has active swap ({', '.join(sorted(swap))}): swapoff first")
    holders = probe.holders(name)
    if holders:
        problems.append(f"{path} is in use by {', '.join(holders)} (LVM, RAID or dm-crypt)")
    removable = probe.removable(name)
    if not removable:
        forceable.append(f"{path} is not a removable disk (an internal drive?)")
    return Target(
        path,
        "block",
        probe.size(name),
        name=name,
        model=probe.model(name),
        removable=removable,
        problems=tuple(problems),
        forceable=tuple(forceable),
    )


def check(target: Target, image_size: int, *, force: bool) -> None:
    if target.problems:
        raise ImageError(f"refusing: {target.problems[0]}")
    if target.forceable and not force:
        raise ImageError(f"refusing: {target.forceable[0]}; pass --force if you are sure")
    if target.kind == "block" and target.size == 0:
        raise ImageError(f"{target.path}: no medium; insert the SD card")
    if target.kind == "block" and target.size < image_size:
        raise ImageError(
            f"{target.path} holds {human(target.size)}, the image needs {human(image_size)}: "
            "use a bigger card"
        )


def confirm(target: Target, image: Path, image_size: int, *, yes: bool, stdin: TextIO, out: TextIO) -> None:
    print(f"image:  {image} ({human(image_size)})", file=out)
    print(f"target: {target.describe()}", file=out)
    if yes:
        return
    if not stdin.isatty():
        raise ImageError("refusing to write without confirmation: no terminal to ask on; pass --yes")
    print(
        f"Everything on {target.path} will be erased. Type 'yes' to continue: ", end="", file=out, flush=True
    )
    if stdin.readline().strip().lower() != "yes":
        raise ImageError("not confirmed; nothing was written")


def _open_target(target: Target) -> int:
    flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_EXCL if target.kind == "block" else 0)
    try:
        return os.open(target.path, flags)
    except PermissionError:
        raise ImageError(f"{target.path}: permission denied; run as root (sudo)") from None
    except OSError as e:
        if e.errno == 16:  # EBUSY: the kernel's own "in use" answer to O_EXCL
            raise ImageError(
                f"{target.path} is in use (mounted or held by another program); unmount it"
            ) from None
        raise ImageError(f"{target.path}: cannot open for writing ({e.strerror})") from None


def write(image: Path, target: Target, progress: Progress) -> str:
    """Copy the image; returns its SHA-256 (computed from the bytes written)."""
    size = image.stat().st_size
    h = hashlib.sha256()
    fd = _open_target(target)
    try:
        with open(image, "rb") as src, progress.bytes("writing", size) as c:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    try:
                        view = view[os.write(fd, view) :]
                    except OSError as e:
                        raise ImageError(
                            f"{target.path}: write failed after {human(c.done)} ({e.strerror}); "
                            "the card may be faulty or was removed"
                        ) from None
                c.add(len(chunk))
        progress.info("flushing to the card (this can take a while)")
        os.fsync(fd)
        if target.kind == "block":
            try:
                fcntl.ioctl(fd, BLKFLSBUF)
            except OSError:
                pass
        else:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return h.hexdigest()


def read_back(target: Target, size: int, progress: Progress) -> str:
    h = hashlib.sha256()
    try:
        with open(target.path, "rb") as f, progress.bytes("verifying", size) as c:
            left = size
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise ImageError(f"{target.path}: ended {human(left)} early while reading back")
                h.update(chunk)
                left -= len(chunk)
                c.add(len(chunk))
    except OSError as e:
        raise ImageError(f"{target.path}: read-back failed ({e.strerror}); the card may be faulty") from None
    return h.hexdigest()


def reread_partitions(target: Target) -> None:
    if target.kind != "block":
        return
    try:
        fd = os.open(target.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, BLKRRPART)
        finally:
            os.close(fd)
    except OSError:
        pass  # the kernel will see the new table next time the card is inserted


def flash(
    image: Path,
    device: Path,
    *,
    yes: bool = False,
    force: bool = False,
    probe: SysProbe | None = None,
    progress: Progress | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> str:
    """Check, confirm, write, read back; returns the verified SHA-256."""
    progress = progress or Progress()
    if not image.is_file():
        raise ImageError(f"image {image}: not found")
    with open(image, "rb") as f:
        if f.read(6) == b"\xfd7zXZ\x00":
            raise ImageError(f"image {image} is xz-compressed: decompress it first ('xz -dk {image}')")
    size = image.stat().st_size
    if size == 0:
        raise ImageError(f"image {image}: empty")
    target = inspect(device, probe or SysProbe())
    check(target, size, force=force)
    if target.kind == "file" and target.path.resolve() == image.resolve():
        raise ImageError("the image and the target are the same file")
    confirm(target, image, size, yes=yes, stdin=stdin or sys.stdin, out=out or sys.stderr)
    written = write(image, target, progress)
    readback = read_back(target, size, progress)
    if readback != written:
        raise ImageError(
            f"verification FAILED: {target.path} returned different data than was written "
            "(faulty or counterfeit card?); do not use it"
        )
    reread_partitions(target)
    progress.info(f"verified: sha256 {written} ({human(size)})")
    return written
