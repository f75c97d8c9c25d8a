"""`scripts/bench review`: the recordings list of the review pages on a large archive.

Seeds a real backend's database with N recordings (100,000 by default; 1 to 3 segments each, 200
cameras assigned to 200 officers, some gaps, flags, markers and recovered segments) straight through
SQL, as the ingest path would leave them after years of uploads (uploading 100,000 real segments would
take hours and measure the ingest, not the list). Then a reviewer signs in through the form and each
query below is asked R times over loopback; the figure is the server time the backend reports for
the list view (``Server-Timing: app``: index catch-up, query, audit entry and rendering), p50/p95, next
to the server's own time for ``/healthz``-like work measured the same way (the baseline: a session
lookup and an audit entry with no query, i.e. the list with a filter that matches nothing cheaply).

Then a backend holding one long real recording from the recording rig (``--segments``, 60 by
default: a 10-hour shift's 60 ten-minute segments, here small 2 s ones at 160x120): the integrity
panel's server time (``Server-Timing: app``) when every segment is verified (the first look, and an
explicit re-check) and when the per-segment verdicts are cached, next to the work the panel did on every
request before verdicts were cached (copy the whole recording out of the store into a temporary
directory and run `bodycam verify` on all of it, timed in this process: the baseline). And, in Debian's
Chromium driven by Playwright (as the browser tests do), on the same recording: the time from opening
the recording's page to its first frame being decodable (``loadeddata``, measured by the page's own
clock from navigation start), and seeks far into it (to the middle and near the end, until
``seeked``), each next to the time to fetch one segment's bytes over the same loopback from the same
page (the baseline).

Targets (issue 13): p95 <= 100 ms for every list and filter; first frame <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from backendkit import BackendProcess  # noqa: E402
from reviewkit import PASSWORD, signed_in, user_add  # noqa: E402

TARGET_P95_MS = 100.0
TARGET_FIRST_FRAME_MS = 1000.0
FIRST_FRAME_JS = """() => new Promise((resolve) => {
  const v = document.getElementById('video');
  const done = () => resolve(performance.now());
  if (v.readyState >= 2) done(); else v.addEventListener('loadeddata', done, { once: true });
})"""
SEEK_JS = """(t) => new Promise((resolve) => {
  const v = document.getElementById('video');
  const t0 = performance.now();
  v.addEventListener('seeked', () => resolve(performance.now() - t0), { once: true });
  v.currentTime = t;
})"""
FETCH_JS = """async (url) => { const t0 = performance.now(); const r = await fetch(url);
  await r.arrayBuffer(); return performance.now() - t0; }"""
T0 = 1_735_689_600 * 10**9  # 2025-01-01


def seed(db_path: Path, n: int, devices: int = 200) -> dict[str, str]:
    """N recordings in segments + the review index; returns a sample of names to filter by."""
    rng = random.Random(13)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA synchronous=OFF")
    seqs = dict.fromkeys(range(devices), 0)
    segs, rsegs, recs, gaps, flags = [], [], [], [], []
    for i in range(n):
        d = rng.randrange(devices)
        serial = f"BC-{d:04d}"
        k = rng.choice((1, 1, 2, 3))
        start = T0 + i * (300 * 10**9 * 365 * 24 * 12 // n)  # spread over about a year
        first = seqs[d] + 1
        seqs[d] += k
        rid = f"{serial}-{first:010d}"
        markers = 1 if rng.random() < 0.1 else 0
        recovered = 1 if rng.random() < 0.01 else 0
        for j in range(k):
            seq = first + j
            t = start + j * 60 * 10**9
            stored = start + 86400 * 10**9
            segs.append((serial, seq, rid, j, "0" * 64, "0" * 64, f"{i:064x}", f"{i:064x}", 8_000_000, t,
                         t + 60 * 10**9, stored, "{}", ""))
            rsegs.append((serial, seq, rid, stored, markers if j == 0 else 0, recovered if j == k - 1 else 0))
        recs.append((rid, serial, first, first + k - 1, k, start, start + k * 60 * 10**9, k * 8_000_000,
                     markers, recovered))
        if rng.random() < 0.005:
            gaps.append((serial, first + k, start, None))
        if rng.random() < 0.005:
            flags.append((serial, first, None, "store_changed", "bench", start, None))
    con.executemany("INSERT INTO segments(serial, sequence, recording_id, segment_index, key_id, prev_sha256,"
                    " manifest_sha256, media_sha256, media_size, first_utc_ns, last_utc_ns, stored_ns, receipt,"
                    " receipt_sig) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", segs)
    con.executemany("INSERT INTO review_segments VALUES(?,?,?,?,?,?)", rsegs)
    con.executemany("INSERT INTO review_recordings VALUES(?,?,?,?,?,?,?,?,?,?)", recs)
    con.executemany("INSERT OR IGNORE INTO gaps VALUES(?,?,?,?)", gaps)
    con.executemany("INSERT INTO flags(serial, sequence, upload_id, reason, message, created_ns, evidence)"
                    " VALUES(?,?,?,?,?,?,?)", flags)
    con.executemany("INSERT INTO people(name, role, token_sha256, created_ns) VALUES(?,?,?,?)",
                    [(f"officer{d:04d}", "officer", f"bench-{d}", T0) for d in range(devices)])
    con.executemany("INSERT INTO device_assignments(serial, name, from_ns, until_ns) VALUES(?,?,?,NULL)",
                    [(f"BC-{d:04d}", f"officer{d:04d}", T0 - 10**9) for d in range(devices)])
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return {"device": "BC-0042", "officer": "officer0042"}


QUERIES = {
    "newest first (page 1)": "",
    "page 1000": "page=1000",
    "device": "device={device}",
    "officer": "officer={officer}",
    "one month": "from=2025-06-01&to=2025-06-30",
    "has gaps": "gaps=1",
    "flagged": "flagged=1",
    "has markers": "markers=1",
    "recovered": "recovered=1",
    "largest first": "sort=size",
    "device + month + markers": "device={device}&from=2025-03-01&to=2025-09-30&markers=1",
}


def measure(session, url: str, query: str, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        r = session.get(f"{url}/recordings?format=json&{query}")
        r.raise_for_status()
        out.append(float(r.headers["Server-Timing"].split("dur=")[1]))
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def long_recording(tmp: Path, segments: int) -> tuple[BackendProcess, str]:
    """A started backend holding one real recording of at least ``segments`` segments, and its id."""
    from backendkit import enrolled_device, segments_of
    from reviewkit import record_with_marker

    backend = BackendProcess(tmp / "backend", trail={"checkpoint_seconds": 0})
    backend.start()
    assert user_add(backend, "rita", "reviewer", PASSWORD).returncode == 0
    frames = segments * 20 + 5  # 10 fps, 2 s segments
    rig = record_with_marker(tmp / "rig", "BC-LONG-0001", officer="olly", after=frames, marker_at=frames // 2)
    dev = enrolled_device(backend, rig)
    segs = segments_of(rig)
    for seg in segs:
        r = dev.upload(seg)
        assert r.status_code == 200, r.text
    assert len(segs) >= segments, len(segs)
    return backend, f"BC-LONG-0001-{segs[0].sequence:010d}"


def old_panel_work(backend: BackendProcess, serial: str) -> float:
    """ms for what the panel did on every request before per-segment verdicts: copy every stored object of
    the recording into a temporary directory, then `bodycam verify` the lot with the enrolled certificate."""
    import shutil

    from bodycam.verify import verify_paths

    store = backend.data / "store" / "devices" / serial / "segments"
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-old-panel-") as tmp:
        for f in sorted(store.iterdir()):
            shutil.copyfile(f, Path(tmp) / f.name)
        cert = Path(tmp) / "device.cert.pem"
        import sqlite3

        con = sqlite3.connect(backend.data / "backend.sqlite3")
        cert.write_text(con.execute("SELECT pem FROM certificates WHERE serial = ?", (serial,)).fetchone()[0])
        con.close()
        rep = verify_paths(sorted(Path(tmp).glob("seg-*.json")), public_keys=[cert])
        assert rep.ok, rep.errors
    return (time.perf_counter() - t) * 1000


def panel(backend: BackendProcess, rid: str, rounds: int) -> dict[str, list[float]]:
    """The integrity panel's server time: all verified (first look, re-checks), cached, and the old way."""
    from reviewkit import csrf_of

    s = signed_in(backend.url, "rita")
    timing = lambda r: float(r.headers["Server-Timing"].split("dur=")[1])  # noqa: E731
    out: dict[str, list[float]] = {"first look (verifies all)": [], "re-check (verifies all)": [],
                                   "cached verdicts": [], "baseline: old panel (copy + verify all)": []}
    first = s.get(f"{backend.url}/recordings/{rid}/integrity")
    assert first.json()["ok"] and first.json()["verified_now"] == first.json()["segments"].__len__(), first.text
    out["first look (verifies all)"].append(timing(first))
    csrf = csrf_of(s.get(f"{backend.url}/recordings/{rid}").text)
    for _ in range(max(3, rounds // 5)):
        r = s.post(f"{backend.url}/recordings/{rid}/integrity/recheck", data={"csrf": csrf}, allow_redirects=False)
        assert r.status_code == 303, r.text
        out["re-check (verifies all)"].append(timing(r))
        out["baseline: old panel (copy + verify all)"].append(old_panel_work(backend, rid.rsplit("-", 1)[0]))
    for _ in range(rounds):
        r = s.get(f"{backend.url}/recordings/{rid}/integrity")
        assert r.json()["verified_now"] == 0
        out["cached verdicts"].append(timing(r))
    return out


def player(backend: BackendProcess, rid: str, rounds: int) -> dict[str, list[float]]:
    """First frame and seeks far into a long real recording in a real browser (see the module docstring)."""
    from playwright.sync_api import sync_playwright
    from reviewkit import launch, sign_in_page, wait_js

    out: dict[str, list[float]] = {"first_frame": [], "page_loaded": [], "seek_middle": [], "seek_end": [],
                                   "baseline_fetch": []}
    with sync_playwright() as p:
        browser = launch(p)
        ctx = browser.new_context()
        page = ctx.new_page()
        sign_in_page(page, backend.url, "rita")
        for _ in range(rounds):
            page.goto(f"{backend.url}/recordings/{rid}")
            out["first_frame"].append(page.evaluate(FIRST_FRAME_JS))
            out["page_loaded"].append(page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd"))
            wait_js(page, "window.bodycamPlayer.complete === true")
            ends = page.evaluate("window.bodycamPlayer.ends")
            out["seek_middle"].append(page.evaluate(SEEK_JS, ends[-1] / 2))
            out["seek_end"].append(page.evaluate(SEEK_JS, ends[-1] - 0.5))
            n = int(rid.rsplit("-", 1)[1]) + len(ends) // 2
            out["baseline_fetch"].append(page.evaluate(FETCH_JS, f"/recordings/{rid}/segments/{n}/media"))
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench review", description=__doc__.split("\n\n")[0])
    ap.add_argument("--recordings", type=int, default=100_000, help="recordings to seed (default 100000)")
    ap.add_argument("--rounds", type=int, default=40, help="requests per query (default 40)")
    ap.add_argument("--quick", action="store_true", help="2,000 recordings, 5 rounds (checks the bench runs)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--no-player", action="store_true", help="skip the browser's first frame and seek figures")
    ap.add_argument("--segments", type=int, default=60, help="segments in the long recording (default 60)")
    args = ap.parse_args(argv)
    n, rounds = (2000, 5) if args.quick else (args.recordings, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-review-") as tmp:
        backend = BackendProcess(Path(tmp) / "backend", trail={"checkpoint_seconds": 0})
        backend.cli("init")
        assert user_add(backend, "reviewer", "reviewer", PASSWORD).returncode == 0
        t = time.perf_counter()
        names = seed(backend.data / "backend.sqlite3", n)
        seeded_s = time.perf_counter() - t
        backend.start()
        try:
            s = signed_in(backend.url, "reviewer")
            measure(s, backend.url, "", 3)  # warm the page cache
            results = {}
            baseline = measure(s, backend.url, "device=BC-NONE", rounds)
            results["baseline: no match (session, audit entry)"] = baseline
            for label, q in QUERIES.items():
                results[label] = measure(s, backend.url, q.format(**names), rounds)
        finally:
            backend.stop()
    doc = {"recordings": n, "rounds": rounds, "seed_seconds": round(seeded_s, 1), "target_p95_ms": TARGET_P95_MS,
           "queries": {k: {"p50_ms": round(pct(v, 50), 2), "p95_ms": round(pct(v, 95), 2)} for k, v in results.items()}}
    ok = all(v["p95_ms"] <= TARGET_P95_MS for v in doc["queries"].values())
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-long-") as tmp:
        long_backend, rid = long_recording(Path(tmp), 60 if args.quick else args.segments)
        try:
            listing = signed_in(long_backend.url, "rita").get(f"{long_backend.url}/recordings/{rid}?format=json")
            doc["segments"] = len(listing.json()["segment_list"])
            figures = panel(long_backend, rid, 5 if args.quick else rounds)
            doc["panel"] = {k: {"p50_ms": round(pct(v, 50), 1), "p95_ms": round(pct(v, 95), 1)}
                            for k, v in figures.items()}
            if not args.no_player:
                figures = player(long_backend, rid, 3 if args.quick else 15)
                doc["player"] = {k: {"p50_ms": round(pct(v, 50), 1), "p95_ms": round(pct(v, 95), 1)}
                                 for k, v in figures.items()}
                ok = ok and doc["player"]["first_frame"]["p95_ms"] <= TARGET_FIRST_FRAME_MS
        finally:
            long_backend.stop()
    doc["met"] = ok
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"review list on {n:,} recordings (seeded in {seeded_s:.1f} s), {rounds} requests per query, "
          "server time (Server-Timing: app)")
    for k, v in doc["queries"].items():
        flag = "" if v["p95_ms"] <= TARGET_P95_MS else "  (over target)"
        print(f"  {k:<45} p50 {v['p50_ms']:7.2f} ms   p95 {v['p95_ms']:7.2f} ms{flag}")
    print(f"mean of the list's medians {statistics.mean(v['p50_ms'] for v in doc['queries'].values()):.1f} ms")
    print(f"integrity panel of a {doc['segments']}-segment recording, server time (Server-Timing: app):")
    for k, v in doc["panel"].items():
        print(f"  {k:<45} p50 {v['p50_ms']:7.1f} ms   p95 {v['p95_ms']:7.1f} ms")
    if "player" in doc:
        pl = doc["player"]
        print(f"player in Chromium (the same {doc['segments']}-segment recording, loopback):")
        for k, label in (("first_frame", "first frame after opening the page"),
                         ("page_loaded", "of which: the page's HTML received"), ("seek_middle", "seek to the middle"),
                         ("seek_end", "seek to the end"), ("baseline_fetch", "baseline: fetch one segment's bytes")):
            extra = f"   (target {TARGET_FIRST_FRAME_MS:g} ms)" if k == "first_frame" else ""
            print(f"  {label:<45} p50 {pl[k]['p50_ms']:7.1f} ms   p95 {pl[k]['p95_ms']:7.1f} ms{extra}")
    print(f"targets (list p95 <= {TARGET_P95_MS:g} ms, first frame p95 <= {TARGET_FIRST_FRAME_MS:g} ms): "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
