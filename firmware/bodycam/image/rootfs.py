"""The root partition, edited in place with ``debugfs -w``: no mount, no loop device, no root needed.

The base root file system is kept as it is (its owners, capabilities, device nodes and xattrs are
the distribution's business); we only add, replace and remove our own paths. The changes are a list
of small operations (``Mkdir``, ``Write``, ``Symlink``, ``Remove``) that become one debugfs script, so
a reader can see the whole edit at once and a test can assert on it. debugfs reports failed commands
on stderr but still exits 0: any error line fails the build.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .tools import ImageError, run

S_IFDIR, S_IFREG, S_IFLNK = 0o040000, 0o100000, 0o120000


@dataclass(frozen=True)
class Mkdir:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Write:
    """Create or replace a regular file with the bytes of ``source``."""

    path: str
    source: Path
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str


@dataclass(frozen=True)
class Remove:
    """Remove a file or symlink if it is there."""

    path: str


Op = Mkdir | Write | Symlink | Remove


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    uid: int
    gid: int

    @property
    def is_dir(self) -> bool:
        return self.mode & 0o170000 == S_IFDIR


_SAFE = re.compile(r"^/[A-Za-z0-9._@+:/-]*$")


def _check_path(p: str) -> str:
    if not _SAFE.match(p) or "/../" in p + "/" or p.endswith("/") and p != "/":
        raise ImageError(f"internal: unsafe path for debugfs: {p!r}")
    return p


class Ext4Editor:
    def __init__(self, image: Path, env: Mapping[str, str]) -> None:
        self.image = image
        self.env = env
        self._dirs: dict[str, dict[str, Entry] | None] = {}

    def _debugfs(self, request: str, *, write: bool = False) -> bytes:
        cmd: list[str | Path] = ["debugfs"] + (["-w"] if write else []) + ["-R", request, self.image]
        return run(cmd, what=f"reading the root file system ({request.split()[0]})", env=self.env).stdout

    def listdir(self, path: str) -> dict[str, Entry] | None:
        """Entries of a directory, or None if it does not exist (cached until apply())."""
        _check_path(path)
        if path in self._dirs:
            return self._dirs[path]
        proc = run(
            ["debugfs", "-R", f"ls -p {path}", self.image], what="listing the root file system", env=self.env
        )
        entries: dict[str, Entry] | None = {}
        if b"File not found" in proc.stderr or b"Ext2 inode is not a directory" in proc.stderr:
            entries = None
        else:
            for line in proc.stdout.decode(errors="replace").splitlines():
                # /inode/mode/uid/gid/name/size/
                parts = line.split("/")
                if len(parts) >= 7 and parts[5] not in (".", ".."):
                    assert entries is not None
                    entries[parts[5]] = Entry(parts[5], int(parts[2], 8), int(parts[3]), int(parts[4]))
        self._dirs[path] = entries
        return entries

    def lookup(self, path: str) -> Entry | None:
        p = PurePosixPath(path)
        entries = self.listdir(str(p.parent))
        return None if entries is None else entries.get(p.name)

    def read(self, path: str) -> bytes | None:
        """A file's bytes, or None if absent."""
        if self.lookup(path) is None:
            return None
        return self._debugfs(f"cat {_check_path(path)}")

    def readlink(self, path: str) -> str | None:
        """A symlink's target, or None if ``path`` is not a symlink (debugfs follows no final link)."""
        entry = self.lookup(path)
        if entry is None or entry.mode & 0o170000 != S_IFLNK:
            return None
        stat = self._debugfs(f"stat {_check_path(path)}").decode(errors="replace")
        m = re.search(r'Fast link dest: "(.*)"', stat)
        return m.group(1) if m else self._debugfs(f"cat {path}").decode(errors="replace")

    def read_followed(self, path: str, hops: int = 8) -> bytes | None:
        """A file's bytes with symlinks resolved inside this file system (apt keyrings are often
        links into /usr/share/keyrings), or None if absent or dangling."""
        for _ in range(hops):
            target = self.readlink(path)
            if target is None:
                return self.read(path)
            path = str(PurePosixPath(path).parent / target) if not target.startswith("/") else target
            path = os.path.normpath(path)
        return None

    def script(self, ops: Sequence[Op], cwd: Path) -> str:
        """The debugfs commands for ``ops``; file sources are named relative to ``cwd``."""
        lines: list[str] = []
        for op in ops:
            path = _check_path(op.path)
            existing = self.lookup(path)
            if isinstance(op, Mkdir):
                if existing is None:
                    lines.append(f"mkdir {path}")
                    lines += _attrs(path, S_IFDIR | op.mode, op.uid, op.gid)
                    self._dirs[path] = {}
                elif not existing.is_dir:
                    raise ImageError(f"base image: {path} exists and is not a directory")
            elif isinstance(op, Write):
                if existing is not None:
                    if existing.is_dir:
                        raise ImageError(f"base image: {path} is a directory, cannot replace it with a file")
                    lines.append(f"rm {path}")
                lines.append(f"write {_relative(op.source, cwd)} {path}")
                lines += _attrs(path, S_IFREG | op.mode, op.uid, op.gid)
            elif isinstance(op, Symlink):
                if existing is not None:
                    lines.append(f"rm {path}")
                lines.append(f"symlink {path} {_check_path(op.target)}")
            elif isinstance(op, Remove):
                if existing is not None and not existing.is_dir:
                    lines.append(f"rm {path}")
            # Later ops see this one's result.
            self._note(op)
        return "\n".join(lines) + "\n"

    def _note(self, op: Op) -> None:
        p = PurePosixPath(op.path)
        parent = self._dirs.get(str(p.parent))
        if parent is None:
            return
        if isinstance(op, Remove):
            parent.pop(p.name, None)
        else:
            mode = {Mkdir: S_IFDIR | 0o755, Write: S_IFREG | 0o644, Symlink: S_IFLNK | 0o777}[type(op)]
            parent[p.name] = Entry(p.name, mode, 0, 0)

    def apply(self, ops: Sequence[Op], workdir: Path) -> None:
        script = workdir / "debugfs.cmds"
        script.write_text(self.script(ops, workdir))
        proc = run(
            ["debugfs", "-w", "-f", script.name, self.image.resolve()],
            what="editing the root file system",
            env=self.env,
            cwd=workdir,
        )
        errors = [
            ln
            for ln in proc.stderr.decode(errors="replace").splitlines()
            if ln.strip() and not ln.startswith("debugfs ")
        ]
        if errors:
            raise ImageError(f"editing the root file system: debugfs: {errors[0]}")
        self._dirs.clear()


def _relative(source: Path, cwd: Path) -> str:
    rel = Path(source).resolve().relative_to(cwd.resolve()).as_posix()
    if not re.match(r"^[A-Za-z0-9._@+:/-]+$", rel):
        raise ImageError(f"internal: unsafe source name for debugfs: {rel!r}")
    return rel


def _attrs(path: str, mode: int, uid: int, gid: int) -> list[str]:
    return [f"sif {path} mode 0{mode:o}", f"sif {path} uid {uid}", f"sif {path} gid {gid}"]


def parents(paths: Iterable[str]) -> list[str]:
    """Every ancestor directory of ``paths`` (excluding /), parents before children."""
    out: set[str] = set()
    for p in paths:
        for anc in PurePosixPath(p).parents:
            if str(anc) != "/":
                out.add(str(anc))
    return sorted(out, key=lambda s: (s.count("/"), s))


def fsck(image: Path, env: Mapping[str, str], what: str) -> None:
    """e2fsck -fn: read-only; any problem fails the build."""
    proc = run(["e2fsck", "-fn", image], what=what, env=env, ok_codes=(0, 1, 4, 8))
    if proc.returncode != 0:
        detail = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.strip()]
        raise ImageError(f"{what}: e2fsck found problems ({detail[-1] if detail else proc.returncode})")


def grow(image: Path, new_bytes: int, env: Mapping[str, str]) -> None:
    """Extend the file and the file system (offline, on the build machine: no power-cut concern)."""
    run(["e2fsck", "-fp", image], what="checking the root file system", env=env, ok_codes=(0, 1))
    with open(image, "r+b") as f:
        f.truncate(new_bytes)
    run(["resize2fs", image, f"{new_bytes // 1024}K"], what="growing the root file system", env=env)
