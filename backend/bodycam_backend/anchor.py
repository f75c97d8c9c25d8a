"""The audit trail's head, anchored outside the database: signed checkpoints in the write-once store.

The trail is hash-chained and signed, so an edited row fails its signature and a removed row breaks
the chain, but whoever administers the database can still cut the newest entries off the end (or
replace the whole trail with an older copy) and leave a chain that checks. So, at a fixed interval
and at shutdown, the backend writes a checkpoint of the head (its ``seq`` and the SHA-256 of its entry
text), signed by the backend key, into the evidence store, where Object Lock (or the directory store's
link-once files) keeps it; `bodycam backend audit-verify` then requires every checkpoint's entry to be
in the database, unchanged. A checkpoint is read from its first stored version: one written later
over the key is ignored (and a delete marker cannot hide it: keys are listed with their versions).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from bodycam.clock import iso_utc
from bodycam.evidence.signer import load_public_key, verify_signature

from .context import Backend
from .data import now_ns
from .data import trail as trail_rows

log = logging.getLogger("bodycam.backend.anchor")

CHECKPOINT_FORMAT = "bodycam.backend-trail-checkpoint/1"
PREFIX = "trail/checkpoints/"


def checkpoint_key(seq: int) -> str:
    return f"{PREFIX}{int(seq):012d}.json"


def head(b: Backend) -> tuple[int, str] | None:
    row = trail_rows.head(b.db)
    return (int(row["seq"]), str(row["sha256"])) if row else None


def write_checkpoint(b: Backend) -> int | None:
    """Anchor the trail's current head (once per head); returns its seq, None if the trail is empty.

    Instances on one database take turns (a lock in the database): one writes the checkpoint of a
    head, the others then find it in the store, or skip this round if one is writing right now."""
    with b.db.try_lock("bodycam:trail-checkpoint") as mine:
        if not mine:
            return None
        return _write_checkpoint(b)


def _write_checkpoint(b: Backend) -> int | None:
    top = head(b)
    if top is None:
        return None
    seq, sha = top
    key = checkpoint_key(seq)
    if b.store.exists(key):
        return seq
    t = now_ns()
    text = json.dumps({"format": CHECKPOINT_FORMAT, "seq": seq, "sha256": sha, "utc": iso_utc(t), "utc_ns": t,
                       "key_id": b.signer.key_id}, separators=(",", ":"), sort_keys=True)
    sig = base64.b64encode(b.signer.sign(text.encode())).decode()
    b.store.put_bytes(key, (json.dumps({"checkpoint": text, "sig": sig}) + "\n").encode())
    b.store.flush()
    log.info("audit trail head anchored in the store", extra={"event": "trail_checkpoint", "data": {"seq": seq}})
    return seq


@dataclass
class AnchorCheck:
    checkpoints: int = 0
    latest_seq: int = 0
    errors: list[str] | None = None


def check_checkpoints(b: Backend, entries: list[dict[str, Any]]) -> AnchorCheck:
    """Every stored checkpoint must be signed by the backend key and name an entry the trail still
    holds with the same SHA-256: a truncated or rewritten trail fails here even if its chain holds."""
    pub = load_public_key(b.signer.public_key_pem())
    by_seq: dict[int, str] = {}
    for line in entries:
        try:
            by_seq[int(json.loads(line["entry"])["seq"])] = hashlib.sha256(line["entry"].encode()).hexdigest()
        except (KeyError, TypeError, ValueError):
            continue  # verify_lines reports it
    top = max(by_seq, default=0)
    out = AnchorCheck(errors=[])
    for key in b.store.keys(PREFIX):
        raw = b.store.read(key, version=b.store.first_version(key))
        try:
            outer = json.loads(raw)
            text = outer["checkpoint"]
            cp = json.loads(text)
            sig = base64.b64decode(outer["sig"], validate=True)
            seq, sha = int(cp["seq"]), str(cp["sha256"])
        except (KeyError, TypeError, ValueError):
            out.errors.append(f"{key}: not a {CHECKPOINT_FORMAT} checkpoint (damaged)")
            continue
        if not verify_signature(pub, sig, text.encode()):
            out.errors.append(f"{key}: checkpoint signature invalid (not written by this backend's key)")
            continue
        out.checkpoints += 1
        out.latest_seq = max(out.latest_seq, seq)
        if seq not in by_seq:
            out.errors.append(f"trail truncated: the checkpoint of {cp.get('utc')} anchors seq {seq}, but the "
                              f"database trail ends at seq {top}")
        elif by_seq[seq] != sha:
            out.errors.append(f"trail rewritten: seq {seq} is not the entry anchored at {cp.get('utc')} "
                              "(its SHA-256 differs from the checkpoint's)")
    return out


@dataclass
class TrailVerification:
    ok: bool
    entries: int
    checkpoints: int
    errors: list[str]


def verify_trail(b: Backend) -> TrailVerification:
    """The whole check behind `audit-verify`: signatures and chain, then the anchored checkpoints."""
    from .audit import verify_lines

    entries = b.trail.entries(limit=1 << 40)
    chain = verify_lines(entries, b.signer.public_key_pem())
    anchored = check_checkpoints(b, entries)
    errors = chain.errors + (anchored.errors or [])
    return TrailVerification(not errors, chain.entries, anchored.checkpoints, errors)


def _checkpoint_quietly(b: Backend) -> None:
    try:
        write_checkpoint(b)
    except Exception as e:  # noqa: BLE001 - a store outage must not stop the service; the next try may work
        log.warning("cannot anchor the audit trail head: %s", e, extra={"event": "trail_checkpoint_failed"})


@asynccontextmanager
async def checkpoints_while_serving(b: Backend, app: Any) -> AsyncIterator[None]:
    """Starlette lifespan: anchor the head every ``[trail] checkpoint_seconds`` and once at shutdown."""
    interval = b.cfg.trail.checkpoint_seconds
    async with anyio.create_task_group() as tg:
        if interval > 0:
            async def every() -> None:
                while True:
                    await anyio.sleep(interval)
                    await anyio.to_thread.run_sync(_checkpoint_quietly, b)

            tg.start_soon(every)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    if interval > 0:
        await anyio.to_thread.run_sync(_checkpoint_quietly, b)
