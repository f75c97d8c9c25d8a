"""`scripts/bench offload`: the evidence backend's upload path, against a real backend process.

Every figure is measured in this run, against a baseline measured in the same run on the same server:
1. single device: 8 MB segments uploaded the way a camera does it, over loopback, as a ratio to a
   plain HTTP PUT of the same bytes to the same server process (written, fsynced and its name made
   durable, as any server must before answering 201; nothing else, and the file is not deleted inside
   the request, as stored evidence is not).
   Two tus clients: the device's own uploader (one signed request per segment carrying its signed
   manifest, finalized on the spot), which is what a dock uses and what the target applies to, and a
   minimal stock-style client (creation-with-upload, then a separate finalize: one round trip and one
   request's auth more), reported for comparison. Both get verification and a signed receipt, which
   the client checks;
2. one instance under concurrency (``measure_concurrent``, also imported by the fleet bench): 16
   devices upload an 8 MB segment each at once with the device's protocol (finalized on creation),
   against 16 plain PUTs of the same bytes at once, in interleaved rounds; the median round's ratio of
   aggregate MB/s (target >= 0.9), the backend's finalize p50/p99 (its Server-Timing header) and each
   side's server CPU per GB;
3. dock storm: N simulated devices (threads, each its own key, enrolled through the API) uploading M
   segments each at once with the device's protocol and client (one signed request per segment),
   through admission control (503 + Retry-After honoured). Every receipt is
   verified, then the backend is asked for every device's last sequence and open gaps: zero lost
   means every segment acknowledged and stored, no gap. Reports aggregate MB/s, p50/p99 time from
   upload start to verified receipt, 503s, and the backend's peak RSS (sampled every 20 ms).

Segments are real `bodycam.segment/1` manifests signed by per-device ECDSA P-256 keys over random
media bytes (the backend hashes but does not decode media, so random bytes cost the same as H.264).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from backendkit import BackendProcess  # noqa: E402
from bodycam.config import OffloadConfig  # noqa: E402
from bodycam.evidence.chain import GENESIS  # noqa: E402
from bodycam.evidence.manifest import SegmentFacts, render, segment_stem  # noqa: E402
from bodycam.evidence.signer import FileKeySigner  # noqa: E402
from bodycam.offload import httpsig  # noqa: E402
from bodycam.offload.client import BackendClient, Retryable  # noqa: E402
from bodycam.offload.tus import TusClient  # noqa: E402
from bodycam_backend.receipts import verify_receipt  # noqa: E402

ORDERS = list(itertools.permutations(range(3)))
PARTS = ("single", "concurrent", "storm")
DEVICE_CHUNK = OffloadConfig().chunk_bytes  # the device's default, as configured on a camera

TARGETS = {"ratio": 0.8, "concurrent_ratio": 0.9, "lost": 0, "rss_mb": 500}
TUS = {"Tus-Resumable": "1.0.0"}
MB = 1e6


@dataclass
class Seg:
    sequence: int
    media: bytes
    manifest: bytes
    signature: bytes


def make_segments(signer: FileKeySigner, serial: str, n: int, size: int, blob: bytes, *, first: int = 1,
                  prev: str = GENESIS) -> list[Seg]:
    """A signed chain of n segments from sequence ``first`` (linked to ``prev``); media differ in their first
    bytes, the rest is shared random data."""
    out = []
    for seq in range(first, first + n):
        media = hashlib.sha256(f"{serial}/{seq}".encode()).digest() + blob[: size - 32]
        facts = SegmentFacts(
            device_serial=serial,
            key_id=signer.key_id,
            officer_id="PC-BENCH",
            recording_id=f"{serial}-{1:010d}",
            segment_index=seq - 1,
            sequence=seq,
            codec="h264",
            width=1920,
            height=1080,
            fps=30.0,
            bitrate_kbps=6000,
            trigger={},
            firmware_version="bench",
            clock={"status": "unsynced"},
            encoder="libx264",
        )
        manifest = render(
            facts,
            previous_manifest_sha256=prev,
            media_name=f"{segment_stem(seq)}.mp4",
            media_sha256=hashlib.sha256(media).hexdigest(),
            media_size=len(media),
        )
        out.append(Seg(seq, media, manifest, signer.sign(manifest)))
        prev = hashlib.sha256(manifest).hexdigest()
    return out


class SimDevice:
    """A camera in the dock, speaking docs/backend-api.md with its own key and HTTP connection."""

    def __init__(self, url: str, serial: str, admin: requests.Session) -> None:
        self.url, self.serial = url, serial
        self.signer = FileKeySigner(ec.generate_private_key(ec.SECP256R1()))
        self.http = requests.Session()
        token = admin.post(f"{url}/v1/devices/{serial}/enrol-token").json()["token"]
        proof = self.signer.sign(f"bodycam-enrol/1\n{serial}\n{token}".encode())
        r = self.http.post(
            f"{url}/v1/enrol",
            json={
                "serial": serial,
                "token": token,
                "proof": base64.b64encode(proof).decode(),
                "public_key_pem": self.signer.public_key_pem().decode(),
            },
        )
        assert r.status_code == 201, r.text
        session_url = f"{url}/v1/device/session"
        signed = httpsig.sign_headers(self.signer, "POST", session_url, {}, None, created=int(time.time()),
                                      nonce=secrets.token_urlsafe(18))
        s = self.http.post(session_url, headers=signed)
        self.http.headers["Authorization"] = f"Bearer {s.json()['token']}"
        self.busy = 0
        self.admitted_at = 0.0

    def upload(self, seg: Seg, backend_pub: bytes, *, chunk: int) -> dict:
        """creation-with-upload (first chunk on the POST), PATCH the rest, finalize, check the receipt."""
        seq_b64 = base64.b64encode(str(seg.sequence).encode()).decode()
        meta = f"kind {base64.b64encode(b'segment').decode()},sequence {seq_b64}"
        while True:
            r = self.http.post(
                f"{self.url}/v1/uploads",
                data=seg.media if chunk >= len(seg.media) else seg.media[:chunk],
                headers={
                    **TUS,
                    "Upload-Length": str(len(seg.media)),
                    "Upload-Metadata": meta,
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            if r.status_code != 503:
                break
            self.busy += 1
            time.sleep(float(r.headers.get("Retry-After", "1")))
        assert r.status_code == 201, r.text
        self.admitted_at = time.perf_counter()
        loc = self.url + r.headers["Location"]
        off = int(r.headers["Upload-Offset"])
        while off < len(seg.media):
            p = self.http.patch(
                loc,
                data=seg.media[off : off + chunk],
                headers={**TUS, "Upload-Offset": str(off), "Content-Type": "application/offset+octet-stream"},
            )
            if p.status_code == 503:
                self.busy += 1
                time.sleep(float(p.headers.get("Retry-After", "1")))
                continue
            assert p.status_code == 204, p.text
            off = int(p.headers["Upload-Offset"])
        f = self.http.post(
            loc + "/finalize",
            json={
                "manifest": base64.b64encode(seg.manifest).decode(),
                "signature": base64.b64encode(seg.signature).decode(),
            },
        )
        assert f.status_code == 200, f.text
        doc = verify_receipt(f.json()["receipt"], f.json()["signature"], backend_pub)
        assert (
            doc["manifest_sha256"] == hashlib.sha256(seg.manifest).hexdigest()
            and doc["sequence"] == seg.sequence
        )
        return doc


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop_ev = threading.Event()

    def run(self) -> None:
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def stop(self) -> float:
        self.stop_ev.set()
        self.join()
        return self.peak / MB


def device_upload(tus: TusClient, seg: Seg, pub: bytes, *, chunk: int) -> dict:
    """What the dock's uploader does per segment (offload/uploader.py): a segment that fits in one chunk
    goes up in one signed request with its manifest, and the answer is the receipt; a bigger one is
    created with its first chunk, PATCHed (sha256 per chunk) and finalized. The receipt is checked."""
    meta: dict[str, str | bytes] = {"kind": "segment", "sequence": str(seg.sequence),
                                    "sha256": json.loads(seg.manifest)["media"]["sha256"]}
    whole = chunk >= len(seg.media)
    if whole:
        meta.update(manifest=seg.manifest, signature=seg.signature)
    created = tus.create_with(len(seg.media), meta, seg.media[:chunk], checksum=not whole,
                              known_sha256=bytes.fromhex(str(meta["sha256"])) if whole else None)
    body = created.receipt
    if body is None:
        done = tus.send(created.location, lambda at, n: seg.media[at:at + n], offset=created.offset,
                        length=len(seg.media), chunk_bytes=chunk, stop=threading.Event())
        assert done == len(seg.media)
        body = tus.client.request("POST", f"{created.location}/finalize", json={
            "manifest": base64.b64encode(seg.manifest).decode(),
            "signature": base64.b64encode(seg.signature).decode()}).json()
    doc = verify_receipt(body["receipt"], body["signature"], pub)
    assert doc["manifest_sha256"] == hashlib.sha256(seg.manifest).hexdigest() and doc["sequence"] == seg.sequence
    return doc


def device_upload_retrying(dev: SimDevice, tus: TusClient, seg: Seg, pub: bytes, *, chunk: int) -> dict:
    """The device protocol through admission control: a 503 is waited out for its Retry-After, as the
    uploader does (without the uploader's jitter, so the bench is not slower than it must be)."""
    while True:
        dev.admitted_at = time.perf_counter()
        try:
            return device_upload(tus, seg, pub, chunk=chunk)
        except Retryable as e:
            if e.status != 503:
                raise
            dev.busy += 1
            time.sleep(e.retry_after if e.retry_after is not None else 1.0)


def single_device(
    url: str, admin: requests.Session, pub: bytes, *, segs: int, size: int, blob: bytes
) -> dict:
    """PUT, a minimal tus client and the device's own uploader take turns segment by segment, in every
    order, so disk and page-cache noise hits all alike; each ratio is the median over those rounds, so
    a burst of load from another process skews one round, not all."""
    dev = SimDevice(url, "BENCH-SOLO", admin)
    chain = make_segments(dev.signer, dev.serial, 2 * segs + 2, size, blob)
    tus = TusClient(BackendClient(url, dev.signer))
    put = requests.Session()
    dev.upload(chain[0], pub, chunk=size)  # warm-up: connections, caches
    device_upload(tus, chain[1], pub, chunk=DEVICE_CHUNK)
    put.put(f"{url}/v1/bench/put", data=chain[0].media)
    tus_t, put_t, dev_t = [], [], []

    def timed(out: list[float], fn) -> None:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)

    def put_one(seg: Seg) -> None:
        assert put.put(f"{url}/v1/bench/put", data=seg.media).status_code == 201

    for i, (a, b) in enumerate(zip(chain[2::2], chain[3::2], strict=True)):
        runs = [lambda a=a: timed(put_t, lambda: put_one(a)),
                lambda a=a: timed(tus_t, lambda: dev.upload(a, pub, chunk=size)),
                lambda b=b: timed(dev_t, lambda: device_upload(tus, b, pub, chunk=DEVICE_CHUNK))]
        # Every order of the three in turn: each goes first, and follows each of the others, equally
        # often, so the write-back one upload leaves behind is not always paid by the same next one.
        for k in ORDERS[i % len(ORDERS)]:
            runs[k]()
    mbs = lambda ts: segs * size / sum(ts) / MB  # noqa: E731
    ratio = lambda ts: round(statistics.median(p / t for p, t in zip(put_t, ts, strict=True)), 3)  # noqa: E731
    return {
        "segment_mb": size / MB,
        "segments": segs,
        "put_mb_s": round(mbs(put_t), 1),
        "tus_mb_s": round(mbs(tus_t), 1),
        "device_uploader_mb_s": round(mbs(dev_t), 1),
        "ratio": ratio(tus_t),
        "device_uploader_ratio": ratio(dev_t),
        "device_chunk_mb": DEVICE_CHUNK / MB,
        "put_ms_p50": round(statistics.median(put_t) * 1000, 1),
        "tus_ms_p50": round(statistics.median(tus_t) * 1000, 1),
        "device_uploader_ms_p50": round(statistics.median(dev_t) * 1000, 1),
    }


def storm(
    url: str,
    admin: requests.Session,
    pub: bytes,
    pid: int,
    *,
    devices: int,
    segs: int,
    size: int,
    chunk: int,
    blob: bytes,
) -> dict:
    sims = [SimDevice(url, f"BENCH-DOCK-{i:03d}", admin) for i in range(devices)]
    chains = [make_segments(d.signer, d.serial, segs, size, blob) for d in sims]
    acks: list[float] = []
    served: list[float] = []  # from admission (201) to verified receipt: the backend's own work
    receipts: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(devices + 1)

    def run(dev: SimDevice, chain: list[Seg]) -> None:
        tus = TusClient(BackendClient(url, dev.signer))
        start.wait()
        for s in chain:
            t = time.perf_counter()
            try:
                doc = device_upload_retrying(dev, tus, s, pub, chunk=chunk)
            except Exception as e:  # noqa: BLE001 - counted as lost
                with lock:
                    errors.append(f"{dev.serial}/{s.sequence}: {e}")
                continue
            now = time.perf_counter()
            with lock:
                acks.append(now - t)
                served.append(now - dev.admitted_at)
                receipts.append(doc)

    sampler = RssSampler(pid)
    sampler.start()
    threads = [threading.Thread(target=run, args=(d, c)) for d, c in zip(sims, chains, strict=True)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    rss = sampler.stop()
    listed = {d["serial"]: d for d in admin.get(f"{url}/v1/devices").json()["devices"]}
    lost = 0
    for d in sims:
        info = listed[d.serial]
        got = {r["sequence"] for r in receipts if r["device_serial"] == d.serial}
        lost += segs - len(got)
        if info["last_sequence"] != segs or info["open_gaps"]:
            lost = max(lost, 1)
            errors.append(f"{d.serial}: backend has last {info['last_sequence']}, gaps {info['open_gaps']}")
    acks.sort()
    served.sort()
    return {
        "devices": devices,
        "segments_each": segs,
        "segment_mb": size / MB,
        "wall_s": round(wall, 2),
        "acknowledged": len(receipts),
        "lost": lost,
        "aggregate_mb_s": round(len(receipts) * size / wall / MB, 1),
        "ack_p50_ms": round(acks[len(acks) // 2] * 1000, 1) if acks else None,
        "ack_p99_ms": round(acks[min(len(acks) - 1, int(len(acks) * 0.99))] * 1000, 1) if acks else None,
        "admitted_to_ack_p99_ms": round(served[min(len(served) - 1, int(len(served) * 0.99))] * 1000, 1)
        if served
        else None,
        "retries_503": sum(d.busy for d in sims),
        "backend_peak_rss_mb": round(rss, 1),
        "errors": errors[:5],
    }


def server_timing(r: requests.Response, metric: str) -> float | None:
    """The duration in ms the backend reported for ``metric`` in its Server-Timing header, if any."""
    for part in r.headers.get("Server-Timing", "").split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name == metric:
            for param in params:
                if param.startswith("dur="):
                    return float(param[4:])
    return None


def _at_once(jobs: list) -> float:
    """Run the callables in threads released together; the wall time until the last one ends."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs) + 1)

    def run(job) -> None:
        start.wait()
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall


def measure_concurrent(url: str, admin_token: str, *, streams: int = 16, size: int = 8_000_000, rounds: int = 5,
                       serial_prefix: str | None = None, blob: bytes | None = None,
                       server_pids: list[int] | None = None) -> dict:
    """One instance under concurrency: ``streams`` devices each upload a ``size``-byte segment at once, with the
    device's protocol as a dock does (one signed request carrying the signed manifest, finalized on creation,
    receipt checked), against ``streams`` plain PUTs of the same bytes at once to the same server.

    Rounds are interleaved (which goes first flips every round) and each round's ratio of aggregate MB/s is
    taken, so write-back one leaves behind is paid by both alike and one noisy round cannot decide it: the
    medians over ``rounds`` (>= 5 for a verdict) are reported. Finalize times are the backend's own (its
    Server-Timing ``finalize`` metric: from the whole body received to the receipt committed). Enrols
    ``streams`` new devices named ``serial_prefix-NNN`` (a fresh random prefix unless given; a given one
    must be new to the server) through the admin API; ``admin_token`` is an admin's.

    With ``server_pids`` (the backend's processes, on this machine) each side's server CPU time per GB is
    reported too: a figure that other load on a shared machine moves far less than wall-clock MB/s.
    """
    serial_prefix = serial_prefix or f"BENCH-CC-{secrets.token_hex(3).upper()}"
    blob = blob if blob is not None else os.urandom(size)
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {admin_token}"
    pub = requests.get(f"{url}/v1/backend", timeout=30).json()["backend_public_key_pem"].encode()
    finalize_ms: list[float] = []
    lock = threading.Lock()

    def record(r: requests.Response, *args, **kwargs) -> None:
        ms = server_timing(r, "finalize")
        if ms is not None:
            with lock:
                finalize_ms.append(ms)

    sims = [SimDevice(url, f"{serial_prefix}-{i:03d}", admin) for i in range(streams)]
    clients = []
    for dev in sims:
        session = requests.Session()
        session.hooks["response"].append(record)
        clients.append(TusClient(BackendClient(url, dev.signer, session=session)))
    puts = [requests.Session() for _ in range(streams)]
    prev = [GENESIS] * streams

    def put_one(http: requests.Session, media: bytes) -> None:
        r = http.put(f"{url}/v1/bench/put", data=media, timeout=120)
        assert r.status_code == 201, r.text

    procs = [psutil.Process(p) for p in server_pids or ()]
    me = psutil.Process()

    def cpu_s() -> tuple[float, float, float]:
        """CPU seconds so far: the server's processes, their event-loop threads, and this (client) process."""
        server = sum(t.user + t.system for t in (p.cpu_times() for p in procs))
        loops = sum(_thread_cpu_s(p.pid, p.pid) for p in procs)
        mine = me.cpu_times()
        return server, loops, mine.user + mine.system

    tus_mbs, put_mbs, ratios = [], [], []
    cpu: dict[str, list[float]] = {"tus": [], "put": []}
    loop_cpu: dict[str, list[float]] = {"tus": [], "put": []}
    client_cpu: dict[str, list[float]] = {"tus": [], "put": []}
    ceilings: list[float] = []
    for rnd in range(rounds + 1):  # round 0 warms connections and caches and is not counted
        segs = []
        for i, dev in enumerate(sims):
            (seg,) = make_segments(dev.signer, dev.serial, 1, size, blob, first=rnd + 1, prev=prev[i])
            prev[i] = hashlib.sha256(seg.manifest).hexdigest()
            segs.append(seg)
        upload = [lambda d=d, t=t, s=s: device_upload_retrying(d, t, s, pub, chunk=size)
                  for d, t, s in zip(sims, clients, segs, strict=True)]
        plain = [lambda h=h, s=s: put_one(h, s.media) for h, s in zip(puts, segs, strict=True)]
        walls, used = {}, {}
        for name in (("tus", "put") if rnd % 2 else ("put", "tus")):
            before = cpu_s()
            walls[name] = _at_once(upload if name == "tus" else plain)
            used[name] = tuple(b - a for a, b in zip(before, cpu_s(), strict=True))
        if rnd == 0:
            with lock:
                finalize_ms.clear()
            continue
        tus_mbs.append(streams * size / walls["tus"] / MB)
        put_mbs.append(streams * size / walls["put"] / MB)
        ratios.append(walls["put"] / walls["tus"])
        gb = streams * size / 1e9
        for name in cpu:
            cpu[name].append(used[name][0] / gb)
            loop_cpu[name].append(used[name][1] / gb)
            client_cpu[name].append(used[name][2] / gb)
        if procs:
            ceilings.append((used["put"][0] + used["put"][2]) / (used["tus"][0] + used["tus"][2]))
    fin = sorted(finalize_ms)
    pct = lambda q: round(fin[min(len(fin) - 1, int(len(fin) * q))], 1) if fin else None  # noqa: E731
    return {
        "streams": streams,
        "segment_mb": size / MB,
        "rounds": rounds,
        "tus_mb_s": round(statistics.median(tus_mbs), 1),
        "put_mb_s": round(statistics.median(put_mbs), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "finalize_ms_p50": pct(0.5),
        "finalize_ms_p99": pct(0.99),
        "retries_503": sum(d.busy for d in sims),
        **({"tus_server_cpu_s_per_gb": round(statistics.median(cpu["tus"]), 2),
            "put_server_cpu_s_per_gb": round(statistics.median(cpu["put"]), 2),
            "tus_loop_cpu_s_per_gb": round(statistics.median(loop_cpu["tus"]), 2),
            "put_loop_cpu_s_per_gb": round(statistics.median(loop_cpu["put"]), 2),
            "tus_client_cpu_s_per_gb": round(statistics.median(client_cpu["tus"]), 2),
            "put_client_cpu_s_per_gb": round(statistics.median(client_cpu["put"]), 2),
            "cpu_work_ratio": round(statistics.median(ceilings), 3),
            "loop_cpu_ratio": round(statistics.median(p / t for p, t in zip(loop_cpu["put"], loop_cpu["tus"],
                                                                             strict=True)), 3),
            "cores": os.cpu_count()} if procs else {}),
    }


def _thread_cpu_s(pid: int, tid: int) -> float:
    """One thread's CPU seconds (user + system) from /proc: the event loop runs on a process's first thread."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench offload")
    ap.add_argument(
        "--quick", action="store_true", help="smaller segments and fewer rounds (checks the bench runs)"
    )
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--streams", type=int, default=16, help="concurrent uploads of the concurrency measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the concurrency measurement")
    ap.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--database-url", default="", metavar="URL",
                    help="run the backend on this PostgreSQL database ([database] url) instead of SQLite")
    args = ap.parse_args(argv)
    parts = args.only or list(PARTS)
    q = args.quick
    solo_size = 8_000_000  # a 10 s segment at 6 Mbit/s is ~7.5 MB
    storm_size = (256 if q else 1000) * 1000
    blob = os.urandom(solo_size)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-offload-") as d:
        backend = BackendProcess(
            Path(d),
            server={"bench_put": True, "log_level": "warning"},
            admission={"max_concurrent_uploads": 16, "retry_after_seconds": 1},
            limits={"max_upload_bytes": 64_000_000},
            database={"url": args.database_url},
        )
        backend.start()
        try:
            token = backend.admin_token()
            admin = requests.Session()
            admin.headers["Authorization"] = f"Bearer {token}"
            pub = backend.backend_public_pem()
            if "single" in parts:
                print(f"bench offload: single device, {solo_size / MB:g} MB segments, tus vs plain PUT...",
                      file=sys.stderr, flush=True)
                results["single"] = single_device(
                    backend.url, admin, pub, segs=8 if q else 40, size=solo_size, blob=blob
                )
            if "concurrent" in parts:
                print(f"bench offload: {args.streams} concurrent uploads of {solo_size / MB:g} MB vs as many "
                      f"plain PUTs, {2 if q else args.rounds} rounds...", file=sys.stderr, flush=True)
                results["concurrent"] = measure_concurrent(
                    backend.url, token, streams=args.streams, size=solo_size,
                    rounds=2 if q else args.rounds, blob=blob, server_pids=[backend.proc.pid])
            if "storm" in parts:
                print(
                    f"bench offload: dock storm, {args.devices} devices x {args.segments} segments of "
                    f"{storm_size / MB:g} MB at once...",
                    file=sys.stderr, flush=True)
                results["storm"] = storm(
                    backend.url,
                    admin,
                    pub,
                    backend.proc.pid,
                    devices=args.devices,
                    segs=args.segments,
                    size=storm_size,
                    chunk=DEVICE_CHUNK,
                    blob=blob,
                )
        finally:
            backend.stop()
    checks = {}
    if "single" in results:
        s = results["single"]
        checks.update({
            "device uploader/PUT ratio": (s["device_uploader_ratio"], f">= {TARGETS['ratio']}",
                                          s["device_uploader_ratio"] >= TARGETS["ratio"]),
            "stock-style tus/PUT ratio": (s["ratio"], "(reported)", True),
            "device, tus, PUT MB/s": (f"{s['device_uploader_mb_s']}, {s['tus_mb_s']}, {s['put_mb_s']}",
                                      "(reported)", True),
        })
    if "concurrent" in results:
        c = results["concurrent"]
        checks.update({
            f"{c['streams']} at once: device/PUT": (c["ratio"], f">= {TARGETS['concurrent_ratio']}",
                                                   c["ratio"] >= TARGETS["concurrent_ratio"]),
            "  device, PUT MB/s": (f"{c['tus_mb_s']}, {c['put_mb_s']}", "(reported)", True),
            "  finalize p50, p99 (ms)": (f"{c['finalize_ms_p50']}, {c['finalize_ms_p99']}", "(reported)", True),
            "  server CPU s/GB device, PUT": (f"{c['tus_server_cpu_s_per_gb']}, {c['put_server_cpu_s_per_gb']}",
                                              "(reported)", True),
            "  event loop CPU s/GB dev, PUT": (f"{c['tus_loop_cpu_s_per_gb']}, {c['put_loop_cpu_s_per_gb']}",
                                               "(reported)", True),
            "  client CPU s/GB device, PUT": (f"{c['tus_client_cpu_s_per_gb']}, {c['put_client_cpu_s_per_gb']}",
                                              "(reported)", True),
            f"  CPU work PUT/device ({c['cores']} cores)": (c["cpu_work_ratio"], "(reported)", True),
            "  event loop CPU PUT/device": (c["loop_cpu_ratio"], "(reported)", True),
        })
    if "storm" in results:
        st = results["storm"]
        checks.update({
            "storm segments lost": (st["lost"], "== 0", st["lost"] == 0),
            "storm aggregate MB/s": (st["aggregate_mb_s"], "(reported)", True),
            "storm ack p99 (ms)": (st["ack_p99_ms"], "(reported)", True),
            "  admitted->ack p99 (ms)": (st["admitted_to_ack_p99_ms"], "(reported)", True),
            "storm 503 retries": (st["retries_503"], "(reported)", True),
            "backend peak RSS (MB)": (
                st["backend_peak_rss_mb"],
                f"<= {TARGETS['rss_mb']}",
                st["backend_peak_rss_mb"] <= TARGETS["rss_mb"],
            ),
        })
    print(json.dumps(results, indent=2))
    if not args.json:
        print()
        for name, (value, target, ok) in checks.items():
            print(f"  {name:28} {value!s:>16}  target {target:10} {'ok' if ok else 'MISSED'}")
    return 0 if all(ok for _, _, ok in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
