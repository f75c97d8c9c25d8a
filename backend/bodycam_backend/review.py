"""What the review pages know about a recording: the index they list, who it belongs to, its integrity
(by the same checker as `bodycam verify`) and its thumbnail.

Stored evidence is only ever read through ``pinned`` (the acknowledged version). A store file that
was altered is a red result with its reason, never an exception escaping to a page.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from bodycam.clock import iso_utc
from bodycam.verify import VerifyInputError, verify_paths

from . import pinned
from .context import Backend
from .data import people as people_q
from .data import review as q
from .receipts import verify_receipt
from .store import segment_key

log = logging.getLogger("bodycam.backend.review")

INDEX_MARGIN_NS = 300 * 1_000_000_000  # segments stored this long before the newest indexed are re-checked
_SEG_NAME = re.compile(r"seg-(\d{10})")


def manifest_of(b: Backend, serial: str, sequence: int) -> dict[str, Any]:
    return json.loads(pinned.read(b, segment_key(serial, sequence, "json"), serial=serial, sequence=sequence))


def index(b: Backend, *, batch: int = 500) -> int:
    """Add stored segments the recordings index does not have yet; returns how many were added.

    Cheap when nothing is new (one indexed range query). A manifest that cannot be read is indexed
    with no markers, so one damaged object cannot stop the list; its integrity panel says what is wrong."""
    added = 0
    while True:
        since = max(0, q.indexed_up_to(b.db) - INDEX_MARGIN_NS)
        rows = q.unindexed_segments(b.db, since, batch)
        for seg in rows:
            try:
                doc = manifest_of(b, seg["serial"], seg["sequence"])
                markers, recovered = len(doc.get("markers") or []), bool(doc.get("recovered"))
            except Exception as e:  # noqa: BLE001 - a damaged object must not stop the index
                log.error("manifest unreadable while indexing", extra={"event": "review_index_error", "data": {
                    "serial": seg["serial"], "sequence": seg["sequence"], "error": str(e)}})
                markers, recovered = 0, False
            q.add_segment(b.db, seg, markers, recovered)
            added += 1
        if len(rows) < batch:
            return added


def officer_of(b: Backend, serial: str, first_utc_ns: int | None) -> str | None:
    """The person the camera was assigned to when the recording started (docs/review.md)."""
    if first_utc_ns is None:
        return None
    return people_q.officer_at(b.db, serial, first_utc_ns)


# --- integrity ---


def _segment_problems(messages: list[str], seqs: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {s: [] for s in seqs}
    for m in messages:
        for found in _SEG_NAME.findall(m):
            if int(found) in out:
                out[int(found)].append(m)
    return out


def integrity(b: Backend, recording_id: str) -> dict[str, Any]:
    """Per recording and per segment: signature, media hash, chain continuity, receipt, certificate and its
    revocation, recovery, clock; ``ok`` False with reasons when anything fails."""
    segs = q.segments_of(b.db, recording_id)
    if not segs:
        return {"ok": False, "errors": [f"no recording {recording_id}"], "segments": []}
    serial = segs[0]["serial"]
    seqs = [s["sequence"] for s in segs]
    errors: list[str] = []
    report: dict[str, Any] = {}
    manifests: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bodycam-review-") as tmp:
        d = Path(tmp)
        for s in segs:
            for ext in ("mp4", "json", "sig"):
                try:
                    data = pinned.read(b, segment_key(serial, s["sequence"], ext), serial=serial,
                                       sequence=s["sequence"])
                except Exception as e:  # noqa: BLE001 - a missing or unreadable object is a finding
                    errors.append(f"seg-{s['sequence']:010d}.{ext}: cannot be read from the store ({e})")
                    continue
                (d / f"seg-{s['sequence']:010d}.{ext}").write_bytes(data)
                if ext == "json":
                    try:
                        manifests[s["sequence"]] = json.loads(data)
                    except ValueError:
                        pass
        certs = {}
        for kid in sorted({s["key_id"] for s in segs}):
            c = q.certificate(b.db, kid)
            if c is not None:
                path = d / "keys" / f"{kid[:16]}.cert.pem"
                path.parent.mkdir(exist_ok=True)
                path.write_text(c["pem"])
                certs[kid] = (path, c)
        try:
            rep = verify_paths([d / f"seg-{s:010d}.json" for s in seqs if (d / f"seg-{s:010d}.json").exists()],
                               public_keys=[p for p, _ in certs.values()])
            report = rep.to_dict()
            errors += rep.errors
        except VerifyInputError as e:
            errors.append(str(e))
    # the link from the first segment back to the one before it, which the set alone cannot check
    chain_prev = None
    first = manifests.get(seqs[0])
    before = q.segment_before(b.db, serial, seqs[0])
    if first is not None and seqs[0] > 1:
        if before is None:
            chain_prev = f"sequence {seqs[0] - 1} is not at the backend; the link to it cannot be checked"
        elif first.get("previous_manifest_sha256") != before["manifest_sha256"]:
            errors.append(f"seg-{seqs[0]:010d}.json: chain broken: previous_manifest_sha256 is not the SHA-256 "
                          f"of sequence {seqs[0] - 1}'s manifest at the backend")
        else:
            chain_prev = f"links to sequence {seqs[0] - 1} at the backend"
    gaps = q.open_gaps_near(b.db, serial, seqs[0], seqs[-1])
    if gaps:
        errors.append(f"device {serial}: sequence(s) {', '.join(map(str, gaps))} missing at the backend")
    missing_inside = [n for n in range(seqs[0], seqs[-1] + 1) if n not in seqs]
    problems = _segment_problems(errors, seqs)
    out_segs = []
    for s in segs:
        receipt_ok = True
        try:
            verify_receipt(s["receipt"], s["receipt_sig"], b.signer.public_key_pem())
        except Exception as e:  # noqa: BLE001
            receipt_ok = False
            problems[s["sequence"]].append(f"receipt: {e}")
            errors.append(f"seg-{s['sequence']:010d}: receipt does not verify ({e})")
        m = manifests.get(s["sequence"], {})
        out_segs.append({
            "sequence": s["sequence"],
            "ok": not problems[s["sequence"]],
            "problems": problems[s["sequence"]],
            "media_sha256": s["media_sha256"],
            "manifest_sha256": s["manifest_sha256"],
            "receipt": receipt_ok,
            "recovered": bool(m.get("recovered")),
            "clock": (m.get("clock") or {}).get("status"),
        })
    cert_docs = [{
        "key_id": kid, "status": c["status"], "revoked_utc": iso_utc(c["revoked_ns"]) if c["revoked_ns"] else None,
        "not_after_utc": iso_utc(c["not_after_ns"]),
    } for kid, (_, c) in certs.items()]
    for s in segs:
        if s["key_id"] not in certs:
            errors.append(f"seg-{s['sequence']:010d}: signed by key {s['key_id'][:16]}… with no certificate here")
    return {
        "ok": not errors,
        "recording_id": recording_id,
        "errors": errors,
        "warnings": report.get("warnings", []),
        "notes": report.get("notes", []) + ([chain_prev] if chain_prev else []),
        "missing_sequences": missing_inside + gaps,
        "segments": out_segs,
        "certificates": cert_docs,
        "revoked": any(c["status"] != "active" for c in cert_docs),
        "recovered": any(s["recovered"] for s in out_segs),
        "clock_offset": clock_offset(b, serial),
    }


def clock_offset(b: Backend, serial: str) -> dict[str, Any] | None:
    """The device's last measured clock offset at a dock (its signed ``clock_offset`` audit entry)."""
    row = q.last_device_event(b.db, serial, "clock_offset")
    if row is None:
        return None
    e = json.loads(row["entry"])
    return {"utc": e.get("utc"), "offset_ms": (e.get("data") or {}).get("offset_ms")}


# --- thumbnails ---


def thumbnail(b: Backend, serial: str, sequence: int) -> bytes:
    """A JPEG of a segment's first keyframe (each segment starts with one), decoded with PyAV from the
    stored segment and cached; the recording's thumbnail is its first segment's, the player's strip one
    per segment."""
    cache = b.cfg.data_dir / "cache" / "thumbs"
    path = cache / f"{serial}-{sequence:010d}.jpg"
    if path.exists():
        return path.read_bytes()
    import io

    import av
    import cv2

    data = pinned.read(b, segment_key(serial, sequence, "mp4"), serial=serial, sequence=sequence)
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        frame = next(c.decode(stream))
        img = frame.to_ndarray(format="bgr24")
    h, w = img.shape[:2]
    if w > 320:
        img = cv2.resize(img, (320, int(h * 320 / w)))
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("thumbnail could not be encoded")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(jpg.tobytes())
    tmp.replace(path)
    return jpg.tobytes()
