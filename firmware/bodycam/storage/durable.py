"""Writes that survive a power cut: temp name, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """A rename is only durable once its directory entry is on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes, flags: int, mode: int) -> None:
    """Write and fsync ``path``; if that fails (a full disk), the half-written file is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Either the old content or the new one is on disk after a crash, never a torn mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a read-only leftover from a crash would refuse O_WRONLY
    _write_synced(tmp, data, os.O_TRUNC, mode)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def create_once(path: Path, data: bytes, *, mode: int = 0o600) -> bool:
    """Write a file that must never be replaced (a device key); False if it already exists.

    Written to a temp name, fsynced, then hard-linked into place: the link fails if the file exists,
    and a power cut leaves the file either absent or complete, never a torn key that blocks a retry.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    _write_synced(tmp, data, os.O_EXCL, mode)
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return created
