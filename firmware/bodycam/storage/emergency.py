"""Space kept back for the last words when the card fills under us.

The free-space reserve stops a recording before the card is full, but it is checked between writes:
another writer, or a card that reports free space it does not have, can still make a write fail with
ENOSPC. Sealing what was recorded then needs a little room (the cut-back media's manifest and
signature, the chain head) and so does the signed audit entry that says why the recording stopped.
This file holds that room: allocated (not sparse) while all is well, deleted at the moment of
ENOSPC, and allocated again once space is back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_BYTES = 1 << 20  # a manifest is ~2 KB, an audit entry ~0.6 KB: room for hundreds of each


class EmergencySpace:
    def __init__(self, path: Path, size: int = DEFAULT_BYTES) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        return self.path.exists()

    def ensure(self) -> bool:
        """Hold the space (again); False if the card has no room for it now (tried again later)."""
        if self.held:
            return True
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # real blocks, so deleting it frees them
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.warning("cannot hold %d bytes of emergency space at %s: %s", self.size, self.path, e.strerror)
            return False
        return True

    def release(self) -> int:
        """Give the space back to the file system at once; returns the bytes freed."""
        try:
            freed = self.path.stat().st_size
            self.path.unlink()
        except FileNotFoundError:
            return 0
        return freed
