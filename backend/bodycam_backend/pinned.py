"""Reading evidence back: only the version the backend acknowledged, and a flag when the store holds more.

Every read of stored evidence (a download, a segment's manifest, an export) goes through here, so the
bytes served are always the ones a receipt vouched for, and an object someone changed around the
backend (a new S3 version over the key, a delete marker in front of it) is flagged and written to the
audit trail the first time it is seen, while the acknowledged version keeps being served.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from .audit import Actor
from .context import Backend
from .data import now_ns, segments, store_versions

log = logging.getLogger("bodycam.backend.store")

STORE_CHANGED = "store_changed"
_SYSTEM = Actor("backend", "system")


def check(b: Backend, key: str, *, serial: str, sequence: int | None) -> str:
    """The pinned version of ``key``; flags (once per key) anything added beside it in the store."""
    version = store_versions.version(b.db, key)
    problem = b.store.changed_since(key, version)
    if problem is not None:
        if not segments.flag_exists(b.db, STORE_CHANGED, problem):
            flag = segments.add_flag(b.db, t=now_ns(), serial=serial, sequence=sequence, upload_id=None,
                                     reason=STORE_CHANGED, message=problem,
                                     evidence={"key": key, "acknowledged_version": version})
            b.trail.record(_SYSTEM, STORE_CHANGED, f"object:{key}", flag_id=flag, message=problem)
            log.error("evidence store changed around the backend",
                      extra={"event": STORE_CHANGED, "data": {"key": key, "message": problem, "flag_id": flag}})
    return version


def read(b: Backend, key: str, *, serial: str, sequence: int | None = None) -> bytes:
    return b.store.read(key, version=check(b, key, serial=serial, sequence=sequence))


def stream(b: Backend, key: str, *, serial: str, sequence: int | None = None) -> tuple[Iterator[bytes], int]:
    """(chunks, size) of the acknowledged version."""
    version = check(b, key, serial=serial, sequence=sequence)
    return b.store.stream(key, version=version), b.store.size(key, version=version)
