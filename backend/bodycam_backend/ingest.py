"""Verification before acknowledgement (docs/backend-api.md section 7).

A segment is acknowledged only after its manifest signature checks against the device's enrolled
certificate, the uploaded media matches the signed hash and size, and the manifest links into the
device's chain. Then media, manifest and signature go to write-once storage, and the segment row,
gap bookkeeping, upload state and audit-trail entry commit in one transaction. Anything that fails
is flagged and nothing is stored. Checks reuse the firmware's own (bodycam.evidence, bodycam.verify)
so the device, the backend and `bodycam verify` agree on what a valid segment is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import anyio
from bodycam.evidence.chain import GENESIS
from bodycam.evidence.manifest import segment_stem
from bodycam.evidence.signer import verify_signature
from bodycam.evidence.validate import AuditLine, EvidenceFormatError, parse_audit_line, parse_manifest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .audit import Actor, AuditTrail
from .auth import DeviceIdentity
from .data import Database, device_audit, devices, now_ns, segments, store_versions, uploads
from .errors import ApiError, Rejected
from .offloop import db_call, db_call_shielded
from .receipts import ReceiptSigner, SignedReceipt
from .store import EvidenceStore, audit_key, segment_key
from .tus import Created, PendingRow, TusService

log = logging.getLogger("bodycam.backend.ingest")

MAX_MANIFEST = 1 << 20
_STAGED = re.compile(r"[0-9a-f]{32}\.(part|json|sig)")
MAX_GAP_ROWS = 100_000
STORE_THREADS = 32


@contextmanager
def _after(job: Future[Any]) -> Iterator[None]:
    """Leave only once ``job`` is done too (its error, if any, is raised)."""
    try:
        yield
    finally:
        job.result()


def _b64(body: dict[str, Any], name: str) -> bytes:
    """A base64 field of a finalize body. Absent or empty is evidence (an unsigned segment: rejected and
    flagged); any other type is the client's mistake (400, the upload stays open to finalize properly)."""
    value = body.get(name)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ApiError(400, "bad_request", f"finalize body's {name!r} must be the file's bytes as a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_request", f"{name} must be base64") from None


def _declared_sha256(row: Any, manifest: bytes) -> set[str]:
    """The media SHA-256 the device declared (creation metadata) and signed (manifest), as far as readable."""
    out = {row["sha256"]} if row["sha256"] else set()
    try:
        media = json.loads(manifest).get("media")
        if isinstance(media, dict) and isinstance(media.get("sha256"), str):
            out.add(media["sha256"])
    except (ValueError, AttributeError):
        pass
    return out


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return 0.0


class Ingestor:
    def __init__(
        self,
        *,
        db: Database,
        store: EvidenceStore,
        tus: TusService,
        receipts: ReceiptSigner,
        trail: AuditTrail,
    ) -> None:
        self.db = db
        self.store = store
        self.tus = tus
        self.receipts = receipts
        self.trail = trail
        # Store puts and flushes of every device's finalize run here side by side: sized for many devices
        # at once, so one device's store round trips never queue behind another's (threads sleep in I/O).
        self._io = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="ingest-store")
        self._keys: dict[tuple[str, str], ec.EllipticCurvePublicKey | None] = {}

    # -- entry point --

    def _device_lock(self, serial: str) -> AbstractContextManager[None]:
        """One device's chain is checked and committed one upload at a time, on every instance (a lock in
        the database); different devices' uploads go in parallel (their store puts overlap)."""
        return self.db.lock(f"bodycam:device:{serial}")

    async def finalize(self, upload_id: str, who: DeviceIdentity, body: dict[str, Any]) -> dict[str, Any]:
        row = await db_call(self.tus.owned, upload_id, who)
        if row["state"] == "finalized":
            return await db_call(self._replay, row)
        if row["state"] == "rejected":
            result = json.loads(row["result"] or "{}")
            raise ApiError(
                409,
                "conflict",
                f"upload {upload_id} was rejected ({result.get('reason')}); upload the segment again",
                reason=result.get("reason"),
            )
        if row["state"] != "open":
            raise ApiError(410, "gone", f"upload {upload_id} was {row['state']}")
        if row["offset"] != row["length"]:
            raise ApiError(
                409,
                "conflict",
                f"upload {upload_id} is incomplete ({row['offset']} of {row['length']} "
                "bytes); finish it with PATCH first",
                offset=row["offset"],
            )
        if row["kind"] == "segment":
            return await self._finalize_segment(row, who, _b64(body, "manifest"), _b64(body, "signature"))
        return await anyio.to_thread.run_sync(self._audit, row, who)

    async def finalize_created(self, created: Created, who: DeviceIdentity) -> dict[str, Any]:
        """Finalize an upload created complete, its manifest and signature in the creation request."""
        assert created.finalize_with is not None and created.row is not None
        manifest, signature = created.finalize_with
        try:
            return await self._finalize_segment(created.row, who, manifest, signature, staged=True)
        except BaseException:
            # a failed attempt leaves a row: HEAD-able, finalizable, expirable
            await db_call_shielded(self._persist, created.row)
            raise

    async def _finalize_segment(
        self, row: Any, who: DeviceIdentity, manifest: bytes, sig: bytes, *, staged: bool = False
    ) -> dict[str, Any]:
        sha = await self.tus.media_sha256(row["id"], row["length"])
        if sha not in _declared_sha256(row, manifest):
            # This instance's running hash is not what the device signed: bytes may have been written by
            # another instance since. The staged file itself decides.
            sha = await self.tus.media_sha256(row["id"], row["length"], from_disk=True)
        return await anyio.to_thread.run_sync(self._segment, row, who, manifest, sig, sha, staged)

    def _replay(self, row: Any) -> dict[str, Any]:
        """A finalized upload finalized again: the same receipt, byte for byte."""
        result = json.loads(row["result"] or "{}")
        if row["kind"] == "segment":
            seg = segments.get(self.db, row["serial"], row["sequence"])
            assert seg is not None
            return SignedReceipt(seg["receipt"], seg["receipt_sig"]).response(
                duplicate=True, gaps=segments.open_gaps(self.db, row["serial"])
            )
        return SignedReceipt(result["receipt"], result["signature"]).response(duplicate=True)

    def _persist(self, row: Any) -> None:
        """Write a row that exists only in memory so far (finalize on creation); a no-op otherwise."""
        if isinstance(row, PendingRow) and uploads.get(self.db, row["id"]) is None:
            self.tus.insert_row(row)

    # -- rejection --

    def _reject(
        self,
        row: Any,
        who: DeviceIdentity,
        reason: str,
        message: str,
        *,
        status: int = 422,
        code: str = "rejected",
        evidence: dict[str, Any] | None = None,
    ) -> Rejected:
        self._persist(row)
        flag = segments.add_flag(
            self.db,
            t=now_ns(),
            serial=who.serial,
            sequence=row["sequence"],
            upload_id=row["id"],
            reason=reason,
            message=message,
            evidence=evidence,
        )
        with self.db.transaction() as c:
            uploads.set_state(c, row["id"], "rejected", now_ns(), json.dumps({"reason": reason, "flag_id": flag}))
            self.tus.admission.release(row["id"], c)
            self.trail.record(
                Actor(f"device:{who.serial}", "device"),
                "reject",
                f"segment:{who.serial}/{row['sequence'] or 0:010d}"
                if row["kind"] == "segment"
                else f"audit:{who.serial}",
                conn=c,
                reason=reason,
                message=message,
                upload=row["id"],
                flag_id=flag,
            )
        self.tus.closed(row["id"], slot_freed=True)
        log.warning(
            "upload rejected",
            extra={
                "event": "reject",
                "data": {
                    "device": who.serial,
                    "sequence": row["sequence"],
                    "reason": reason,
                    "detail": message,
                    "flag": flag,
                },
            },
        )
        err = Rejected(reason, message, status=status, code=code)
        err.extra["flag_id"] = flag
        return err

    # -- segments --

    def _public_key(self, key_id: Any, serial: str) -> ec.EllipticCurvePublicKey | None:
        """The enrolled key; parsed once per certificate (an issued certificate never changes)."""
        if not isinstance(key_id, str):
            return None
        if (key_id, serial) in self._keys:
            return self._keys[key_id, serial]
        pem = devices.certificate_pem(self.db, key_id, serial)
        if pem is None:
            return None
        pub = x509.load_pem_x509_certificate(pem.encode()).public_key()
        key = pub if isinstance(pub, ec.EllipticCurvePublicKey) else None
        self._keys[key_id, serial] = key
        return key

    def _check_segment(
        self, row: Any, who: DeviceIdentity, manifest: bytes, sig: bytes, media_sha: str
    ) -> dict[str, Any]:
        seq = row["sequence"]
        ev = {
            "manifest_b64": base64.b64encode(manifest[:MAX_MANIFEST]).decode(),
            "signature_b64": base64.b64encode(sig[:1024]).decode(),
            "media_sha256": media_sha,
        }
        try:
            doc = parse_manifest(manifest)
        except EvidenceFormatError as e:
            raise self._reject(row, who, "bad_manifest", str(e), evidence=ev) from None
        if doc["device_serial"] != who.serial:
            raise self._reject(
                row,
                who,
                "wrong_device",
                f"manifest is from device {doc['device_serial']!r}, the upload from {who.serial!r}",
                evidence=ev,
            )
        if doc["sequence"] != seq:
            raise self._reject(
                row,
                who,
                "sequence_mismatch",
                f"manifest is sequence {doc['sequence']}, the upload was created for sequence {seq}",
                evidence=ev,
            )
        if doc["media"]["file"] != f"{segment_stem(seq)}.mp4":
            raise self._reject(
                row, who, "bad_manifest", f"manifest names media {doc['media']['file']!r}", evidence=ev
            )
        if not sig:
            raise self._reject(row, who, "unsigned", f"sequence {seq} has no signature", evidence=ev)
        pub = self._public_key(doc["key_id"], who.serial)
        if pub is None:
            raise self._reject(
                row,
                who,
                "unknown_key",
                f"sequence {seq} is signed by key {str(doc['key_id'])[:16]}..., "
                f"which is not enrolled for {who.serial}",
                evidence=ev,
            )
        if not verify_signature(pub, sig, manifest):
            raise self._reject(
                row,
                who,
                "bad_signature",
                f"signature of sequence {seq} does not verify with the "
                "enrolled certificate (manifest altered or signed by another key)",
                evidence=ev,
            )
        if doc["media"]["size"] != row["length"]:
            raise self._reject(
                row,
                who,
                "media_size_mismatch",
                f"media of sequence {seq} is {row['length']} bytes, "
                f"the signed manifest says {doc['media']['size']}",
                evidence=ev,
            )
        if doc["media"]["sha256"] != media_sha or (row["sha256"] and row["sha256"] != media_sha):
            raise self._reject(
                row,
                who,
                "media_hash_mismatch",
                f"media of sequence {seq} does not match the SHA-256 "
                "in its signed manifest (altered or corrupted in transit or on the device)",
                evidence=ev,
            )
        return doc

    def _segment(
        self, row: Any, who: DeviceIdentity, manifest: bytes, sig: bytes, media_sha: str, staged_signed: bool
    ) -> dict[str, Any]:
        doc = self._check_segment(row, who, manifest, sig, media_sha)
        seq, serial = row["sequence"], who.serial
        manifest_sha = hashlib.sha256(manifest).hexdigest()
        staged = self.tus.path(row["id"])
        with self._device_lock(serial):
            below, have, above = segments.neighbourhood(self.db, serial, seq)
            if have is not None:
                if have["manifest_sha256"] != manifest_sha:
                    raise self._reject(
                        row,
                        who,
                        "sequence_conflict",
                        f"sequence {seq} is already stored with a different manifest; refused and flagged",
                        status=409,
                        code="conflict",
                    )
                with self.db.transaction() as c:
                    self._finish(c, row, json.dumps({"duplicate": True}))
                    self.trail.record(
                        Actor(f"device:{serial}", "device"),
                        "ingest_duplicate",
                        f"segment:{serial}/{seq:010d}",
                        conn=c,
                        upload=row["id"],
                    )
                self.tus.closed(row["id"], slot_freed=True)
                return SignedReceipt(have["receipt"], have["receipt_sig"]).response(
                    duplicate=True, gaps=segments.open_gaps(self.db, serial)
                )
            prev_sha = doc["previous_manifest_sha256"]
            if seq == 1 and prev_sha != GENESIS:
                raise self._reject(row, who, "chain_broken", "sequence 1 must link to the genesis value")
            if below is not None and below["manifest_sha256"] != prev_sha:
                raise self._reject(
                    row,
                    who,
                    "chain_broken",
                    f"sequence {seq} does not link to the stored manifest "
                    f"of sequence {seq - 1} (a manifest was replaced)",
                )
            if above is not None and above["prev_sha256"] != manifest_sha:
                raise self._reject(
                    row,
                    who,
                    "chain_broken",
                    f"the stored sequence {seq + 1} does not link to this "
                    f"manifest of sequence {seq} (a manifest was replaced)",
                )
            if not staged.exists() and not self.store.exists(segment_key(serial, seq, "mp4")):
                # consumed by a crashed attempt that never committed, and not stored either
                raise ApiError(409, "conflict", "the staged media is gone; upload the segment again")
            # Manifest and signature are staged durably (already, if they came with the creation request),
            # then all three files go into the store.
            json_path, sig_path = self.tus.signed_paths(row["id"])
            if not (staged_signed and json_path.exists() and sig_path.exists()):
                self.tus.stage_signed(row["id"], manifest, sig)
            files = [("json", json_path, manifest_sha), ("sig", sig_path, hashlib.sha256(sig).hexdigest())]
            if staged.exists():
                files.append(("mp4", staged, media_sha))
            if self.store.slow_puts:  # network round trips (S3): overlap them
                puts = [self._io.submit(self.store.put_file, segment_key(serial, seq, e), p, h) for e, p, h in files]
                versions = [put.result() for put in puts]
            else:  # links: cheaper than a thread hop
                versions = [self.store.put_file(segment_key(serial, seq, e), p, h) for e, p, h in files]
            pins = [(segment_key(serial, seq, e), v, h) for (e, _, h), v in zip(files, versions, strict=True)]
            if len(files) == 2:  # the media was stored by an earlier attempt: pin what it stored
                key = segment_key(serial, seq, "mp4")
                pins.append((key, self.store.version_of(key, media_sha), media_sha))
            # The store's new names and the row that acknowledges them are made durable at once, and the
            # answer waits for both. A crash between the two is repaired at start (``recover``) from the
            # staged files, which are durable and kept until then.
            flushing = self._io.submit(self.store.flush)
            receipt = self.receipts.sign(
                "segment",
                device_serial=serial,
                key_id=doc["key_id"],
                sequence=seq,
                recording_id=doc.get("recording_id"),
                manifest_sha256=manifest_sha,
                media_sha256=media_sha,
                media_size=row["length"],
            )
            first, last = doc.get("first_frame") or {}, doc.get("last_frame") or {}
            t = now_ns()
            with _after(flushing), self.db.transaction() as c:
                segments.insert(
                    c,
                    serial=serial,
                    sequence=seq,
                    recording_id=str(doc.get("recording_id") or f"{serial}-unknown"),
                    segment_index=doc.get("segment_index"),
                    key_id=doc["key_id"],
                    prev_sha256=prev_sha,
                    manifest_sha256=manifest_sha,
                    media_sha256=media_sha,
                    media_size=row["length"],
                    first_utc_ns=first.get("utc_ns"),
                    last_utc_ns=last.get("utc_ns"),
                    stored_ns=t,
                    receipt=receipt.text,
                    receipt_sig=receipt.signature,
                )
                closed = segments.close_gap(c, serial, seq, t)
                opened = self._open_gaps(c, serial, seq, t)
                store_versions.pin(c, pins, t)
                self._finish(c, row, json.dumps({"sequence": seq}))
                self.trail.record(
                    Actor(f"device:{serial}", "device"),
                    "ingest",
                    f"segment:{serial}/{seq:010d}",
                    conn=c,
                    recording_id=doc.get("recording_id"),
                    media_sha256=media_sha,
                    manifest_sha256=manifest_sha,
                    bytes=row["length"],
                    upload=row["id"],
                    gap_closed=bool(closed),
                    gaps_opened=opened,
                )
        self.tus.closed(row["id"], slot_freed=True)
        log.info(
            "segment ingested",
            extra={
                "event": "ingest",
                "data": {
                    "device": serial,
                    "sequence": seq,
                    "bytes": row["length"],
                    "gap_closed": bool(closed),
                    "gaps_opened": opened,
                },
            },
        )
        return receipt.response(duplicate=False, gaps=segments.open_gaps(self.db, serial))

    def _finish(self, c: Any, row: Any, result: str) -> None:
        """The upload is finalized, in the transaction that records its segment; its admission slot is
        freed in it too (no write of its own, queued behind other devices' commits)."""
        self.tus.admission.release(row["id"], c)
        if isinstance(row, PendingRow):  # only a rejection writes one early, and a rejection ends there
            self.tus.insert_row(row, c, state="finalized", result=result)
            return
        uploads.set_state(c, row["id"], "finalized", now_ns(), result)

    def _open_gaps(self, c: Any, serial: str, seq: int, t: int) -> list[int]:
        """Sequences skipped below this one since the highest stored below it become open gaps."""
        below = segments.highest_below(c, serial, seq)
        missing = list(range(below + 1, seq))
        if len(missing) > MAX_GAP_ROWS:
            missing = missing[-MAX_GAP_ROWS:]
        for s in missing:
            segments.open_gap(c, serial, s, t)
        return missing

    # -- start-up --

    def recover(self, *, grace_s: float = 0.0) -> dict[str, int]:
        """Before serving: settle what a crash left in staging. A finalized segment whose staged files
        are still there may have been acknowledged before the store's new names were durable: the
        store is completed from them (same bytes; write-once holds). Staged bytes without a row were
        never answered and go; an open upload keeps its bytes to be resumed.

        With several instances on one staging directory, files touched in the last ``grace_s`` may
        belong to a request another instance is serving right now (a creation whose row is not written
        yet, a finalize staging its manifest): those are left for a later start. (Files of a finished
        upload are not: its row commits only after the store holds them.)"""
        counts = {"restored": 0, "orphaned": 0}
        staging = self.tus.staging
        cutoff = time.time() - grace_s
        names = [p for p in staging.iterdir() if _STAGED.fullmatch(p.name)]
        recent = {p.name[:32] for p in names if grace_s and _mtime(p) >= cutoff}
        for uid in sorted({p.name[:32] for p in names}):
            row = uploads.get(self.db, uid)
            part = self.tus.path(uid)
            if row is not None and row["state"] == "finalized" and row["kind"] == "segment":
                counts["restored"] += self._restore(row, part, *self.tus.signed_paths(uid))
            if (row is None or row["state"] == "open") and uid in recent:
                continue  # maybe another instance's request in flight
            if row is None or row["state"] != "open":
                counts["orphaned"] += row is None and part.exists()
                part.unlink(missing_ok=True)
            self.tus.unstage_signed(uid)  # an open upload stages them again when it is finalized
        for p in staging.glob("bench-*.put"):
            if not grace_s or _mtime(p) < cutoff:
                p.unlink(missing_ok=True)
        return counts

    def _restore(self, row: Any, media: Path, manifest: Path, sig: Path) -> int:
        seg = segments.get(self.db, row["serial"], row["sequence"])
        if seg is None:
            return 0
        n = 0
        for ext, path, sha in (
            ("mp4", media, seg["media_sha256"]),
            ("json", manifest, seg["manifest_sha256"]),
            ("sig", sig, None),
        ):
            key = segment_key(row["serial"], row["sequence"], ext)
            if path.exists() and not self.store.exists(key):
                sha = sha or hashlib.sha256(path.read_bytes()).hexdigest()
                version = self.store.put_file(key, path, sha)
                with self.db.transaction() as c:
                    store_versions.pin(c, [(key, version, sha)], now_ns())
                n += 1
        self.store.flush()
        if n:
            log.warning(
                "segment completed in the store after a crash",
                extra={
                    "event": "store_restored",
                    "data": {"device": row["serial"], "sequence": row["sequence"], "files": n},
                },
            )
        return n

    # -- device audit logs --

    def _audit(self, row: Any, who: DeviceIdentity) -> dict[str, Any]:
        data = self.tus.path(row["id"]).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if not data.endswith(b"\n"):
            raise self._reject(
                row, who, "bad_audit", "audit upload must be whole lines, each ending in a newline"
            )
        entries: list[tuple[int, str, str, bytes, dict[str, Any]]] = []
        lines: list[AuditLine] = []
        keys: dict[str, ec.EllipticCurvePublicKey | None] = {}
        for n, line in enumerate(data.split(b"\n")[:-1], 1):
            try:
                parsed = parse_audit_line(line)
            except EvidenceFormatError as e:
                raise self._reject(row, who, "bad_audit", f"line {n}: {e}") from None
            text, sig, sig_b64, entry = parsed.text, parsed.signature, parsed.signature_b64, parsed.entry
            kid = entry.get("key_id")
            if kid not in keys:
                keys[kid] = self._public_key(kid, who.serial)
            pub = keys[kid]
            if pub is None:
                raise self._reject(
                    row,
                    who,
                    "unknown_key",
                    f"audit line {n} is signed by a key not enrolled for {who.serial}",
                )
            if not verify_signature(pub, sig, text.encode()):
                raise self._reject(
                    row, who, "bad_signature", f"audit line {n} (seq {entry['seq']}): signature invalid"
                )
            if lines and not parsed.follows(lines[-1]):
                raise self._reject(
                    row,
                    who,
                    "chain_broken",
                    f"audit line {n} (seq {parsed.seq}) does not follow seq {lines[-1].seq}",
                )
            lines.append(parsed)
            entries.append((entry["seq"], text, sig_b64, line + b"\n", entry))
        if not entries:
            raise self._reject(row, who, "bad_audit", "audit upload holds no entries")
        serial = who.serial
        with self._device_lock(serial):
            top = device_audit.head(self.db, serial)
            head = top["seq"] if top else 0
            new = []
            for seq, text, sig_b64, raw, entry in entries:
                if seq <= head:
                    stored = device_audit.entry_text(self.db, serial, seq)
                    if stored is not None and stored != text:
                        raise self._reject(
                            row,
                            who,
                            "audit_conflict",
                            f"audit seq {seq} is already stored with different text",
                            status=409,
                            code="conflict",
                        )
                    if stored is not None:
                        continue
                new.append((seq, text, sig_b64, raw, entry))
            gap = None
            if new:
                first_seq, first_entry = new[0][0], new[0][4]
                if first_seq == head + 1:
                    want = hashlib.sha256(top["entry"].encode()).hexdigest() if top else GENESIS
                    if first_entry["prev"] != want:
                        raise self._reject(
                            row,
                            who,
                            "chain_broken",
                            f"audit seq {first_seq} does not link to the stored seq {head}",
                        )
                elif first_seq > head + 1:
                    gap = (head + 1, first_seq - 1)
                batch_key, batch = audit_key(serial, new[0][0], new[-1][0]), b"".join(r for *_, r, _ in new)
                pins = [(batch_key, self.store.put_bytes(batch_key, batch), hashlib.sha256(batch).hexdigest())]
                self.store.flush()
            receipt = self.receipts.sign(
                "audit",
                device_serial=serial,
                first_seq=entries[0][0],
                last_seq=entries[-1][0],
                entries_new=len(new),
                sha256=sha,
            )
            t = now_ns()
            with self.db.transaction() as c:
                if new:
                    store_versions.pin(c, pins, t)
                device_audit.add(c, serial, [(seq, text, sig_b64, entry.get("key_id"), entry.get("utc_ns"),
                                              entry.get("event")) for seq, text, sig_b64, _, entry in new])
                uploads.set_state(c, row["id"], "finalized", t,
                                  json.dumps({"receipt": receipt.text, "signature": receipt.signature}))
                self.tus.admission.release(row["id"], c)
                self.trail.record(
                    Actor(f"device:{serial}", "device"),
                    "audit_ingest",
                    f"audit:{serial}",
                    conn=c,
                    first_seq=entries[0][0],
                    last_seq=entries[-1][0],
                    entries_new=len(new),
                    upload=row["id"],
                )
        if gap:
            segments.add_flag(
                self.db,
                t=now_ns(),
                serial=serial,
                sequence=None,
                upload_id=row["id"],
                reason="audit_gap",
                message=f"device audit entries {gap[0]}-{gap[1]} never reached the backend",
            )
        self.tus.closed(row["id"], slot_freed=True)
        return receipt.response(duplicate=not new)
