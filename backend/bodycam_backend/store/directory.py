"""Write-once evidence in a directory: each file is created once (link, never rename-over), made
read-only, and never overwritten or deleted through the service.

``os.link`` fails if the name exists, so two racing writers cannot replace each other's evidence;
the staged upload becomes the stored file without a copy when both live on one filesystem.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bodycam.digest import sha256_file
from bodycam.storage.durable import fsync_dir

from . import WriteOnceViolation


@dataclass
class _Sync:
    """One ``flush`` call's directory fsyncs, which a concurrent ``flush`` may have to wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class DirectoryStore:
    name = "directory"
    slow_puts = False

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._dirty: set[Path] = set()
        self._made: set[Path] = set()  # directories known to exist (the service never removes one)
        self._guard = threading.Lock()
        self._syncing: list[_Sync] = []

    def _mark(self, directory: Path) -> None:
        with self._guard:
            self._dirty.add(directory)

    def flush(self) -> None:
        """Make the new names durable: one fsync per directory touched, however many files went in.

        Devices finalize in parallel, so another thread's ``flush`` may have taken a directory this
        caller's put dirtied and still be fsyncing it: this one waits for those too (and fails if they
        failed), so "durable when this returns" holds for every caller, not only the one that synced."""
        job = _Sync()
        with self._guard:
            mine, self._dirty = self._dirty, set()
            earlier = list(self._syncing)
            self._syncing.append(job)
        try:
            for d in mine:
                fsync_dir(d)
        except BaseException as e:
            job.error = e
            with self._guard:
                self._dirty |= mine  # still not durable: the next flush tries again
            raise
        finally:
            with self._guard:
                self._syncing.remove(job)
            job.done.set()
        for other in earlier:
            other.done.wait()
            if other.error is not None:
                raise OSError(f"a store directory could not be made durable: {other.error}") from other.error

    def _path(self, key: str) -> Path:
        """Keys are made by the backend (``segment_key``, ``audit_key``); still, none may leave the store."""
        parts = key.split("/")
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"store key escapes the store: {key!r}")
        return self.root.joinpath(*parts)

    def _parent(self, dest: Path) -> None:
        """The file's directory exists; one made now is made durable at ``flush`` with its parent."""
        d = dest.parent
        if d in self._made:
            return
        missing = []
        while not d.is_dir():
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            m.mkdir(exist_ok=True)
            self._mark(m.parent)
        self._made.add(dest.parent)

    def _same(self, dest: Path, sha256: str) -> None:
        if sha256_file(dest) != sha256:
            raise WriteOnceViolation(
                f"{dest.name}: already stored with different content; refusing to replace"
            )

    def put_file(self, key: str, path: Path, sha256: str) -> str:
        """Link the (already fsynced) staged file into place; the caller removes the staged name."""
        dest = self._path(key)
        self._parent(dest)
        if dest.exists():
            self._same(dest, sha256)
            return ""
        os.chmod(path, 0o444)
        try:
            os.link(path, dest)
        except FileExistsError:
            self._same(dest, sha256)
        except OSError:  # another filesystem: copy to a private temp name, then link it into place
            tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
            shutil.copyfile(path, tmp)
            os.chmod(tmp, 0o444)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            try:
                os.link(tmp, dest)
            except FileExistsError:
                self._same(dest, sha256)
            finally:
                tmp.unlink(missing_ok=True)
        self._mark(dest.parent)
        return ""

    def put_bytes(self, key: str, data: bytes) -> str:
        dest = self._path(key)
        self._parent(dest)
        sha = hashlib.sha256(data).hexdigest()
        if dest.exists():
            self._same(dest, sha)
            return ""
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            self._same(dest, sha)
        finally:
            tmp.unlink(missing_ok=True)
        self._mark(dest.parent)
        return ""

    def version_of(self, key: str, sha256: str) -> str:
        return ""  # one file per key, read-only and never replaced through the service

    def changed_since(self, key: str, version: str) -> str | None:
        return None

    def stamp(self, key: str, version: str) -> str:
        """Size, mtime and inode: a file rewritten in place or replaced changes at least one of them, unless
        someone also sets its mtime back (an explicit re-check re-hashes, which catches that too)."""
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return "missing"
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def first_version(self, key: str) -> str:
        return ""

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str, version: str = "") -> int:
        return self._path(key).stat().st_size

    def read(self, key: str, version: str = "") -> bytes:
        return self._path(key).read_bytes()

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def stream(self, key: str, chunk: int = 1 << 20, version: str = "") -> Iterator[bytes]:
        with open(self._path(key), "rb") as f:
            while data := f.read(chunk):
                yield data

    def extend_retention(self, key: str, version: str, until_ns: int) -> str | None:
        """A directory has no lock to extend: the backend's own promise (and never deleting before it) is
        the retention. Returns None: nothing refused."""
        return None

    def locked_until(self, key: str, version: str = "") -> int | None:
        """A directory locks nothing: None."""
        return None

    def expire(self, key: str, version: str = "") -> str | None:
        """Delete an object whose retention is over (the retention job only); None when gone."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as e:
            return f"{key}: cannot delete ({e.strerror})"
        fsync_dir(path.parent)
        return None

    def close(self) -> None:
        pass
