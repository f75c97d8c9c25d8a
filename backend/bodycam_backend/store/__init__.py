"""The evidence storage seam: one protocol, a write-once directory and S3 Object Lock behind it.

Keys are built by the backend from validated serials and integers only (``key_for``); nothing a
client sends becomes a key or a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ..errors import BackendError

_SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class WriteOnceViolation(BackendError):
    """Something tried to store different bytes under a key that already holds evidence."""


class EvidenceStore(Protocol):
    """Write-once evidence. A put returns the version the store gave the object ("" for a store without
    versions); the backend records it with the row that acknowledges the object, and reads only that
    version, so a later overwrite or delete marker in a versioned store changes nothing it serves."""

    name: str
    slow_puts: bool  # each put is a network round trip: worth overlapping

    def put_file(self, key: str, path: Path, sha256: str) -> str:
        """Store the file under key, never replacing different content; the source file is left alone."""

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def version_of(self, key: str, sha256: str) -> str:
        """The version holding these bytes (stored earlier); "" if unversioned or not found."""

    def changed_since(self, key: str, version: str) -> str | None:
        """What was added under ``key`` after the acknowledged ``version`` (overwrite, delete marker), if
        anything: evidence that someone went around the backend."""

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` that holds a stored object, even one hidden by a delete marker."""

    def first_version(self, key: str) -> str:
        """The first version stored under ``key`` (what the backend wrote; "" if unversioned)."""

    def flush(self) -> None:
        """Everything put so far is durable when this returns."""

    def stamp(self, key: str, version: str) -> str:
        """A cheap token that changes when the stored object could have: what lets a cached integrity
        verdict stand without re-reading the bytes (bodycam_backend.verdicts)."""

    def exists(self, key: str) -> bool: ...

    def locked_until(self, key: str, version: str = "") -> int | None:
        """Until when the store itself refuses to delete this version (S3 Object Lock), if it does."""

    def size(self, key: str, version: str = "") -> int: ...

    def read(self, key: str, version: str = "") -> bytes: ...

    def stream(self, key: str, chunk: int = 1 << 20, version: str = "") -> Iterator[bytes]: ...

    def close(self) -> None: ...


def segment_key(serial: str, sequence: int, ext: str) -> str:
    if not _SERIAL.match(serial) or ext not in ("mp4", "json", "sig"):
        raise ValueError("bad store key parts")
    return f"devices/{serial}/segments/seg-{int(sequence):010d}.{ext}"


def audit_key(serial: str, first: int, last: int) -> str:
    if not _SERIAL.match(serial):
        raise ValueError("bad serial")
    return f"devices/{serial}/audit/audit-{int(first):010d}-{int(last):010d}.log"


def open_store(cfg) -> EvidenceStore:  # noqa: ANN001 - BackendConfig, imported lazily
    if cfg.storage.backend == "s3":
        from .s3 import S3Store

        return S3Store(cfg.s3)
    from .directory import DirectoryStore

    return DirectoryStore(cfg.store_dir)
