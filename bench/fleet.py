"""`scripts/bench fleet`: the backend as a fleet, on this machine, through HAProxy.

Builds the fleet of tests/fleetkit.py from deploy/ (PostgreSQL, SeaweedFS S3 under Object Lock,
HAProxy with TLS running deploy/haproxy.cfg) and measures, in one run:
1. a dock storm (bench/offload.py's storm: N devices x M segments of 8 MB, each its own key, enrolled
   through the API, the device's protocol and client, 503 + Retry-After honoured, every receipt
   verified, every device's chain checked for gaps) through HAProxy with 1 and then 3 instances:
   aggregate acknowledged MB/s, p99 time to a verified receipt, segments lost, peak RSS per instance;
2. 16 uploads at once against 16 plain PUTs of the same bytes at once (PUT /v1/bench/put, the
   baseline: written and fsynced, nothing else): on one instance (PostgreSQL metadata, directory
   store; issue 9 item 6, target >= 0.9), and through the same HAProxy to the 3 instances on S3
   (reported: the uploads there also pay for S3 and the PUTs do not);
3. the recordings list with 1,000,000 segments in PostgreSQL (seeded with generate_series in
   seconds, not through the API): GET /v1/recordings?device=... through HAProxy, p95 over many
   devices, GET /v1/recordings?page=N (the whole archive, a page of 100 newest first, from the
   recordings index) p95, and the unpaged aggregate SQL over every segment, reported.

PostgreSQL runs with fsync, synchronous_commit and full_page_writes on (the tests' cluster runs with
them off; the bench starts its own with them on, and checks), so its commits cost what they would in
production; before 2026-12-02 they stayed off, as a command-line setting outlives ALTER SYSTEM. Both storms use the same
fleet-wide admission limit, so 1 vs 3 instances compares instances, not limits. Everything shares
this machine's cores: 3 instances here cannot be 3x one instance; docs/capacity.md uses the
per-instance figure with that in mind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from fleetkit import Fleet  # noqa: E402
from pgkit import PgCluster  # noqa: E402

from bench import offload  # noqa: E402

TARGETS = {"lost": 0, "rss_mb": 500, "recordings_p95_ms": 100, "concurrent_ratio": 0.9}
MB = 1e6
SEED_SEGMENTS = 1_000_000
SEED_PER_DEVICE = 100          # 10,000 devices
SEED_PER_RECORDING = 10        # 10 segments a recording: 100,000 recordings


def production_durability(cluster: PgCluster) -> dict[str, str]:
    """The cluster's durability settings, checked: a bench of commits must pay for them as production does."""
    got = {name: cluster.sql(cluster.url + "/postgres", f"SHOW {name}")[0][0]
           for name in ("fsync", "synchronous_commit", "full_page_writes")}
    if set(got.values()) != {"on"}:
        raise SystemExit(f"bench fleet: PostgreSQL is not durable ({got}); the figures would flatter it")
    return got


def storm_through(fleet: Fleet, *, devices: int, segments: int, size: int, blob: bytes) -> dict:
    """bench/offload.py's dock storm, through HAProxy, with every instance's RSS sampled."""
    admin = fleet.admin()
    pub = requests.get(f"{fleet.url}/v1/backend", timeout=30).json()["backend_public_key_pem"].encode()
    samplers = [offload.RssSampler(b.proc.pid) for b in fleet.backends]
    for s in samplers:
        s.start()
    before = _settled_db_figures(fleet.database_url)
    out = offload.storm(fleet.url, admin, pub, fleet.backends[0].proc.pid, devices=devices, segs=segments,
                        size=size, chunk=offload.DEVICE_CHUNK, blob=blob)
    db = _settled_db_figures(fleet.database_url)
    acked = max(1, out["acknowledged"])
    # What one stored segment costs PostgreSQL (docs/capacity.md): transactions (every statement run outside
    # BEGIN counts as one, reads too), rows written, WAL written and WAL flushes (fsyncs of the log: what
    # the disk must keep up with; commits of concurrent sessions share one, and relaxed writes wait for
    # none), and bytes on disk over every table and index (segments, uploads, store versions, trail, ...).
    for name in ("commits", "rows_written", "wal_flushes", "wal_bytes"):
        out[f"db_{name}_per_segment"] = round((db[name] - before[name]) / acked, 1)
    out["db_bytes_per_segment"] = round((db["bytes"] - before["bytes"]) / acked)
    out["instances"] = len(fleet.backends)
    out["peak_rss_mb"] = [round(s.stop(), 1) for s in samplers]
    del out["backend_peak_rss_mb"]  # the first instance's only; peak_rss_mb has each
    return out


def _db_figures(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        commits, written = conn.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()").fetchone()
        flushes, wal_bytes = conn.execute("SELECT wal_sync, wal_bytes FROM pg_stat_wal").fetchone()
        size = conn.execute("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'public' AND c.relkind = 'r'").fetchone()[0]
    return {"commits": int(commits), "rows_written": int(written), "wal_flushes": int(flushes),
            "wal_bytes": int(wal_bytes), "bytes": int(size)}


def _settled_db_figures(url: str) -> dict[str, int]:
    """PostgreSQL publishes a backend's counts when it goes idle, up to ~10 s late: read until they hold."""
    last = _db_figures(url)
    for _ in range(15):
        time.sleep(1)
        now = _db_figures(url)
        if now["commits"] - last["commits"] <= 2:  # nothing but our own two reads
            return now
        last = now
    return last


def concurrent(fleet: Fleet, *, quick: bool, blob: bytes) -> dict:
    """16 uploads at once vs 16 plain PUTs at once: bench/offload.py's measurement, through HAProxy to
    the fleet (so the uploads pay for PostgreSQL and S3, the PUTs for a local fsync only)."""
    size = 2_000_000 if quick else 8_000_000
    return offload.measure_concurrent(fleet.url, fleet.admin_token(), streams=16, size=size,
                                      rounds=2 if quick else 5, blob=blob[:size])


def concurrent_one_instance(pg: PgCluster, root: Path, *, quick: bool, blob: bytes) -> dict:
    """Issue 9 item 6 as stated: one instance, 16 uploads at once against the same server's 16 plain PUTs,
    metadata in this PostgreSQL, evidence in its directory store (both sides write the same local disk)."""
    from backendkit import BackendProcess

    size = 2_000_000 if quick else 8_000_000
    backend = BackendProcess(root, server={"bench_put": True, "log_level": "warning"},
                             database={"url": pg.new_database()},
                             limits={"max_upload_bytes": 64_000_000},
                             admission={"max_concurrent_uploads": 64})
    backend.start()
    try:
        return offload.measure_concurrent(backend.url, backend.admin_token(), streams=16, size=size,
                                          rounds=2 if quick else 5, blob=blob[:size],
                                          server_pids=[backend.proc.pid] if backend.proc else None)
    finally:
        backend.stop()


SEED = """
INSERT INTO segments(serial, sequence, recording_id, segment_index, key_id, prev_sha256, manifest_sha256,
                     media_sha256, media_size, first_utc_ns, last_utc_ns, stored_ns, receipt, receipt_sig)
SELECT serial, seq, serial || '-' || lpad(((seq - 1) / %(per_rec)s + 1)::text, 10, '0'), (seq - 1) %% %(per_rec)s,
       'seed-key', md5(serial || (seq - 1)), md5(serial || seq), md5('m' || serial || seq), 7500000,
       t, t + 10000000000, t + 60000000000, '{}', ''
FROM (SELECT 'BC-SEED-' || lpad(d::text, 5, '0') AS serial, s AS seq,
             1764547200000000000 + (d::bigint * 100 + s) * 10000000000 AS t
      FROM generate_series(1, %(devices)s) d, generate_series(1, %(per_dev)s) s) x
"""

# The recordings index the list reads (review.index() fills it as segments arrive), seeded to match.
SEED_INDEX = """
INSERT INTO review_segments(serial, sequence, recording_id, stored_ns, markers, recovered)
SELECT serial, sequence, recording_id, stored_ns, 0, 0 FROM segments WHERE serial LIKE 'BC-SEED-%%';
INSERT INTO review_recordings(recording_id, serial, first_seq, last_seq, segments, first_utc_ns, last_utc_ns,
                              bytes, markers, recovered)
SELECT recording_id, MIN(serial), MIN(sequence), MAX(sequence), COUNT(*), MIN(first_utc_ns), MAX(last_utc_ns),
       SUM(media_size), 0, 0
FROM segments WHERE serial LIKE 'BC-SEED-%%' GROUP BY recording_id;
"""


def recordings_query(fleet: Fleet, url: str, *, quick: bool) -> dict:
    """1,000,000 segments seeded straight into PostgreSQL, then the recordings list timed."""
    n = 100_000 if quick else SEED_SEGMENTS
    devices = n // SEED_PER_DEVICE
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED, {"per_rec": SEED_PER_RECORDING, "devices": devices, "per_dev": SEED_PER_DEVICE})
        for stmt in SEED_INDEX.split(";")[:-1]:
            conn.execute(stmt)
        conn.execute("ANALYZE")
        total = conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    seeded_s = time.perf_counter() - t0
    http = fleet.admin()
    rng = random.Random(9)
    times = []
    for i in range(60 if not quick else 20):
        serial = f"BC-SEED-{rng.randint(1, devices):05d}"
        t = time.perf_counter()
        r = http.get(f"{fleet.url}/v1/recordings", params={"device": serial}, timeout=60)
        dt_ms = (time.perf_counter() - t) * 1000
        assert r.status_code == 200 and len(r.json()["recordings"]) == SEED_PER_DEVICE // SEED_PER_RECORDING, r.text
        if i >= 5:  # the first few warm connections and caches
            times.append(dt_ms)
    times.sort()
    pages = []  # the whole archive, newest first, one page of 100 at a time (first, middle and far pages)
    recordings = http.get(f"{fleet.url}/v1/recordings", params={"page": 1}, timeout=60).json()["total"]
    last_full = recordings // 100  # about 1,000 pages for the full seed, 100 for --quick
    for i in range(30 if not quick else 12):
        page = rng.choice([1, 2, 10, last_full // 20, last_full // 2, last_full])
        t = time.perf_counter()
        r = http.get(f"{fleet.url}/v1/recordings", params={"page": page}, timeout=60)
        dt_ms = (time.perf_counter() - t) * 1000
        assert r.status_code == 200 and len(r.json()["recordings"]) == 100, r.text
        if i >= 3:
            pages.append(dt_ms)
    pages.sort()
    from bodycam_backend.data.segments import RECORDINGS

    sql = RECORDINGS.format(where="")
    full = []
    with psycopg.connect(url) as conn:
        for _ in range(3):
            t = time.perf_counter()
            rows = conn.execute(sql).fetchall()
            full.append((time.perf_counter() - t) * 1000)
    return {
        "segments_in_db": total,
        "devices": devices,
        "seed_s": round(seeded_s, 1),
        "device_list_ms_p50": round(times[len(times) // 2], 1),
        "device_list_ms_p95": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
        "all_list_page_ms_p50": round(pages[len(pages) // 2], 1),
        "all_list_page_ms_p95": round(pages[min(len(pages) - 1, int(len(pages) * 0.95))], 1),
        "full_list_sql_ms_median": round(statistics.median(full), 1),
        "full_list_recordings": len(rows),
    }


def run_fleet(pg: PgCluster, root: Path, instances: int, **kw) -> Fleet:  # noqa: ANN003
    fleet = Fleet(root, pg.new_database(), instances=instances, tables={
        "server": {"bench_put": True},
        "limits": {"max_upload_bytes": 64_000_000},
        "admission": {"max_concurrent_uploads": 32, "retry_after_seconds": 1},
    })
    fleet.start()
    os.environ["REQUESTS_CA_BUNDLE"] = fleet.ca  # bench/offload.py's clients trust this fleet's certificate
    return fleet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench fleet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small segments, few devices, 100,000 seeded segments "
                                                          "(checks the bench runs)")
    ap.add_argument("--devices", type=int, default=None, help="devices in each storm (default 48; quick 8)")
    ap.add_argument("--segments", type=int, default=None, help="segments per device (default 4; quick 2)")
    ap.add_argument("--json", action="store_true", help="print only the JSON results")
    args = ap.parse_args(argv)
    q = args.quick
    devices = args.devices or (8 if q else 48)
    segs = args.segments or (2 if q else 4)
    size = 1_000_000 if q else 8_000_000
    blob = os.urandom(8_000_000)
    results: dict = {"machine": f"{os.cpu_count()} cores", "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    say = (lambda *a: None) if args.json else (lambda msg: print(f"bench fleet: {msg}", file=sys.stderr, flush=True))
    pg = PgCluster(durable=True)
    d = tempfile.mkdtemp(prefix="bodycam-bench-fleet-")
    try:
        results["postgresql"] = production_durability(pg)
        # first, while the cluster is quiet (later, autovacuum works through the million seeded rows)
        say("one instance (PostgreSQL, directory store): 16 uploads at once vs 16 plain PUTs at once")
        results["concurrent_one"] = concurrent_one_instance(pg, Path(d) / "one", quick=q, blob=blob)
        for n in (1, 3):
            say(f"{n} instance(s) behind HAProxy: storm of {devices} devices x {segs} segments of {size / MB:g} MB")
            fleet = run_fleet(pg, Path(d) / f"fleet{n}", n)
            try:
                results[f"storm_{n}"] = storm_through(fleet, devices=devices, segments=segs, size=size,
                                                      blob=blob)
                if n == 3:
                    say("16 uploads at once vs 16 plain PUTs at once, through HAProxy")
                    results["concurrent"] = concurrent(fleet, quick=q, blob=blob)
                    say(f"recordings list with {100_000 if q else SEED_SEGMENTS:,} segments in PostgreSQL")
                    results["recordings"] = recordings_query(fleet, fleet.database_url, quick=q)
            finally:
                fleet.stop()
    except BaseException:
        print(f"bench fleet: failed; the fleet's files and logs are kept in {d}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(d, ignore_errors=True)
    finally:
        pg.stop()
    s1, s3, c, r = results["storm_1"], results["storm_3"], results["concurrent"], results["recordings"]
    c1 = results["concurrent_one"]
    lost = s1["lost"] + s3["lost"]
    rss = max(s1["peak_rss_mb"] + s3["peak_rss_mb"])
    checks = {
        "1 instance: MB/s, ack p99 ms": (f"{s1['aggregate_mb_s']}, {s1['ack_p99_ms']}", "(reported)", True),
        "3 instances: MB/s, ack p99 ms": (f"{s3['aggregate_mb_s']}, {s3['ack_p99_ms']}", "(reported)", True),
        "3 vs 1 instance MB/s": (round(s3["aggregate_mb_s"] / s1["aggregate_mb_s"], 2), "(reported)", True),
        "16 at once, 1 instance: upload/PUT": (c1["ratio"], f">= {TARGETS['concurrent_ratio']}",
                                               c1["ratio"] >= TARGETS["concurrent_ratio"]),
        "16 at once, fleet+S3: upload/PUT": (c["ratio"], "(reported)", True),
        "segments lost": (lost, "== 0", lost == 0),
        "peak RSS per instance (MB)": (rss, f"<= {TARGETS['rss_mb']}", rss <= TARGETS["rss_mb"]),
        "recordings/device p95 (ms)": (r["device_list_ms_p95"], f"<= {TARGETS['recordings_p95_ms']}",
                                       r["device_list_ms_p95"] <= TARGETS["recordings_p95_ms"]),
        "recordings page p95 (ms)": (r["all_list_page_ms_p95"], f"<= {TARGETS['recordings_p95_ms']}",
                                     r["all_list_page_ms_p95"] <= TARGETS["recordings_p95_ms"]),
        "all recordings SQL (ms)": (r["full_list_sql_ms_median"], "(reported)", True),
    }
    print(json.dumps(results, indent=2))
    if not args.json:
        print()
        for name, (value, target, ok) in checks.items():
            print(f"  {name:30} {value!s:>16}  target {target:10} {'ok' if ok else 'MISSED'}")
    return 0 if all(ok for _, _, ok in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
