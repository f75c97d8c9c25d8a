"""Whole-image operations on plain files: read the base's partition table, cut partitions out, put an
image together again. sfdisk works on the image file itself; nothing is attached or mounted.
"""

from __future__ import annotations

import json
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

from .progress import Progress
from .tools import ImageError, run

SECTOR = 512
CHUNK = 1 << 20
ALIGN_SECTORS = 8192  # 4 MiB, as Raspberry Pi OS aligns its partitions
FAT_TYPES = {"b", "c", "e", "6"}
LINUX_TYPE = "83"
XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # sectors
    size: int  # sectors
    type: str  # MBR type, hex without 0x: "c" (FAT32 LBA), "83" (Linux)

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def length(self) -> int:
        return self.size * SECTOR

    @property
    def end(self) -> int:
        """First sector after the partition."""
        return self.start + self.size


@dataclass(frozen=True)
class Layout:
    label_id: str  # "0x1a2b3c4d": Raspberry Pi OS names partitions PARTUUID=1a2b3c4d-0N
    partitions: tuple[Partition, ...]

    @property
    def partuuid_prefix(self) -> str:
        return self.label_id.removeprefix("0x").lower().zfill(8)

    def script(self) -> str:
        """An sfdisk script that recreates this table."""
        lines = ["label: dos", f"label-id: {self.label_id}", "unit: sectors", "sector-size: 512", ""]
        lines += [f"start={p.start}, size={p.size}, type={p.type}" for p in self.partitions]
        return "\n".join(lines) + "\n"


def read_layout(image: Path, *, what: str = "image") -> Layout:
    proc = run(["sfdisk", "--json", image], what=f"{what} {image}", ok_codes=(0, 1))
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ImageError(f"{what} {image}: no partition table (is it a Raspberry Pi OS .img or .img.xz?)")
    table = json.loads(proc.stdout)["partitiontable"]
    if table.get("label") != "dos":
        raise ImageError(
            f"{what} {image}: partition table is {table.get('label')}, expected MBR (dos) "
            "as in Raspberry Pi OS images"
        )
    parts = []
    for i, p in enumerate(table.get("partitions", []), 1):
        parts.append(
            Partition(number=i, start=int(p["start"]), size=int(p["size"]), type=str(p["type"]).lower())
        )
    return Layout(label_id=str(table.get("id", "0x00000000")).lower(), partitions=tuple(parts))


def check_base_layout(layout: Layout, image: Path) -> tuple[Partition, Partition]:
    """Raspberry Pi OS: partition 1 FAT boot, partition 2 ext4 root, nothing else."""
    ps = layout.partitions
    if len(ps) != 2 or ps[0].type not in FAT_TYPES or ps[1].type != LINUX_TYPE:
        found = ", ".join(f"{p.number}:type {p.type}" for p in ps) or "none"
        raise ImageError(
            f"base image {image}: expected 2 partitions (1 FAT boot, 2 Linux root) as in "
            f"Raspberry Pi OS Lite, found {found}"
        )
    return ps[0], ps[1]


def _is_zero(chunk: bytes) -> bool:
    return chunk.count(0) == len(chunk)


def copy_range(
    src: Path, offset: int, length: int, dst: Path, *, dst_offset: int = 0, counter: object | None = None
) -> None:
    """Copy bytes, leaving holes for all-zero megabytes (images are mostly empty space)."""
    with open(src, "rb") as fin, open(dst, "r+b" if dst.exists() else "wb") as fout:
        fin.seek(offset)
        pos = 0
        while pos < length:
            chunk = fin.read(min(CHUNK, length - pos))
            if not chunk:
                raise ImageError(f"{src}: ends {length - pos} bytes early; the image is truncated")
            if not _is_zero(chunk):
                fout.seek(dst_offset + pos)
                fout.write(chunk)
            pos += len(chunk)
            if counter is not None:
                counter.add(len(chunk))  # type: ignore[attr-defined]
        end = dst_offset + length
        fout.seek(0, os.SEEK_END)
        if fout.tell() < end:
            fout.truncate(end)


def extract(image: Path, part: Partition, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    copy_range(image, part.offset, part.length, dst)


def open_base(base: Path, workdir: Path, progress: Progress) -> Path:
    """The base as a raw image file: an .img is used in place, an .xz is decompressed into workdir."""
    if not base.exists():
        raise ImageError(f"base image {base}: not found")
    if not base.is_file():
        raise ImageError(f"base image {base}: not a file")
    with open(base, "rb") as f:
        magic = f.read(len(XZ_MAGIC))
    if magic != XZ_MAGIC:
        if base.stat().st_size < 2 * SECTOR:
            raise ImageError(f"base image {base}: too small to be a disk image")
        return base
    out = workdir / "base.img"
    total = base.stat().st_size
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        with open(base, "rb") as fin, open(out, "wb") as fout, progress.bytes("decompressing", total) as c:
            pos = 0
            while chunk := fin.read(CHUNK):
                c.add(len(chunk))
                data = dec.decompress(chunk)
                for i in range(0, len(data), CHUNK):
                    piece = data[i : i + CHUNK]
                    if _is_zero(piece):
                        fout.seek(pos + len(piece))
                    else:
                        fout.seek(pos)
                        fout.write(piece)
                    pos += len(piece)
            if not dec.eof:
                raise ImageError(f"base image {base}: the .xz file is truncated; download it again")
            fout.truncate(pos)
    except lzma.LZMAError as e:
        raise ImageError(f"base image {base}: corrupt .xz data ({e}); download it again") from None
    return out


def assemble(out: Path, layout: Layout, sources: dict[int, Path], progress: Progress) -> None:
    """Write a fresh image: the partition table (sfdisk on the file), then each partition's bytes."""
    last = max(p.end for p in layout.partitions)
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(last * SECTOR)
    run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", out],
        what="writing the partition table",
        input=layout.script().encode(),
    )
    total = sum(p.length for p in layout.partitions)
    with progress.bytes("writing image", total) as c:
        for p in layout.partitions:
            src = sources[p.number]
            size = src.stat().st_size
            if size > p.length:
                raise ImageError(f"internal: partition {p.number} content ({size} bytes) exceeds its size")
            copy_range(src, 0, size, out, dst_offset=p.offset, counter=c)
            c.add(p.length - size)


def align_up(sectors: int, to: int = ALIGN_SECTORS) -> int:
    return -(-sectors // to) * to
