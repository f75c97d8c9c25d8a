"""One upload pass in the dock: everything not yet acknowledged goes up, and only a verified receipt frees it.

Per segment: tus upload (resumed from the server's offset if an earlier pass was cut short) ->
finalize (in the same request, for a segment that fits in one chunk) -> check the receipt against
the pinned backend key and the manifest on disk -> write the receipt to ``<data_dir>/receipts/``
(fsynced) -> append ``segment_offloaded`` (sequence, receipt hash) to the signed audit log -> only
then delete the files, unless ``[offload] keep_local``. A power cut between any two of these steps
loses nothing: before the receipt file the segment is still pending (the backend answers a repeat
with the same receipt), after it the segment is acknowledged and freeing is finished at the next
pass. Then the audit log goes up, as lines the backend has not got yet.

Failures: the network, 5xx and 503 are retried on the same item with exponential backoff and jitter,
capped at ``max_backoff_seconds``, and never sooner than a 503's Retry-After. A rejection (422) is
recorded and the segment is kept, flagged at the backend, and not retried each dock. A refusal
(revoked, unknown key) ends the pass. ``stop`` (undock, shutdown) is checked between chunks and
during every wait, so a pass ends within one chunk and resumes where it stopped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..clock import Clock, iso_utc
from ..config import OffloadConfig
from ..device import boot_id
from ..layout import DataLayout
from . import clocksync
from .client import ApiError, BackendClient, OffloadError, Refused, Retryable, Unreachable
from .receipts import BackendPins, ReceiptError, receipt_sha256, verify_audit_receipt, verify_segment_receipt
from .spool import AuditBatch, Spool, SpoolItem
from .tus import MAX_METADATA_CHARS, TusClient, UploadGone, encode_metadata

log = logging.getLogger("bodycam.offload")

AUDIT_BATCH_BYTES = 4 << 20     # well under the backend's default max_audit_upload_bytes (16 MiB)
BACKOFF_BASE_SECONDS = 0.5
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")
Audit = Callable[..., Any]                         # AuditLog.append(event, **data)
Wait = Callable[[threading.Event, float], bool]    # True if stopped during the wait


class Stopped(Exception):
    """The stop event was set (undock, shutdown): leave the pass, keeping every resume position."""


class StopSignal(threading.Event):
    """A stop event that says why (``undocked`` / ``shutdown``) for the audit log."""

    reason = "stopped"

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()


class Progress:
    """What `bodycam status` shows under ``offload``; updated by the uploader, read by the control socket."""

    def __init__(self, listener: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._listener = listener
        self._s: dict[str, Any] = {
            "phase": "idle", "backend_reachable": None, "pending": 0, "uploaded": 0, "rejected": 0,
            "failed": 0, "bytes_done": 0, "bytes_total": 0, "current": None, "last_error": None,
            "last_receipt": None, "clock_offset_ms": None, "retry_in_seconds": None}

    def update(self, **values: Any) -> None:
        with self._lock:
            self._s.update(values)
            snap = dict(self._s)
        if self._listener is not None:
            self._listener(snap)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._s[k] += v

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            snap = dict(self._s)
        if isinstance(snap["current"], dict):
            snap["current"] = dict(snap["current"])
        return snap


class Backoff:
    """min(cap, base * 2**attempt), times a random factor in [0.5, 1): thousands of docked cameras
    retrying after a backend restart spread out instead of arriving together."""

    def __init__(self, cap: float, *, base: float = BACKOFF_BASE_SECONDS,
                 rng: random.Random | None = None) -> None:
        self.cap = cap
        self.base = base
        self.rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        d = min(self.cap, self.base * 2 ** min(attempt, 30)) * self.rng.uniform(0.5, 1.0)
        if retry_after is not None:     # the backend's admission control: at least that long, spread a little
            d = max(d, retry_after * self.rng.uniform(1.0, 1.1))
        return d


@dataclass
class PassResult:
    outcome: str = "done"               # done | stopped | refused
    uploaded: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    freed_bytes: int = 0
    resumed: dict[int, int] = field(default_factory=dict)   # sequence -> server offset it resumed from
    audit: tuple[int, int] | None = None                    # audit seqs acknowledged this pass
    error: str | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Uploader:
    def __init__(self, *, layout: DataLayout, serial: str, client: BackendClient, pins: BackendPins,
                 config: OffloadConfig, clock: Clock, audit: Audit, progress: Progress | None = None,
                 clock_setter: clocksync.ClockSetter | None = None, rng: random.Random | None = None,
                 wait: Wait | None = None) -> None:
        self.layout = layout
        self.serial = serial
        self.client = client
        self.tus = TusClient(client)
        self.pins = pins
        self.cfg = config
        self.clock = clock
        self._audit_append = audit
        self.progress = progress or Progress()
        self.clock_setter = clock_setter
        self.spool = Spool(layout)
        self.backoff = Backoff(config.max_backoff_seconds, rng=rng)
        self._wait = wait or (lambda ev, s: ev.wait(s))
        self._bytes_base = 0

    # --- the pass ---------------------------------------------------------------------------------

    def run_pass(self, stop: threading.Event) -> PassResult:
        """Upload everything pending, then the audit log; returns when done, stopped or refused."""
        res = PassResult()
        started = False
        try:
            self._connect(stop)
            self.progress.update(phase="clock_sync")
            off = self._retrying(stop, lambda: clocksync.sync(
                self.client, self.clock, self._audit, set_clock=self.cfg.set_clock, setter=self.clock_setter))
            clocksync.record(self.layout.clock_sync, off, residual_ns=self.client.offset_ns,
                             boot_id=boot_id())
            self.progress.update(clock_offset_ms=off.offset_ms)
            self._free_leftovers(res)
            self._bytes_base = 0
            self.progress.update(phase="uploading", pending=0, uploaded=0, bytes_done=0, bytes_total=0,
                                 current=None, rejected=len(self.spool.rejected()), failed=0)
            attempted: set[int] = set()
            while items := [i for i in self.spool.pending() if i.sequence not in attempted]:
                # Rescanned until nothing new: a recording stopped by the dock seals its last segment
                # a moment after the pass began.
                attempted.update(i.sequence for i in items)
                total = sum(i.size for i in items)
                self.progress.update(bytes_total=self._bytes_base + total,
                                     pending=self.progress.snapshot()["pending"] + len(items))
                if not started:
                    started = True
                    self._audit("upload_start", segments=len(items), bytes=total,
                                order=[i.sequence for i in items][:50], backend=self.client.base_url)
                    log.info("upload start", extra={"event": "upload_start", "data": {
                        "segments": len(items), "bytes": total}})
                self._upload_items(items, stop, res)
            if started:
                self._audit("upload_done", uploaded=len(res.uploaded), duplicates=len(res.duplicates),
                            rejected=res.rejected, failed=res.failed, bytes=self._bytes_base,
                            freed_bytes=res.freed_bytes)
            try:
                self._retrying(stop, lambda: self._audit_log(stop, res))
            except Refused:
                raise
            except (OffloadError, OSError) as e:
                res.error = f"audit log upload: {e}"
                self.progress.update(last_error=res.error)
            res.outcome = "done"
            clean = not (res.failed or res.rejected or res.error)
            self.progress.update(phase="done", current=None, retry_in_seconds=None,
                                 pending=self.spool.count_pending(),
                                 **({"last_error": None} if clean else {}))
        except Stopped:
            res.outcome = "stopped"
            reason = getattr(stop, "reason", "stopped")
            cur = self.progress.snapshot()["current"]
            if started:
                self._audit("upload_stop", reason=reason, uploaded=len(res.uploaded),
                            remaining=self.spool.count_pending(), current=cur)
            log.info("upload stopped", extra={"event": "upload_stop",
                                              "data": {"reason": reason, "current": cur}})
            self.progress.update(phase="stopped", current=None, retry_in_seconds=None,
                                 pending=self.spool.count_pending())
        except Refused as e:
            res.outcome, res.error = "refused", str(e)
            self._audit("upload_refused", code=e.code, message=e.message)
            log.error("backend refused the device", extra={"event": "upload_refused",
                                                           "data": {"error": str(e)}})
            self.progress.update(phase="refused", last_error=str(e), current=None, retry_in_seconds=None,
                                 pending=self.spool.count_pending())
        return res

    # --- steps ------------------------------------------------------------------------------------

    def _upload_items(self, items: list[SpoolItem], stop: threading.Event, res: PassResult) -> None:
        for item in items:
            if stop.is_set():
                raise Stopped
            try:
                self._retrying(stop, lambda item=item: self._segment(item, stop, res))
            except Refused:
                raise
            except (OffloadError, OSError) as e:    # this item only: the next may well go through
                res.failed.append(item.sequence)
                self._item_failed(item.sequence, f"sequence {item.sequence}: {e}")
            self._bytes_base += item.size
            pending = self.progress.snapshot()["pending"]
            self.progress.update(bytes_done=self._bytes_base, current=None, pending=max(0, pending - 1))

    def _connect(self, stop: threading.Event) -> None:
        """Dock detection's second half: the backend must answer before anything is attempted."""
        attempt = 0
        self.progress.update(phase="connecting")
        while not self.client.healthy():
            delay = self.backoff.delay(attempt)
            attempt += 1
            self.progress.update(phase="waiting", backend_reachable=False, retry_in_seconds=round(delay, 2),
                                 last_error=f"backend {self.client.base_url} not reachable")
            if self._wait(stop, delay):
                raise Stopped
        self.progress.update(backend_reachable=True, retry_in_seconds=None)

    def _retrying(self, stop: threading.Event, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            if stop.is_set():
                raise Stopped
            try:
                result = fn()
                if attempt:
                    self.progress.update(phase="uploading", retry_in_seconds=None, backend_reachable=True)
                return result
            except Retryable as e:
                delay = self.backoff.delay(attempt, e.retry_after)
                attempt += 1
                self.progress.update(phase="backoff", last_error=str(e), retry_in_seconds=round(delay, 2),
                                     backend_reachable=not isinstance(e, Unreachable))
                log.warning("upload retry", extra={"event": "upload_retry", "data": {
                    "error": str(e), "delay_s": round(delay, 2), "attempt": attempt}})
                if self._wait(stop, delay):
                    raise Stopped from None

    def _segment(self, item: SpoolItem, stop: threading.Event, res: PassResult) -> None:
        seq = item.sequence
        manifest = item.paths.manifest.read_bytes()
        signature = item.paths.signature.read_bytes()
        state = self.spool.load_state()
        location, offset = self._resume(item, state, res)
        current = {"kind": "segment", "sequence": seq, "recording_id": item.recording_id,
                   "bytes_done": offset, "bytes_total": item.size}
        self.progress.update(current=current, bytes_done=self._bytes_base + offset)

        def moved(new: int) -> None:
            current["bytes_done"] = new
            self.progress.update(current=dict(current), bytes_done=self._bytes_base + new)

        if location is None:
            meta: dict[str, str | bytes] = {"kind": "segment", "sequence": str(seq), "filename": item.name}
            sha = _manifest_media_sha(manifest)
            if sha:
                meta["sha256"] = sha
            with open(item.paths.media, "rb") as f:
                first = f.read(self.cfg.chunk_bytes)
            # A segment that fits in one chunk goes up with its signed manifest in one request, and the
            # answer is the receipt. Its declared sha256 guards the bytes (a mismatch is not kept and the
            # upload continues below, in checksummed chunks), so no chunk checksum is computed, and it
            # stands for the signed Content-Digest too: the segment is not hashed again here.
            whole = len(first) == item.size and sha is not None
            if whole and len(encode_metadata({**meta, "manifest": manifest, "signature": signature})) <= \
                    MAX_METADATA_CHARS:
                meta.update(manifest=manifest, signature=signature)
            else:
                whole = False
            try:
                created = self.tus.create_with(item.size, meta, first, checksum=not whole,
                                               known_sha256=bytes.fromhex(sha) if whole and sha else None)
            except ApiError as e:
                if e.status == 413:      # over the backend's size limit: no retry will change that
                    self._rejected(seq, "upload_too_large", e.message, None, res)
                    return
                if self._refused_segment(seq, e, res):
                    return
                raise
            moved(created.offset)
            if created.receipt is not None:
                self._accept(item, manifest, created.receipt, res)
                return
            location, offset = created.location, created.offset
            state["uploads"][str(seq)] = {"location": location, "length": item.size,
                                          "created_utc": iso_utc(self.clock.utc_ns())}
            self.spool.save_state(state)
        with open(item.paths.media, "rb") as f:
            def read(at: int, size: int) -> bytes:
                f.seek(at)
                return f.read(size)
            offset = self.tus.send(location, read, offset=offset, length=item.size,
                                   chunk_bytes=self.cfg.chunk_bytes, stop=stop, on_progress=moved)
        if offset < item.size:
            raise Stopped
        try:
            r = self.client.request("POST", f"{location}/finalize",
                                    json={"manifest": _b64(manifest), "signature": _b64(signature)})
        except ApiError as e:
            if self._refused_segment(seq, e, res):
                return
            if e.status in (404, 409, 410) and not isinstance(e.body.get("reason"), str):
                self._forget(seq)        # gone or incomplete: start this item again
                raise Retryable(e.status, e.code, e.message, e.body) from None
            raise
        self._accept(item, manifest, r.json(), res)

    def _refused_segment(self, seq: int, e: ApiError, res: PassResult) -> bool:
        """The backend verified the segment and refused it (422, or 409 with a reason): record that."""
        reason = e.body.get("reason")
        if e.status == 422 or (e.status == 409 and isinstance(reason, str)):
            self._rejected(seq, str(reason or e.code), e.message, e.body.get("flag_id"), res)
            return True
        return False

    def _resume(self, item: SpoolItem, state: dict[str, Any], res: PassResult) -> tuple[str | None, int]:
        entry = state["uploads"].get(str(item.sequence))
        if not isinstance(entry, dict) or entry.get("length") != item.size:
            return None, 0
        try:
            offset = self.tus.offset(entry["location"])
        except UploadGone:
            self._forget(item.sequence)
            return None, 0
        if offset:
            res.resumed[item.sequence] = offset
            log.info("upload resumed", extra={"event": "upload_resume", "data": {
                "sequence": item.sequence, "offset": offset, "length": item.size}})
        return entry["location"], offset

    def _forget(self, seq: int) -> None:
        state = self.spool.load_state()
        if state["uploads"].pop(str(seq), None) is not None:
            self.spool.save_state(state)

    def _accept(self, item: SpoolItem, manifest: bytes, body: Any, res: PassResult) -> None:
        """Verified receipt -> receipt file -> audit entry -> free. Any failure before the end keeps it."""
        seq = item.sequence
        try:
            if not isinstance(body, dict):
                raise ReceiptError("finalize answered without a JSON object")
            doc = verify_segment_receipt(body, pins=self.pins, serial=self.serial, sequence=seq,
                                         manifest=manifest)
        except ReceiptError as e:
            res.failed.append(seq)
            self._audit("receipt_invalid", sequence=seq, error=str(e))
            self._item_failed(seq, f"sequence {seq}: {e}")
            return
        self.spool.save_receipt(self.spool.receipt_path(seq).name, {
            "receipt": body["receipt"], "signature": body["signature"], "backend_key_id": self.pins.key_id,
            "duplicate": bool(body.get("duplicate")), "backend_url": self.client.base_url})
        self._forget(seq)
        duplicate = bool(body.get("duplicate"))
        written = self._audit("segment_offloaded", required=True, sequence=seq,
                              recording_id=doc.get("recording_id"), receipt_id=doc.get("receipt_id"),
                              receipt_sha256=receipt_sha256(body["receipt"]),
                              media_sha256=doc["media_sha256"], bytes=doc["media_size"], duplicate=duplicate,
                              freed=not self.cfg.keep_local)
        if written and not self.cfg.keep_local:
            res.freed_bytes += self.spool.free(seq)
        res.uploaded.append(seq)
        if duplicate:
            res.duplicates.append(seq)
        self.progress.add(uploaded=1)
        self.progress.update(last_receipt={"sequence": seq, "receipt_id": doc.get("receipt_id"),
                                           "stored_utc": doc.get("stored_utc"), "duplicate": duplicate})
        log.info("segment offloaded", extra={"event": "segment_offloaded", "data": {
            "sequence": seq, "bytes": doc["media_size"], "duplicate": duplicate,
            "freed": written and not self.cfg.keep_local}})

    def _rejected(self, seq: int, reason: str, message: str, flag_id: Any, res: PassResult) -> None:
        """The backend refused the segment itself: keep it on the device, record why, do not retry."""
        state = self.spool.load_state()
        state["uploads"].pop(str(seq), None)
        state["rejected"][str(seq)] = {"reason": reason, "message": message, "flag_id": flag_id,
                                       "utc": iso_utc(self.clock.utc_ns())}
        self.spool.save_state(state)
        res.rejected.append(seq)
        self._audit("segment_rejected", sequence=seq, reason=reason, message=message, flag_id=flag_id)
        self.progress.add(rejected=1)
        self.progress.update(last_error=f"sequence {seq} rejected by the backend ({reason}): "
                                        "kept on the device")
        log.error("segment rejected", extra={"event": "segment_rejected", "data": {
            "sequence": seq, "reason": reason, "message": message, "flag_id": flag_id}})

    def _item_failed(self, seq: int, error: str) -> None:
        self.progress.add(failed=1)
        self.progress.update(last_error=error)
        log.error("upload failed", extra={"event": "upload_failed",
                                          "data": {"sequence": seq, "error": error}})

    def _free_leftovers(self, res: PassResult) -> None:
        """Acknowledged segments still on disk: finish a freeing cut short, or free what keep_local kept."""
        if self.cfg.keep_local:
            return
        for seq in self.spool.leftovers():
            try:
                body = json.loads(self.spool.receipt_path(seq).read_bytes())
                doc = json.loads(body["receipt"])
            except (OSError, ValueError, KeyError, TypeError):
                continue                    # an unreadable receipt frees nothing
            if self._audit("segment_offloaded", required=True, sequence=seq,
                           recording_id=doc.get("recording_id"),
                           receipt_id=doc.get("receipt_id"), receipt_sha256=receipt_sha256(body["receipt"]),
                           media_sha256=doc.get("media_sha256"), bytes=doc.get("media_size"),
                           duplicate=bool(body.get("duplicate")), freed=True, late=True):
                res.freed_bytes += self.spool.free(seq)

    def _audit_log(self, stop: threading.Event, res: PassResult) -> None:
        """Upload audit lines the backend does not hold yet (its ``audit_last_seq`` says which)."""
        acked = int(self.client.get_json("/v1/device/status").get("audit_last_seq") or 0)
        while True:
            batch = self.spool.audit_batch(acked, AUDIT_BATCH_BYTES)
            if batch is None:
                return
            if stop.is_set():
                raise Stopped
            if not self._audit_batch(batch, stop, res):
                return
            acked = batch.last_seq

    def _audit_batch(self, batch: AuditBatch, stop: threading.Event, res: PassResult) -> bool:
        """One batch up, its receipt checked and kept; False if the backend refused it (not retried)."""
        sha = hashlib.sha256(batch.data).hexdigest()
        n = len(batch.data)
        current = {"kind": "audit", "first_seq": batch.first_seq, "last_seq": batch.last_seq,
                   "bytes_done": 0, "bytes_total": n}
        self.progress.update(current=current)
        created = self.tus.create_with(n, {"kind": "audit", "filename": "audit.log"},
                                       batch.data[:self.cfg.chunk_bytes])
        location = created.location

        def moved(new: int) -> None:
            current["bytes_done"] = new
            self.progress.update(current=dict(current))
        moved(created.offset)
        done = self.tus.send(location, lambda at, size: batch.data[at:at + size], offset=created.offset, length=n,
                             chunk_bytes=self.cfg.chunk_bytes, stop=stop, on_progress=moved)
        if done < n:
            raise Stopped
        try:
            body = self.client.request("POST", f"{location}/finalize", json={}).json()
        except ApiError as e:
            if isinstance(e, (Retryable, Refused)) or e.status not in (409, 422):
                raise
            self._audit("audit_upload_rejected", reason=e.body.get("reason") or e.code, message=e.message,
                        first_seq=batch.first_seq, last_seq=batch.last_seq)
            self.progress.update(last_error=f"audit log rejected by the backend: {e}")
            res.error = str(e)
            return False
        try:
            verify_audit_receipt(body, pins=self.pins, serial=self.serial, sha256=sha,
                                 first_seq=batch.first_seq, last_seq=batch.last_seq)
        except ReceiptError as e:
            self._audit("receipt_invalid", audit_seqs=[batch.first_seq, batch.last_seq], error=str(e))
            self.progress.update(last_error=f"audit receipt: {e}")
            res.error = str(e)
            return False
        self.spool.save_receipt(f"audit-{batch.first_seq:010d}-{batch.last_seq:010d}.receipt.json", {
            "receipt": body["receipt"], "signature": body["signature"],
            "backend_key_id": self.pins.key_id, "duplicate": bool(body.get("duplicate")),
            "backend_url": self.client.base_url})
        res.audit = (res.audit[0] if res.audit else batch.first_seq, batch.last_seq)
        self.progress.update(current=None)
        return True

    # --- audit ------------------------------------------------------------------------------------

    def _audit(self, event: str, *, required: bool = False, **data: Any) -> bool:
        """Append to the signed audit log; False if that failed (then nothing that depends on it happens)."""
        try:
            self._audit_append(event, **data)
            return True
        except (OSError, ValueError) as e:
            log.error("audit append failed", extra={"event": "audit_failed", "data": {
                "audit_event": event, "error": str(e), "required": required}})
            return False


def _manifest_media_sha(manifest: bytes) -> str | None:
    try:
        sha = json.loads(manifest)["media"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) and _HEX64.match(sha) else None
