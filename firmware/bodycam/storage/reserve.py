"""The free-space reserve: new footage stops before the disk fills; evidence is never deleted to make room."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import StorageFullError

FreeBytes = Callable[[Path], int]


def statvfs_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class StorageGuard:
    """Answers 'may I write N more bytes?' against a reserve; the probe is injectable for tests."""

    def __init__(self, data_dir: Path, *, reserve_bytes: int, free_bytes: FreeBytes = statvfs_free) -> None:
        self.data_dir = data_dir
        self.reserve_bytes = reserve_bytes
        self._free_bytes = free_bytes

    def free_bytes(self) -> int:
        return self._free_bytes(self.data_dir)

    def headroom(self) -> int:
        return self.free_bytes() - self.reserve_bytes

    def check(self, upcoming_bytes: int = 0) -> None:
        room = self.headroom()
        if room < upcoming_bytes:
            raise StorageFullError(
                f"storage full: {max(room, 0) // 1_000_000} MB above the {self.reserve_bytes // 1_000_000} MB "
                f"reserve in {self.data_dir}; dock the camera to offload footage")
