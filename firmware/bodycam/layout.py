"""Where things live in a device data directory (documented in docs/format.md)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DataDirError

_FIX = "set [device] data_dir to a folder bodycam can write (or --data DIR)"


def ensure_writable_dir(path: Path, what: str = "data_dir", *, fix: str = _FIX) -> None:
    """Make ``path`` (and its parents) and prove it takes a file, so a read-only card, an immutable
    folder or a file in the way is one clear line at start rather than a traceback mid-recording.

    A write probe, not ``os.access``: root passes every permission check but not a read-only mount
    or ``chattr +i``.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise DataDirError(f"{what} {path}: {blocker} is a file, not a folder; {fix}") from None
    except OSError as e:
        raise DataDirError(f"{what} {path}: cannot create it ({e.strerror}); {fix}") from None
    probe = path / f".bodycam-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        why = {errno.EROFS: "on a read-only file system", errno.EPERM: "not writable (immutable?)",
               errno.EACCES: "not writable (permission denied)", errno.ENOSPC: "on a full disk"}
        raise DataDirError(f"{what} {path}: {why.get(e.errno, e.strerror)}; {fix}") from None
    os.close(fd)
    probe.unlink()


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def segments(self) -> Path:
        return self.root / "segments"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def chain(self) -> Path:
        return self.state / "chain.json"

    @property
    def clock_sync(self) -> Path:
        """The last dock time sync: what manifests report as their clock status."""
        return self.state / "clock.json"

    @property
    def emergency_space(self) -> Path:
        """Room held back for sealing and the audit entry when a write hits a full card."""
        return self.state / "emergency-space"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit" / "audit.log"

    @property
    def device(self) -> Path:
        return self.root / "device"

    def create(self) -> None:
        ensure_writable_dir(self.root)
        for d in (self.segments, self.state, self.audit_log.parent):
            ensure_writable_dir(d, what="data_dir folder")
