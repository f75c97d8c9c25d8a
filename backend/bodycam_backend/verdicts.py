"""One segment's server-side integrity verdict, by the same checker as `bodycam verify`, cached so a
ten-hour recording's panel re-verifies only what could have changed.

A verdict is computed by ``bodycam.verify.verify_paths`` on that segment's three stored objects (the
pinned versions) with the camera's enrolled certificate, plus the checks that tie the stored bytes to
the index row the backend acknowledged (manifest SHA-256, media SHA-256, the previous-manifest link).
It is kept in ``segment_verdicts`` and stands while all of these are unchanged:

- the pinned store versions of the three objects and the index's content hashes (the cache key);
- the store's cheap ``stamp`` of each object (size, mtime and inode of a directory store's file; the
  version on S3, whose locked bytes cannot change);
- no ``store_changed`` flag (``pinned``) newer than the verdict.

An explicit re-check (``recheck=True``, audited by the caller) ignores the cache and re-hashes every
byte, which also catches an edit that restored a file's size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bodycam.verify import VerifyInputError, verify_paths

from . import pinned
from .context import Backend
from .data import now_ns
from .data import review as review_q
from .data import verdicts as q
from .store import segment_key

log = logging.getLogger("bodycam.backend.review")
PARTS = ("json", "sig", "mp4")


def _keys(serial: str, sequence: int) -> list[str]:
    return [segment_key(serial, sequence, ext) for ext in PARTS]


def _stamp(b: Backend, key: str, version: str) -> str:
    stamp = getattr(b.store, "stamp", None)
    return stamp(key, version) if stamp is not None else version


def of_segments(b: Backend, segs: Sequence[Any], *, recheck: bool = False) -> dict[int, dict[str, Any]]:
    """The verdict of each of one camera's segments (index rows), by sequence; each has ``cached``."""
    if not segs:
        return {}
    serial = segs[0]["serial"]
    lo, hi = segs[0]["sequence"], segs[-1]["sequence"]
    pins = q.pinned_versions(b.db, [k for s in segs for k in _keys(serial, s["sequence"])])
    cached = {} if recheck else q.of_recording(b.db, serial, lo, hi)
    changed = q.store_changes(b.db, serial, lo, hi)
    out: dict[int, dict[str, Any]] = {}
    todo = []
    for s in segs:
        seq = s["sequence"]
        keys = _keys(serial, seq)
        versions = "|".join(pins.get(k, "") for k in keys)
        content = f"{s['manifest_sha256']}:{s['media_sha256']}:{s['prev_sha256']}"
        stamp = "|".join(_stamp(b, k, pins.get(k, "")) for k in keys)
        c = cached.get(seq)
        if (c is not None and c["versions"] == versions and c["content"] == content and c["stamp"] == stamp
                and changed.get(seq, -1) < int(c["checked_ns"])):
            out[seq] = {**json.loads(c["verdict"]), "cached": True}
        else:
            todo.append((s, versions, content, stamp))
    if todo:
        with tempfile.TemporaryDirectory(prefix="bodycam-verdict-") as tmp:
            d = Path(tmp)
            certs = _certificates(b, {s["key_id"] for s, *_ in todo}, d)
            done = []
            for s, versions, content, stamp in todo:
                t = now_ns()
                v = check(b, s, certs, d)
                done.append((s["sequence"], versions, content, stamp, v, t))
                out[s["sequence"]] = {**v, "cached": False}
        with b.db.transaction() as tx:  # one commit for the lot
            for seq, versions, content, stamp, v, t in done:
                q.save(tx, serial, seq, versions=versions, content=content, stamp=stamp, ok=v["ok"],
                       verdict=json.dumps(v), checked_ns=t)
        log.info("segments verified", extra={"event": "verdicts_computed", "data": {
            "serial": serial, "sequences": [s["sequence"] for s, *_ in todo], "recheck": recheck}})
    return out


def _certificates(b: Backend, key_ids: set[str], d: Path) -> list[Path]:
    out = []
    for kid in sorted(key_ids):
        c = review_q.certificate(b.db, kid)
        if c is not None:
            path = d / "keys" / f"{kid[:16]}.cert.pem"
            path.parent.mkdir(exist_ok=True)
            path.write_text(c["pem"])
            out.append(path)
    return out


def _objects(b: Backend, seg: Any, d: Path, errors: list[str]) -> Path:
    """Where the segment's manifest (with its .sig and .mp4 beside it) can be read as files: the store's own
    files for a directory store, else a copy of the pinned versions."""
    serial, seq = seg["serial"], seg["sequence"]
    local = getattr(b.store, "local_path", None)
    if local is not None:
        return Path(local(segment_key(serial, seq, "json")))
    where = d / str(seq)
    where.mkdir()
    for ext in PARTS:
        try:
            data = pinned.read(b, segment_key(serial, seq, ext), serial=serial, sequence=seq)
        except Exception as e:  # noqa: BLE001 - a missing or unreadable object is a finding
            errors.append(f"seg-{seq:010d}.{ext}: cannot be read from the store ({e})")
            continue
        (where / f"seg-{seq:010d}.{ext}").write_bytes(data)
    return where / f"seg-{seq:010d}.json"


def check(b: Backend, seg: Any, certs: list[Path], d: Path) -> dict[str, Any]:
    """Verify one segment now (no cache): ``bodycam verify`` on its stored objects, and the stored
    manifest against the hashes the backend acknowledged in its index row."""
    seq = seg["sequence"]
    name = f"seg-{seq:010d}.json"
    errors: list[str] = []
    manifest = _objects(b, seg, d, errors)
    warnings: list[str] = []
    doc: dict[str, Any] = {}
    if manifest.is_file():
        try:
            rep = verify_paths([manifest], public_keys=certs)
            errors += rep.errors
            warnings += rep.warnings
        except VerifyInputError as e:
            errors.append(str(e))
        raw = manifest.read_bytes()
        if hashlib.sha256(raw).hexdigest() != seg["manifest_sha256"]:
            errors.append(f"{name}: not the manifest the backend acknowledged (its SHA-256 differs from the "
                          "receipt's)")
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        if isinstance(doc, dict) and doc.get("previous_manifest_sha256") not in (None, seg["prev_sha256"]):
            errors.append(f"{name}: its previous_manifest_sha256 is not the one acknowledged at upload")
    elif not errors:
        errors.append(f"{name}: missing from the store")
    if not isinstance(doc, dict):
        doc = {}
    return {"ok": not errors, "errors": errors, "warnings": warnings,
            "recovered": bool(doc.get("recovered")), "clock": (doc.get("clock") or {}).get("status")
            if isinstance(doc.get("clock"), dict) else None}
