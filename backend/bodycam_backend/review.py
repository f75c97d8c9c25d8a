"""What the review pages know about a recording: the index they list, who it belongs to, its integrity
(by the same checker as `bodycam verify`) and its thumbnail.

Stored evidence is only ever read through ``pinned`` (the acknowledged version). A store file that
was altered is a red result with its reason, never an exception escaping to a page.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bodycam.clock import iso_utc
from bodycam.evidence.chain import GENESIS
from bodycam.verify import format_sequences

from . import pinned, verdicts
from .context import Backend
from .data import people as people_q
from .data import review as q
from .receipts import verify_receipt
from .store import segment_key

log = logging.getLogger("bodycam.backend.review")

INDEX_MARGIN_NS = 300 * 1_000_000_000  # segments stored this long before the newest indexed are re-checked


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


def _chain(b: Backend, segs: list[Any], errors: list[str], warnings: list[str],
           problems: dict[int, list[str]]) -> tuple[str | None, list[int]]:
    """Chain continuity from the index rows (each row's hashes are tied to its stored manifest by the
    segment's verdict): each link, the link back to the segment before the recording, and what is missing."""
    serial = segs[0]["serial"]
    seqs = [s["sequence"] for s in segs]

    def broken(seq: int, msg: str) -> None:
        errors.append(msg)
        problems[seq].append(msg)

    first = segs[0]
    chain_prev = None
    if first["sequence"] == 1:
        if first["prev_sha256"] != GENESIS:
            broken(1, "seg-0000000001.json: sequence 1 must link to the genesis value (64 zeros); chain broken")
    else:
        before = q.segment_before(b.db, serial, first["sequence"])
        n = first["sequence"]
        if before is None:
            chain_prev = f"sequence {n - 1} is not at the backend; the link to it cannot be checked"
        elif first["prev_sha256"] != before["manifest_sha256"]:
            broken(n, f"seg-{n:010d}.json: chain broken: previous_manifest_sha256 is not the SHA-256 of "
                      f"sequence {n - 1}'s manifest at the backend")
        else:
            chain_prev = f"links to sequence {n - 1} at the backend"
    gaps = q.open_gaps_near(b.db, serial, seqs[0], seqs[-1])
    missing: list[int] = []
    for a, c in zip(segs, segs[1:], strict=False):
        links = c["prev_sha256"] == a["manifest_sha256"]
        if c["sequence"] == a["sequence"] + 1:
            if not links:
                broken(c["sequence"], f"seg-{c['sequence']:010d}.json: chain broken: previous_manifest_sha256 "
                                      f"is not the SHA-256 of seg-{a['sequence']:010d}.json (a manifest was replaced)")
            continue
        between = list(range(a["sequence"] + 1, c["sequence"]))
        if links:
            warnings.append(f"device {serial}: sequence(s) {format_sequences(between)} never sealed "
                            f"(seg-{c['sequence']:010d}.json links directly to seg-{a['sequence']:010d}.json)")
        else:
            missing += [n for n in between if n not in gaps]
    if gaps or missing:
        errors.append(f"device {serial}: sequence(s) {format_sequences(sorted(set(gaps + missing)))} missing at "
                      "the backend")
    return chain_prev, sorted(set(missing + gaps))


def integrity(b: Backend, recording_id: str, *, recheck: bool = False) -> dict[str, Any]:
    """Per recording and per segment: signature, media hash, chain continuity, receipt, certificate and its
    revocation, recovery, clock; ``ok`` False with reasons when anything fails. Each segment's verdict
    comes from ``verdicts`` (cached until its store objects change; ``recheck`` re-hashes everything)."""
    segs = q.segments_of(b.db, recording_id)
    if not segs:
        return {"ok": False, "errors": [f"no recording {recording_id}"], "segments": []}
    serial = segs[0]["serial"]
    found = verdicts.of_segments(b, segs, recheck=recheck)
    errors: list[str] = []
    warnings: list[str] = []
    problems: dict[int, list[str]] = {}
    for s in segs:
        v = found[s["sequence"]]
        problems[s["sequence"]] = list(v["errors"])
        errors += v["errors"]
        warnings += v["warnings"]
    chain_prev, missing = _chain(b, list(segs), errors, warnings, problems)
    certs = {}
    for kid in sorted({s["key_id"] for s in segs}):
        c = q.certificate(b.db, kid)
        if c is not None:
            certs[kid] = c
    out_segs = []
    for s in segs:
        receipt_ok = True
        try:
            verify_receipt(s["receipt"], s["receipt_sig"], b.signer.public_key_pem())
        except Exception as e:  # noqa: BLE001
            receipt_ok = False
            problems[s["sequence"]].append(f"receipt: {e}")
            errors.append(f"seg-{s['sequence']:010d}: receipt does not verify ({e})")
        v = found[s["sequence"]]
        out_segs.append({
            "sequence": s["sequence"],
            "ok": not problems[s["sequence"]],
            "problems": problems[s["sequence"]],
            "media_sha256": s["media_sha256"],
            "manifest_sha256": s["manifest_sha256"],
            "receipt": receipt_ok,
            "recovered": v["recovered"],
            "clock": v["clock"],
            "cached": v["cached"],
        })
    cert_docs = [{
        "key_id": kid, "status": c["status"], "revoked_utc": iso_utc(c["revoked_ns"]) if c["revoked_ns"] else None,
        "not_after_utc": iso_utc(c["not_after_ns"]), "issued_by_agency_ca": issued_by_ca(b, c["pem"]),
    } for kid, c in certs.items()]
    for c in cert_docs:
        if not c["issued_by_agency_ca"]:
            errors.append(f"device certificate {c['key_id'][:16]}…: not signed by the agency CA")
    for s in segs:
        if s["key_id"] not in certs:
            errors.append(f"seg-{s['sequence']:010d}: signed by key {s['key_id'][:16]}… with no certificate here")
    return {
        "ok": not errors,
        "recording_id": recording_id,
        "errors": errors,
        "warnings": warnings,
        "notes": [chain_prev] if chain_prev else [],
        "missing_sequences": missing,
        "segments": out_segs,
        "certificates": cert_docs,
        "revoked": any(c["status"] != "active" for c in cert_docs),
        "recovered": any(s["recovered"] for s in out_segs),
        "clock_offset": clock_offset(b, serial),
        "verified_now": sum(not s["cached"] for s in out_segs),
    }


def issued_by_ca(b: Backend, pem: str) -> bool:
    """Whether the agency CA's key signed this device certificate (ECDSA P-256 / SHA-256 over its TBS)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        ca_key = b.ca.cert.public_key()
        if cert.issuer != b.ca.cert.subject or not isinstance(ca_key, ec.EllipticCurvePublicKey) \
                or cert.signature_hash_algorithm is None:
            return False
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    except (ValueError, InvalidSignature):
        return False
    return True


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
