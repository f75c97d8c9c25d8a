"""The device uploader against a real `bodycam backend serve` process on 127.0.0.1, with real sealed
segments from the recording rig and a real signed audit log.

Covers the dock path end to end at the uploader's level (order, receipts, freeing, keep_local,
progress, clock offset) and every fault of the issue: the backend killed mid-upload and restarted,
the dock pulled mid-upload, a flipped byte, an unenrolled or revoked device, a replayed upload, a
forged receipt, and admission control (503 + Retry-After).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from backendkit import BackendProcess, Device, Segment, people, segments_of
from bodycam.clock import SystemClock
from bodycam.evidence.audit import AuditLog
from bodycam.evidence.signer import FileKeySigner, verify_signature
from bodycam.offload import enrol as enrolmod
from bodycam.offload.client import BackendClient
from bodycam.offload.receipts import BackendPins, ReceiptError, receipt_sha256, verify_segment_receipt
from bodycam.offload.service import OffloadService
from bodycam.offload.spool import Spool
from bodycam.offload.uploader import PassResult, Progress, StopSignal, Uploader
from bodycam.verify import verify_paths
from rig import Rig


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = BackendProcess(tmp_path_factory.mktemp("backend"))
    b.cli("init")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def admin(backend):
    return people(backend, backend.admin_token())


# --- a camera with evidence on it -----------------------------------------------------------------

class SkewedClock(SystemClock):
    """The real clock, off by ``skew`` seconds; the injected clock setter moves it."""

    def __init__(self, skew: float) -> None:
        self.skew_ns = int(skew * 1e9)
        self.steps: list[int] = []

    def utc_ns(self) -> int:
        return super().utc_ns() + self.skew_ns

    def step(self, offset_ns: int) -> None:
        self.steps.append(offset_ns)
        self.skew_ns += offset_ns


@dataclasses.dataclass
class Camera:
    rig: Rig
    audit: AuditLog
    backend: BackendProcess

    @property
    def serial(self) -> str:
        return self.rig.cfg.device.serial

    @property
    def root(self) -> Path:
        return self.rig.layout.root

    def sequences(self) -> list[int]:
        return [int(p.stem[4:]) for p in self.rig.segments()]

    def manifest(self, seq: int) -> dict[str, Any]:
        return json.loads((self.rig.layout.segments / f"seg-{seq:010d}.json").read_bytes())

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = self.rig.layout.audit_log.read_text().splitlines()
        out = [json.loads(json.loads(line)["entry"]) for line in lines]
        return [e for e in out if event is None or e["event"] == event]

    def enrol(self) -> enrolmod.Enrolment:
        return enrolmod.enrol(self.rig.cfg, self.rig.signer, url=self.backend.url,
                              token=self.backend.enrol_token(self.serial))

    def uploader(self, *, progress: Progress | None = None, clock: Any = None,
                 pins: BackendPins | None = None,
                 session: requests.Session | None = None, wait: Any = None, setter: Any = None,
                 **offload: Any) -> Uploader:
        cfg = dataclasses.replace(self.rig.cfg.offload, **offload)
        clock = clock or SystemClock()
        if pins is None:
            have = enrolmod.load(enrolmod.EnrolPaths.of(self.rig.cfg), self.rig.signer)
            assert have is not None, "enrol the camera first"
            pins = have.pins
        client = BackendClient(self.backend.url, self.rig.signer, clock=clock, session=session)
        return Uploader(layout=self.rig.layout, serial=self.serial, client=client, pins=pins, config=cfg,
                        clock=clock, audit=self.audit.append, progress=progress, clock_setter=setter,
                        wait=wait)

    def run(self, **kw: Any) -> PassResult:
        stop = kw.pop("stop", None) or StopSignal()
        return self.uploader(**kw).run_pass(stop)


def camera(tmp: Path, backend: BackendProcess, serial: str, *,
           recordings: tuple = ((12, 20, False), (5, 25, True)),
           enrol: bool = True, **offload: Any) -> Camera:
    """Recordings as (pre-roll frames, recorded frames, marker?); 2 s segments at 10 fps."""
    rig = Rig(tmp, device={"serial": serial},
              offload={"backend_url": backend.url, "chunk_bytes": 8192, "max_backoff_seconds": 1.0,
                       **offload})
    for before, after, mark in recordings:
        rig.frames(before)
        rig.trigger()
        rig.frames(after // 2)
        if mark:
            rig.recorder.marker(mono_ns=rig.clock.monotonic_ns(), utc_ns=rig.clock.utc_ns())
        rig.frames(after - after // 2)
        rig.recorder.stop()
    audit = AuditLog(rig.layout.audit_log, signer=rig.signer, clock=SystemClock(), boot_id="test-boot")
    audit.append("power_on", serial=serial)
    for event, data in rig.events:
        audit.append(event, **data)
    cam = Camera(rig, audit, backend)
    if enrol:
        cam.enrol()
    return cam


def stored(backend: BackendProcess, serial: str) -> dict[int, str]:
    """Sequence -> SHA-256 of the media the backend holds for this device."""
    d = backend.data / "store" / "devices" / serial / "segments"
    return {int(p.stem[4:]): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("seg-*.mp4"))}


def flip_byte(path: Path, at: int = 200) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o444)


# --- the normal dock ------------------------------------------------------------------------------

def test_uploads_marked_recording_first_then_frees_only_after_a_verified_receipt(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-1")
    seqs = cam.sequences()
    assert len(seqs) >= 4
    marked = [s for s in seqs if cam.manifest(s)["recording_id"] == cam.manifest(seqs[-1])["recording_id"]]
    shas = {s: cam.manifest(s)["media"]["sha256"] for s in seqs}
    sizes = sum(cam.manifest(s)["media"]["size"] for s in seqs)
    seen: list[dict[str, Any]] = []
    progress = Progress(listener=seen.append)

    res = cam.run(progress=progress)

    assert res.outcome == "done" and not res.failed and not res.rejected and not res.duplicates
    order = [e["data"]["sequence"] for e in cam.entries("segment_offloaded")]
    assert order == marked + [s for s in seqs if s not in marked], "the recording with a marker goes first"
    assert cam.rig.segments() == [] and not any(cam.rig.layout.segments.iterdir()), "freed after receipts"
    assert stored(backend, cam.serial) == shas
    pins = BackendPins.from_pem(backend.backend_public_pem())
    for e in cam.entries("segment_offloaded"):
        body = json.loads(Spool(cam.rig.layout).receipt_path(e["data"]["sequence"]).read_text())
        assert e["data"]["receipt_sha256"] == receipt_sha256(body["receipt"]) and e["data"]["freed"] is True
        assert json.loads(body["receipt"])["media_sha256"] == shas[e["data"]["sequence"]]
        sig = base64.b64decode(body["signature"])
        assert verify_signature(pins.public_key, sig, body["receipt"].encode())
    # progress was visible while it happened, and adds up at the end
    assert any(s["current"] and 0 < s["current"]["bytes_done"] < s["current"]["bytes_total"] for s in seen)
    final = progress.snapshot()
    assert final["phase"] == "done" and final["pending"] == 0 and final["uploaded"] == len(seqs)
    assert final["bytes_done"] == final["bytes_total"] == sizes
    assert final["last_receipt"]["sequence"] == order[-1] and final["backend_reachable"] is True
    # audit: start, clock, done; and the log itself reached the backend
    events = [e["event"] for e in cam.entries()]
    assert events.index("clock_offset") < events.index("upload_start") < events.index("upload_done")
    dev = Device(backend.url, cam.rig.signer, cam.serial)
    assert dev.request("GET", "/v1/device/status").json()["audit_last_seq"] == res.audit[1]
    assert res.audit[1] == cam.entries()[-1]["seq"]
    # the device directory still verifies: the freed segments are accounted for by signed entries
    report = verify_paths([cam.root])
    assert report.ok, report.render_text()
    assert any("offloaded to the evidence backend" in n for n in report.notes)
    # nothing left: a second pass uploads no segment
    again = cam.run()
    assert again.outcome == "done" and again.uploaded == []


def test_keep_local_keeps_files_and_a_replayed_upload_gets_the_same_receipts(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-KEEP", keep_local=True)
    seqs = cam.sequences()
    first = cam.run()
    assert first.outcome == "done" and sorted(first.uploaded) == seqs
    assert cam.sequences() == seqs, "keep_local: nothing deleted"
    assert all(e["data"]["freed"] is False for e in cam.entries("segment_offloaded"))
    assert cam.run().uploaded == [], "acknowledged segments are not sent again"
    receipts = {s: json.loads(Spool(cam.rig.layout).receipt_path(s).read_text())["receipt"] for s in seqs}
    assert verify_paths([cam.root]).ok

    # the device forgets its receipts and resume state (e.g. a restored card): it uploads everything
    # again, and the backend answers each with the receipt it gave the first time, storing nothing twice
    for p in Spool(cam.rig.layout).receipts.glob("seg-*"):
        p.unlink()
    Spool(cam.rig.layout).state_path.unlink(missing_ok=True)
    replay = cam.run()
    assert sorted(replay.uploaded) == seqs and sorted(replay.duplicates) == seqs
    again = {s: json.loads(Spool(cam.rig.layout).receipt_path(s).read_text())["receipt"] for s in seqs}
    assert again == receipts
    assert len(stored(backend, cam.serial)) == len(seqs)


def test_a_finalize_whose_answer_was_lost_is_replayed_idempotently(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-REPLAY", recordings=((12, 10, False),))
    seq = cam.sequences()[0]
    dev = Device(backend.url, cam.rig.signer, cam.serial)
    media = cam.rig.layout.segments / f"seg-{seq:010d}.mp4"
    seg = Segment(seq, media)
    r = dev.create(seg)
    loc = r.headers["Location"]
    assert dev.patch(loc, 0, media.read_bytes()).status_code == 204
    lost = dev.finalize(loc, seg).json()      # the backend stored it; the device "crashed" before the answer
    spool = Spool(cam.rig.layout)
    size = media.stat().st_size
    spool.save_state({"uploads": {str(seq): {"location": loc, "length": size}}, "rejected": {}})

    res = cam.run()

    assert res.uploaded == [seq] and res.duplicates == [seq] and res.resumed == {seq: size}
    assert json.loads(spool.receipt_path(seq).read_text())["receipt"] == lost["receipt"]
    assert cam.rig.segments() == [] and len(stored(backend, cam.serial)) == 1


# --- receipts -------------------------------------------------------------------------------------

def tamper_finalize(edit) -> requests.Session:  # noqa: ANN001
    """A session whose receipts are altered on the way in (a man in the middle)."""
    session = requests.Session()

    def hook(r: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        answers = (r.request.url.endswith("/finalize") and r.status_code == 200) or (
            r.request.method == "POST" and r.request.url.endswith("/v1/uploads") and r.status_code == 201
            and r.content)     # a segment finalized in its creation request
        if answers:
            body = r.json()
            if json.loads(body["receipt"]).get("kind") == "segment":
                r._content = json.dumps(edit(body)).encode()
        return r
    session.hooks["response"].append(hook)
    return session


ONE_REQUEST = pytest.mark.parametrize("chunk", [8192, 8 << 20], ids=["chunked", "one-request"])


@ONE_REQUEST
def test_forged_receipts_are_refused_and_nothing_is_deleted(backend, tmp_path, chunk) -> None:
    cam = camera(tmp_path, backend, f"BC-OFF-FORGE-{chunk}", recordings=((12, 10, False),), chunk_bytes=chunk)
    seqs = cam.sequences()

    def altered(body: dict[str, Any]) -> dict[str, Any]:       # text changed, signature kept
        doc = json.loads(body["receipt"])
        doc["media_size"] += 1
        return {**body, "receipt": json.dumps(doc, separators=(",", ":"), sort_keys=True)}

    res = cam.run(session=tamper_finalize(altered))
    assert res.failed == seqs and res.uploaded == []
    assert cam.sequences() == seqs and not list(Spool(cam.rig.layout).receipts.glob("seg-*"))
    bad = cam.entries("receipt_invalid")
    assert [e["data"]["sequence"] for e in bad] == seqs and "does not verify" in bad[0]["data"]["error"]

    # signed with the real backend key, but for another sequence: the signature is fine, the facts not
    backend_key = FileKeySigner.load(backend.data / "keys" / "backend.key.pem")

    def other_sequence(body: dict[str, Any]) -> dict[str, Any]:
        doc = json.loads(body["receipt"])
        doc["sequence"] += 100
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        sig = base64.b64encode(backend_key.sign(text.encode())).decode()
        return {**body, "receipt": text, "signature": sig}

    res = cam.run(session=tamper_finalize(other_sequence))
    assert res.failed == seqs and cam.sequences() == seqs
    assert "receipt sequence" in cam.entries("receipt_invalid")[-1]["data"]["error"]
    # and the genuine receipt, on the next dock, frees it
    assert cam.run().uploaded == seqs and cam.sequences() == []


def test_receipt_check_compares_with_the_manifest_on_disk(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-RCPT", recordings=((12, 10, False),), keep_local=True)
    seq = cam.sequences()[0]
    cam.run()
    body = json.loads(Spool(cam.rig.layout).receipt_path(seq).read_text())
    pins = BackendPins.from_pem(backend.backend_public_pem())
    manifest = (cam.rig.layout.segments / f"seg-{seq:010d}.json").read_bytes()
    assert verify_segment_receipt(body, pins=pins, serial=cam.serial, sequence=seq, manifest=manifest)
    for kw in ({"serial": "BC-OTHER"}, {"sequence": seq + 1}, {"manifest": manifest + b" "}):
        with pytest.raises(ReceiptError):
            verify_segment_receipt(body, **{"pins": pins, "serial": cam.serial, "sequence": seq,
                                            "manifest": manifest, **kw})
    stranger = BackendPins.from_pem(cam.rig.signer.public_key_pem())
    with pytest.raises(ReceiptError, match="enrolled with"):
        verify_segment_receipt(body, pins=stranger, serial=cam.serial, sequence=seq, manifest=manifest)


# --- faults ---------------------------------------------------------------------------------------

@ONE_REQUEST
def test_flipped_byte_is_rejected_kept_on_the_device_and_flagged(backend, admin, tmp_path, chunk) -> None:
    """In one request, the bytes fail the declared sha256 and are not kept; the segment then goes up in
    checksummed chunks (they pass: the damage is on the device) and finalize rejects and flags it."""
    cam = camera(tmp_path, backend, f"BC-OFF-FLIP-{chunk}", chunk_bytes=chunk)
    seqs = cam.sequences()
    bad = seqs[1]
    flip_byte(cam.rig.layout.segments / f"seg-{bad:010d}.mp4")
    progress = Progress()

    res = cam.run(progress=progress)

    assert res.rejected == [bad] and sorted(res.uploaded) == [s for s in seqs if s != bad]
    assert cam.sequences() == [bad], "the damaged segment stays on the device"
    entry = cam.entries("segment_rejected")[0]["data"]
    assert entry["sequence"] == bad and entry["reason"] == "media_hash_mismatch"
    flags = admin.get(f"{backend.url}/v1/flags", params={"device": cam.serial}).json()["flags"]
    assert [(f["sequence"], f["reason"]) for f in flags] == [(bad, "media_hash_mismatch")]
    assert entry["flag_id"] == flags[0]["id"]
    assert bad not in stored(backend, cam.serial)
    snap = progress.snapshot()
    assert snap["rejected"] == 1 and snap["pending"] == 0 and "media_hash_mismatch" in snap["last_error"]
    # not retried at every dock (it would be rejected and flagged again): recorded in the state
    again = cam.run()
    assert again.rejected == [] and again.uploaded == []
    assert len(admin.get(f"{backend.url}/v1/flags", params={"device": cam.serial}).json()["flags"]) == 1
    report = verify_paths([cam.root])
    assert not report.ok and any("SHA-256 mismatch" in e for e in report.errors), "verify still says so"


def test_a_segment_that_fits_one_chunk_goes_up_in_one_request_answered_by_its_receipt(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-ONE", chunk_bytes=8 << 20)
    seqs = cam.sequences()
    shas = {s: cam.manifest(s)["media"]["sha256"] for s in seqs}
    manifests = {s: (cam.rig.layout.segments / f"seg-{s:010d}.json").read_bytes() for s in seqs}
    session = requests.Session()
    seen: list[tuple[str, str, int]] = []
    session.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.request.method, urlsplit(r.request.url).path, r.status_code)))

    res = cam.run(session=session)

    assert sorted(res.uploaded) == seqs and cam.sequences() == [] and stored(backend, cam.serial) == shas
    segment_posts = [s for m, p, s in seen if m == "POST" and p == "/v1/uploads"]
    assert len(segment_posts) == len(seqs) + 1 and set(segment_posts) == {201}, "one per segment + audit log"
    assert not [p for m, p, _ in seen if m == "PATCH"], "nothing left to PATCH"
    assert len([p for m, p, _ in seen if p.endswith("/finalize")]) == 1, "only the audit log's finalize"
    assert Spool(cam.rig.layout).load_state()["uploads"] == {}
    pins = BackendPins.from_pem(backend.backend_public_pem())
    for seq in seqs:        # the receipts kept are the backend's, for exactly these manifests
        body = json.loads(Spool(cam.rig.layout).receipt_path(seq).read_text())
        assert verify_segment_receipt(body, pins=pins, serial=cam.serial, sequence=seq, manifest=manifests[seq])


def test_dock_pulled_mid_upload_stops_between_chunks_and_resumes_without_loss(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-PULL")
    seqs = cam.sequences()
    shas = {s: cam.manifest(s)["media"]["sha256"] for s in seqs}
    stop = StopSignal()
    order: list[int] = []

    def pull_the_dock(snap: dict[str, Any]) -> None:
        cur = snap["current"]
        if cur and cur.get("kind") == "segment":
            if cur["sequence"] not in order:
                order.append(cur["sequence"])
            if len(order) == 2 and cur["bytes_done"] >= 8192 and not stop.is_set():
                stop.stop("undocked")

    res = cam.run(stop=stop, progress=Progress(listener=pull_the_dock))

    assert res.outcome == "stopped" and res.uploaded == [order[0]]
    assert order[1] in cam.sequences() and order[0] not in cam.sequences()
    stop_entry = cam.entries("upload_stop")[-1]["data"]
    assert stop_entry["reason"] == "undocked" and stop_entry["current"]["sequence"] == order[1]
    state = Spool(cam.rig.layout).load_state()
    assert str(order[1]) in state["uploads"], "the resume position survives"

    res2 = cam.run()        # docked again
    assert res2.outcome == "done" and res2.resumed.get(order[1], 0) >= 8192
    assert sorted(res.uploaded + res2.uploaded) == seqs and res2.duplicates == []
    assert stored(backend, cam.serial) == shas and cam.sequences() == []


def test_backend_killed_mid_upload_then_restarted_resumes_with_no_loss_or_duplicate(tmp_path) -> None:
    backend = BackendProcess(tmp_path / "backend")
    backend.cli("init")
    backend.start()
    try:
        cam = camera(tmp_path / "cam", backend, "BC-OFF-KILL")
        seqs = cam.sequences()
        shas = {s: cam.manifest(s)["media"]["sha256"] for s in seqs}
        killed = threading.Event()
        restarter: list[threading.Thread] = []

        def kill_mid_segment(snap: dict[str, Any]) -> None:
            cur = snap["current"]
            if (cur and cur.get("kind") == "segment" and snap["uploaded"] == 1 and not killed.is_set()
                    and 8192 <= cur["bytes_done"] < cur["bytes_total"]):
                killed.set()
                backend.kill()      # SIGKILL, mid-upload

                def restart() -> None:
                    time.sleep(1.0)
                    backend.start()
                t = threading.Thread(target=restart)
                t.start()
                restarter.append(t)

        progress = Progress(listener=kill_mid_segment)
        res = cam.run(progress=progress)
        restarter[0].join(30)

        assert killed.is_set() and res.outcome == "done", res
        assert sorted(res.uploaded) == seqs and res.duplicates == [] and not res.failed
        assert list(res.resumed.values()) and min(res.resumed.values()) >= 8192, "resumed from the offset"
        assert stored(backend, cam.serial) == shas, "every byte, each segment once"
        assert cam.sequences() == []
        assert any(e["data"]["sequence"] in res.resumed for e in cam.entries("segment_offloaded"))
    finally:
        backend.stop()


def test_backend_killed_during_one_request_uploads_loses_nothing_and_stores_each_once(tmp_path) -> None:
    """One request per segment: the backend dies as the second segment starts (before, during or just
    after its request). The camera backs off, the backend comes back, and every segment ends up stored
    once; one whose answer was lost is answered again with its receipt."""
    backend = BackendProcess(tmp_path / "backend")
    backend.cli("init")
    backend.start()
    try:
        cam = camera(tmp_path / "cam", backend, "BC-OFF-KILL1", chunk_bytes=8 << 20)
        seqs = cam.sequences()
        shas = {s: cam.manifest(s)["media"]["sha256"] for s in seqs}
        killed = threading.Event()
        restarter: list[threading.Thread] = []
        seen: list[dict[str, Any]] = []

        def kill_as_the_second_starts(snap: dict[str, Any]) -> None:
            cur = snap["current"]
            if cur and cur.get("kind") == "segment":
                seen.append(dict(cur))
            if cur and cur.get("kind") == "segment" and snap["uploaded"] == 1 and not killed.is_set():
                killed.set()

                def kill_then_restart() -> None:
                    time.sleep(0.01)
                    backend.kill()
                    time.sleep(1.0)
                    backend.start()
                t = threading.Thread(target=kill_then_restart)
                t.start()
                restarter.append(t)

        res = cam.run(progress=Progress(listener=kill_as_the_second_starts))
        restarter[0].join(30)

        assert killed.is_set() and res.outcome == "done" and not res.failed, res
        assert sorted(res.uploaded) == seqs and stored(backend, cam.serial) == shas
        assert cam.sequences() == [], "freed only after verified receipts"
        assert {c["sequence"] for c in seen} == set(seqs) and all(c["bytes_total"] for c in seen), "progress shown"
        receipts = [json.loads(Spool(cam.rig.layout).receipt_path(s).read_text())["receipt"] for s in seqs]
        assert len({json.loads(r)["sequence"] for r in receipts}) == len(seqs)
    finally:
        backend.stop()


def test_unenrolled_and_revoked_devices_are_refused_and_keep_everything(backend, tmp_path) -> None:
    # never enrolled: its key is unknown to the backend (it borrowed another camera's pins)
    known = camera(tmp_path / "known", backend, "BC-OFF-KNOWN", recordings=((12, 10, False),))
    stranger = camera(tmp_path / "stranger", backend, "BC-OFF-STRANGER", recordings=((12, 10, False),),
                      enrol=False)
    pins = BackendPins.from_pem(backend.backend_public_pem())
    res = stranger.run(pins=pins)
    assert res.outcome == "refused" and "unknown device key" in res.error
    assert stranger.sequences() and stranger.entries("upload_refused")[0]["data"]["code"] == "unauthenticated"

    # the daemon's service says "not enrolled" instead of trying
    svc = OffloadService(stranger.rig.cfg, layout=stranger.rig.layout, signer=stranger.rig.signer,
                         audit=stranger.audit.append, clock=SystemClock())
    svc.dock()
    try:
        wait_for(lambda: svc.status()["phase"] == "not_enrolled", what="phase not_enrolled")
        assert svc.status()["enrolled"] is False and "bodycam enrol" in svc.status()["last_error"]
    finally:
        svc.close()

    # revoked: refused on the next request, nothing freed
    backend.cli("revoke", known.serial)
    res = known.run()
    assert res.outcome == "refused" and "revoked" in res.error and known.sequences()
    assert known.entries("upload_refused")[-1]["data"]["code"] == "device_revoked"
    assert stored(backend, known.serial) == {}


def test_busy_backend_503_retry_after_is_honoured(tmp_path) -> None:
    backend = BackendProcess(tmp_path / "backend", admission={"max_concurrent_uploads": 1,
                                                              "retry_after_seconds": 1})
    backend.cli("init")
    backend.start()
    try:
        cam = camera(tmp_path / "cam", backend, "BC-OFF-BUSY", recordings=((12, 10, False),))
        other = camera(tmp_path / "other", backend, "BC-OFF-BUSY-2", recordings=((12, 10, False),))
        hog = Device(backend.url, other.rig.signer, other.serial)
        held = hog.create(segments_of(other.rig)[0])         # takes the only slot
        assert held.status_code == 201
        waits: list[float] = []
        errors: list[str] = []

        def wait(ev: threading.Event, seconds: float) -> bool:
            waits.append(seconds)
            if len(waits) == 1:
                hog.request("DELETE", held.headers["Location"], headers={"Tus-Resumable": "1.0.0"})
            return ev.wait(seconds)

        progress = Progress(listener=lambda s: errors.append(s["last_error"] or ""))
        seqs = cam.sequences()
        t0 = time.monotonic()
        res = cam.run(wait=wait, progress=progress, max_backoff_seconds=0.1)
        assert res.outcome == "done" and res.uploaded == seqs
        assert waits and waits[0] >= 1.0, "at least Retry-After, although the backoff cap is 0.1 s"
        assert time.monotonic() - t0 >= 1.0
        assert any("503 busy" in e for e in errors)
    finally:
        backend.stop()


def test_clock_offset_is_measured_audited_and_used_and_set_only_if_allowed(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-CLOCK", recordings=((12, 10, False),), keep_local=True)
    slow = SkewedClock(-1000.0)     # over the backend's 300 s window: signing must use server time
    res = cam.run(clock=slow)
    assert res.outcome == "done" and res.uploaded, "requests were signed with server time"
    e = cam.entries("clock_offset")[-1]["data"]
    assert 999_000 < e["offset_ms"] < 1_001_000
    assert e["corrected"] is False and e["reason"] == "set_clock = false"
    assert slow.steps == []

    res = cam.run(clock=slow, set_clock=True)      # allowed by config, but no permission to set it
    assert cam.entries("clock_offset")[-1]["data"]["reason"].startswith("not permitted")

    res = cam.run(clock=slow, set_clock=True, setter=slow.step)
    assert res.outcome == "done" and len(slow.steps) == 1 and abs(slow.skew_ns) < 500_000_000
    assert cam.entries("clock_offset")[-1]["data"]["corrected"] is True
    assert cam.entries("clock_set")[-1]["data"]["step_ms"] > 999_000


def wait_for(cond, *, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_service_starts_on_dock_stops_on_undock_and_reports_progress(backend, tmp_path) -> None:
    cam = camera(tmp_path, backend, "BC-OFF-SVC", chunk_bytes=4096)
    seqs = cam.sequences()
    gate = threading.Event()
    slowed: list[int] = []

    class SlowSession(requests.Session):
        """PATCHes wait for the test, so undock lands mid-upload deterministically."""

        def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
            if request.method == "PATCH":
                slowed.append(1)
                if len(slowed) > 3:
                    gate.wait(10)
            return super().send(request, **kw)

    svc = OffloadService(cam.rig.cfg, layout=cam.rig.layout, signer=cam.rig.signer, audit=cam.audit.append,
                         clock=SystemClock(), session_factory=SlowSession)
    try:
        assert svc.status()["phase"] == "idle" and svc.status()["pending"] == len(seqs)
        svc.dock()
        wait_for(lambda: len(slowed) > 3, what="uploading")
        s = svc.status()
        assert s["phase"] == "uploading" and s["enrolled"] is True and s["backend_reachable"] is True
        assert s["current"]["kind"] == "segment" and 0 < s["bytes_done"] < s["bytes_total"]
        assert s["clock_offset_ms"] is not None and s["pending"] == len(seqs)
        svc.undock("undocked")
        gate.set()
        wait_for(lambda: svc.status()["phase"] == "idle", what="idle after undock")
        assert cam.entries("upload_stop")[-1]["data"]["reason"] == "undocked"
        svc.dock()
        wait_for(lambda: svc.status()["phase"] == "done", what="done")
        s = svc.status()
        assert s["pending"] == 0 and s["last_error"] is None and cam.sequences() == []
    finally:
        svc.close()
    assert not any(t.name == "bodycam-offload" and t.is_alive() for t in threading.enumerate())


def test_backoff_doubles_with_jitter_is_capped_and_never_undercuts_retry_after() -> None:
    import random

    from bodycam.offload.uploader import Backoff
    b = Backoff(4.0, rng=random.Random(7))
    delays = [b.delay(n) for n in range(8)]
    assert all(0.25 <= d <= 0.5 for d in delays[:1]) and all(d <= 4.0 for d in delays)
    assert delays[3] >= 2.0 and max(delays) > 2.0, "grows to the cap"
    assert len({round(d, 6) for d in delays[4:]}) > 1, "jittered, not in lockstep"
    assert all(b.delay(0, retry_after=30) >= 30 for _ in range(20)), "Retry-After wins over the cap"


def test_offload_config_errors_are_one_line_naming_the_key(tmp_path) -> None:
    from bodycam import config as configmod
    from bodycam.errors import ConfigError
    for table, msg in (({"backend_url": "evidence.example.org"}, "[offload] backend_url"),
                       ({"chunk_bytes": 10}, "[offload] chunk_bytes = 10: must be between"),
                       ({"keep_local": "no"}, "[offload] keep_local = 'no': must be true or false"),
                       ({"colour": 1}, "[offload] colour: unknown key")):
        with pytest.raises(ConfigError, match=re.escape(msg)):
            configmod.from_dict({"offload": table})
    cfg = configmod.from_dict({"offload": {"ca_file": "ca.pem"}}, base_dir=tmp_path)
    assert cfg.offload.ca_file == str(tmp_path / "ca.pem") and cfg.offload.keep_local is False


def test_bodycam_offload_runs_one_pass_without_the_daemon(backend, tmp_path, capsys) -> None:
    from bodycam import cli
    cam = camera(tmp_path / "cam", backend, "BC-OFF-CLI", recordings=((12, 10, False),))
    cam.audit.close()                       # the command writes the audit log itself
    cfg = tmp_path / "device.toml"
    cfg.write_text(f'[device]\nserial = "BC-OFF-CLI"\ndata_dir = "{cam.root}"\n'
                   f'[offload]\nbackend_url = "{backend.url}"\n')
    assert cli.main(["offload", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("offload done: 1 segment(s) acknowledged") and cam.sequences() == []
    stranger = camera(tmp_path / "stranger", backend, "BC-OFF-CLI-2", recordings=((12, 10, False),),
                      enrol=False)
    stranger.audit.close()
    cfg.write_text(f'[device]\nserial = "BC-OFF-CLI-2"\ndata_dir = "{stranger.root}"\n'
                   f'[offload]\nbackend_url = "{backend.url}"\n')
    assert cli.main(["offload", "--config", str(cfg)]) == 2
    assert "not enrolled: run 'bodycam enrol" in capsys.readouterr().err


# --- what the device does with each kind of answer --------------------------------------------------

def test_a_segment_is_never_freed_while_its_audit_entry_cannot_be_written(backend, tmp_path) -> None:
    """Receipt verified and kept, but the signed audit log cannot take the `segment_offloaded` entry
    (here its file descriptor is gone: every append fails with a real OSError): nothing is freed, since
    the device could not later prove where the footage went. The next dock finishes the freeing."""
    cam = camera(tmp_path, backend, "BC-OFF-NOAUDIT", recordings=((12, 30, False),))
    seqs = cam.sequences()
    shas = {s: cam.manifest(s)["media"]["sha256"] for s in seqs}
    cam.audit.close()
    with pytest.raises(OSError):
        cam.audit.append("probe")
    lines_before = cam.rig.layout.audit_log.read_bytes()

    res = cam.run()

    assert res.outcome == "done" and sorted(res.uploaded) == seqs and res.freed_bytes == 0
    assert cam.sequences() == seqs, "no segment freed without its audit entry"
    assert all(Spool(cam.rig.layout).receipt_path(s).exists() for s in seqs), "the receipts are kept"
    assert stored(backend, cam.serial) == shas
    assert cam.rig.layout.audit_log.read_bytes() == lines_before
    assert Spool(cam.rig.layout).leftovers() == seqs

    cam.audit = AuditLog(cam.rig.layout.audit_log, signer=cam.rig.signer, clock=SystemClock(),
                         boot_id="test-boot-2")
    again = cam.run()
    assert again.outcome == "done" and again.uploaded == [] and again.freed_bytes > 0
    assert cam.sequences() == [] and Spool(cam.rig.layout).leftovers() == []
    late = cam.entries("segment_offloaded")
    assert sorted(e["data"]["sequence"] for e in late) == seqs
    assert all(e["data"]["late"] is True and e["data"]["freed"] is True for e in late)
    report = verify_paths([cam.root])
    assert report.ok, report.render_text()


def test_a_segment_over_the_backends_size_limit_is_kept_recorded_and_not_retried(tmp_path) -> None:
    """413 at creation: no retry can change it, so the segment is recorded as refused (not failed), kept
    on the device, and the others still go up."""
    backend = BackendProcess(tmp_path / "backend", limits={"max_upload_bytes": 1})
    try:
        cam = camera(tmp_path / "cam", backend, "BC-OFF-413", recordings=((12, 40, False),), enrol=False,
                     chunk_bytes=8 << 20)
        sizes = {s: cam.manifest(s)["media"]["size"] for s in cam.sequences()}
        big = max(sizes, key=sizes.get)
        assert sorted(sizes.values())[-2] < sizes[big], "one segment is the largest"
        backend.config.write_text(backend.config.read_text().replace(
            "max_upload_bytes = 1\n", f"max_upload_bytes = {sizes[big] - 1}\n"))
        backend.cli("init")
        backend.start()
        cam.enrol()
        session = requests.Session()
        seen: list[tuple[str, str, int]] = []
        session.hooks["response"].append(
            lambda r, *a, **k: seen.append((r.request.method, urlsplit(r.request.url).path, r.status_code)))

        res = cam.run(session=session)

        assert res.rejected == [big] and sorted(res.uploaded) == sorted(set(sizes) - {big}) and not res.failed
        assert ("POST", "/v1/uploads", 413) in seen
        assert cam.sequences() == [big], "the refused segment stays on the device"
        entry = cam.entries("segment_rejected")[-1]["data"]
        assert entry["sequence"] == big and entry["reason"] == "upload_too_large"
        assert Spool(cam.rig.layout).rejected()[big]["reason"] == "upload_too_large"
        assert big not in stored(backend, cam.serial)
        seen.clear()
        again = cam.run(session=session)
        assert again.rejected == [] and again.uploaded == [] and cam.sequences() == [big]
        assert not [p for m, p, s in seen if s == 413], "not sent again at the next dock"
    finally:
        backend.stop()


class UploadLostBeforeFinalize(requests.Session):
    """The backend loses the upload between the last chunk and finalize, once: ``how`` is "deleted"
    (the upload was terminated: 410) or "staging_lost" (its staged bytes vanished: 409 with no reason)."""

    def __init__(self, backend: BackendProcess, device: Device, how: str) -> None:
        super().__init__()
        self.backend, self.device, self.how = backend, device, how
        self.lost: list[str] = []
        self.finalize_status: list[int] = []

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
        path = urlsplit(request.url).path
        is_finalize = request.method == "POST" and path.endswith("/finalize")
        if is_finalize and not self.lost and b'"manifest"' in (request.body or b""):
            loc = path.removesuffix("/finalize")
            self.lost.append(loc)
            if self.how == "deleted":
                gone = self.device.request("DELETE", loc, headers={"Tus-Resumable": "1.0.0"})
                assert gone.status_code == 204
            else:
                (self.backend.data / "uploads" / (loc.rsplit("/", 1)[1] + ".part")).unlink()
        r = super().send(request, **kw)
        if is_finalize:
            self.finalize_status.append(r.status_code)
        return r


@pytest.mark.parametrize(("how", "status"), [("deleted", 410), ("staging_lost", 409)])
def test_an_upload_lost_at_finalize_is_started_again_and_stored_once(backend, tmp_path, how, status) -> None:
    cam = camera(tmp_path, backend, f"BC-OFF-LOST-{status}", recordings=((12, 10, False),))
    [seq] = cam.sequences()
    sha = cam.manifest(seq)["media"]["sha256"]
    session = UploadLostBeforeFinalize(backend, Device(backend.url, cam.rig.signer, cam.serial), how)
    waits: list[float] = []

    res = cam.run(session=session, wait=lambda ev, s: (waits.append(s), ev.wait(0))[1])

    assert session.finalize_status[0] == status, session.finalize_status
    assert res.outcome == "done" and res.uploaded == [seq] and not res.failed and not res.rejected
    assert len(waits) == 1, "retried once, after a backoff"
    assert stored(backend, cam.serial) == {seq: sha} and cam.sequences() == []
    assert Spool(cam.rig.layout).load_state()["uploads"] == {}, "the lost upload is forgotten"
    assert not cam.entries("segment_rejected"), "a lost upload is not a refusal of the segment"


def test_a_resume_position_at_an_upload_the_device_does_not_own_starts_afresh(backend, tmp_path) -> None:
    """The spool's resume state names an upload that answers 404 to this device (another camera's, or
    one the backend never had): the device starts a new upload and never touches that one."""
    cam = camera(tmp_path / "cam", backend, "BC-OFF-404", recordings=((12, 10, False),))
    other = camera(tmp_path / "other", backend, "BC-OFF-404-B", recordings=((12, 10, False),))
    [seq] = cam.sequences()
    size = cam.manifest(seq)["media"]["size"]
    theirs = Device(backend.url, other.rig.signer, other.serial)
    loc = theirs.create(segments_of(other.rig)[0]).headers["Location"]
    Spool(cam.rig.layout).save_state({"uploads": {str(seq): {"location": loc, "length": size}}, "rejected": {}})
    session = requests.Session()
    seen: list[tuple[str, str, int]] = []
    session.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.request.method, urlsplit(r.request.url).path, r.status_code)))

    res = cam.run(session=session)

    assert ("HEAD", loc, 404) in seen
    assert not [m for m, p, _ in seen if p.startswith(loc) and m != "HEAD"], "nothing sent to their upload"
    assert res.outcome == "done" and res.uploaded == [seq] and cam.sequences() == []
    assert int(theirs.head(loc).headers["Upload-Offset"]) == 0
    assert seq in stored(backend, cam.serial)
