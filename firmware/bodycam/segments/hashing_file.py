"""A write-only file that hashes what passes through it, so media is never read back to hash it."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path


class HashingFile(io.RawIOBase):
    """Sequential writes only: fragmented MP4 needs no seeks, and a seek would break the running hash."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._sha = hashlib.sha256()
        self.size = 0
        self._unsynced = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        n = len(view)
        while view:  # the hash and size follow what reached the file, even if a write fails part way
            written = os.write(self._fd, view)
            self._sha.update(view[:written])
            self.size += written
            self._unsynced += written
            view = view[written:]
        return n

    def sync(self) -> bool:
        """fsync if anything was written since the last one; True if it synced."""
        if not self._unsynced:
            return False
        os.fsync(self._fd)
        self._unsynced = 0
        return True

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> None:
        if not self.closed and self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1
        super().close()
