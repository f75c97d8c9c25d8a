"""Two `bodycam backend serve` instances on one PostgreSQL, one staging directory, one keys folder and
one store, as behind a load balancer: any instance serves any request. Real processes on 127.0.0.1,
real device keys and real sealed segments; requests sent to one instance or the other on purpose.

Before the shared state moved into the database, each of these went wrong: a signed request replayed
to the second instance was accepted, two PATCHes of one upload at one offset both succeeded, the
admission limit was per instance, and an upload could only be resumed where it began."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from backendkit import TUS, BackendProcess, Device, Segment, enrolled_device, people, record, segments_of

OCTETS = {"Content-Type": "application/offset+octet-stream"}


@contextmanager
def two_instances(root: Path, url: str, *, lease_s: float = 5,
                  **admission: Any) -> Iterator[tuple[BackendProcess, ...]]:
    """Two instances sharing one database, staging directory, keys folder and store."""
    shared = {"staging_dir": str(root / "shared" / "uploads"), "keys_dir": str(root / "shared" / "keys"),
              "store_dir": str(root / "shared" / "store")}
    pair = tuple(
        BackendProcess(root / name, storage=shared, database={"url": url},
                       admission={"idle_seconds": 30, **admission}, limits={"upload_lease_seconds": lease_s},
                       trail={"checkpoint_seconds": 0.3})
        for name in ("a", "b")
    )
    try:
        for b in pair:
            b.start()  # both at once would do too (test_backend_data: migrations take turns)
        yield pair
    finally:
        for b in pair:
            b.stop()
    for b in pair:
        assert not (b.data / "backend.sqlite3").exists(), "both on PostgreSQL"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Any) -> Iterator[tuple[BackendProcess, ...]]:
    url = pg_cluster.new_database()
    with two_instances(tmp_path_factory.mktemp("fleet"), url) as pair:
        pair[0].db_url = url  # type: ignore[attr-defined]
        yield pair


def on(dev: Device, backend: BackendProcess) -> Device:
    """The same camera, talking to another instance (as a load balancer might send it)."""
    other = Device(backend.url, dev.signer, dev.serial)
    other.token = dev.token
    return other


def camera(fleet: tuple[BackendProcess, ...], tmp_path: Path, serial: str,
           after: int = 5) -> tuple[Device, list[Segment]]:
    rig = record(tmp_path, serial, after=after)
    return enrolled_device(fleet[0], rig), segments_of(rig)


def slow(data: bytes, started: threading.Event, pause: float = 0.2) -> Iterator[bytes]:
    """``data`` in 20 pieces over about 4 s: a PATCH that stays in flight while the test acts."""
    step = max(1, len(data) // 20)
    for i in range(0, len(data), step):
        yield data[i : i + step]
        started.set()
        time.sleep(pause)


def test_a_signed_request_replayed_to_the_other_instance_is_refused(fleet, tmp_path) -> None:
    a, b = fleet
    dev, _ = camera(fleet, tmp_path, "BC-FLEET-1")
    h = dev.headers("GET", "/v1/device/status")
    assert requests.get(a.url + "/v1/device/status", headers=h, timeout=10).status_code == 200
    replay = requests.get(b.url + "/v1/device/status", headers=h, timeout=10)
    assert replay.status_code == 401 and replay.json()["error"] == "replayed", replay.text
    # and a device session token issued by one instance is honoured by the other (one shared secret)
    dev.token = dev.session_token()
    assert on(dev, b).request("GET", "/v1/device/status").status_code == 200


def test_concurrent_patches_on_two_instances_cannot_both_succeed(fleet, tmp_path, pg_cluster) -> None:
    """The same chunk at the same offset, sent to both instances at once (a retry through the load
    balancer while the first attempt still streams): one writes it, the other is told to wait (423)
    with the current offset; then the segment is accepted whole."""
    a, b = fleet
    dev, segs = camera(fleet, tmp_path, "BC-FLEET-2")
    seg = segs[0]
    data = seg.media.read_bytes()
    loc = dev.create(seg).headers["Location"]
    started, answers = threading.Event(), {}

    def first() -> None:
        answers["a"] = dev.patch(loc, 0, slow(data, started), signed_body=data)

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(10)
    deadline = time.monotonic() + 10
    while not pg_cluster.sql(a.db_url, "SELECT lease_owner FROM uploads WHERE id=%s", (loc.rsplit("/", 1)[1],))[0][0]:
        assert time.monotonic() < deadline, "the first PATCH never took its lease"
        time.sleep(0.02)  # until the first PATCH, mid-body, holds the upload
    answers["b"] = on(dev, b).patch(loc, 0, data)
    t.join(30)
    assert answers["a"].status_code == 204, answers["a"].text
    assert answers["b"].status_code == 423, answers["b"].text
    assert answers["b"].json()["offset"] == 0 and "Retry-After" in answers["b"].headers
    # once the first has committed, the same offset is a 409 naming the new one, on either instance
    late = on(dev, b).patch(loc, 0, data)
    assert late.status_code == 409 and late.json()["offset"] == len(data), late.text
    assert on(dev, b).head(loc).headers["Upload-Offset"] == str(len(data))
    r = on(dev, b).finalize(loc, seg)  # finalized on the instance that did not write it: hashed from disk
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    stored = Path(a.config.read_text().split('store_dir = "')[1].split('"')[0])
    media = stored / "devices" / "BC-FLEET-2" / "segments" / "seg-0000000001.mp4"
    assert hashlib.sha256(media.read_bytes()).hexdigest() == seg.sha256


def test_an_upload_started_on_one_instance_resumes_on_the_other(fleet, tmp_path) -> None:
    a, b = fleet
    dev, segs = camera(fleet, tmp_path, "BC-FLEET-3", after=25)
    seg = segs[0]
    data = seg.media.read_bytes()
    half = len(data) // 2
    r = dev.create(seg)
    assert r.status_code == 201
    loc = r.headers["Location"]
    assert dev.patch(loc, 0, data[:half]).status_code == 204
    other = on(dev, b)
    assert other.head(loc).headers["Upload-Offset"] == str(half)
    assert other.patch(loc, half, data[half:]).status_code == 204
    fin = dev.finalize(loc, seg)  # back on the first, which never saw the second half
    assert fin.status_code == 200 and fin.json()["duplicate"] is False, fin.text
    assert other.request("GET", f"/v1/device/segments/{seg.sequence}").json()["receipt"] == fin.json()["receipt"]


def test_the_admission_limit_holds_across_both_instances(tmp_path, pg_cluster) -> None:
    with two_instances(tmp_path / "fleet", pg_cluster.new_database(), max_concurrent_uploads=3) as pair:
        admission_across(pair, tmp_path)


def admission_across(fleet: tuple[BackendProcess, ...], tmp_path: Path) -> None:
    a, b = fleet
    dev, segs = camera(fleet, tmp_path, "BC-FLEET-4")

    def create(inst: BackendProcess, sequence: int) -> requests.Response:
        return on(dev, inst).create(segs[0], extra_meta={"sequence": str(sequence)})

    held = []
    for i, inst in enumerate((a, b, a)):  # the limit is 3 uploads in all, not 3 per instance
        r = create(inst, 10 + i)
        assert r.status_code == 201, r.text
        held.append(r.headers["Location"])
    for inst in (a, b):
        busy = create(inst, 20)
        assert busy.status_code == 503 and busy.json()["error"] == "busy", busy.text
    assert on(dev, b).request("DELETE", held[0], headers=TUS).status_code == 204  # frees its slot fleet-wide
    r = create(a, 20)
    assert r.status_code == 201, r.text
    held.append(r.headers["Location"])
    for loc in held[1:]:
        on(dev, a).request("DELETE", loc, headers=TUS)


def test_one_device_finalized_on_both_at_once_keeps_one_chain(fleet, tmp_path) -> None:
    """A device's segments finalized in parallel, half through each instance: the chain is checked and
    committed one at a time fleet-wide (a lock in the database), no gap and no refusal."""
    a, b = fleet
    dev, segs = camera(fleet, tmp_path, "BC-FLEET-5", after=45)
    assert len(segs) >= 3
    results: list[requests.Response] = []

    def send(seg: Segment, inst: BackendProcess) -> None:
        results.append(on(dev, inst).create_whole(seg))

    threads = [threading.Thread(target=send, args=(s, (a, b)[i % 2])) for i, s in enumerate(segs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in results] == [201] * len(segs), [r.text for r in results]
    assert all(r.json()["duplicate"] is False for r in results)
    status = on(dev, b).request("GET", "/v1/device/status").json()
    assert status["gaps"] == [] and status["last_sequence"] == len(segs), status


def test_the_audit_trail_stays_one_chain_when_both_instances_append_at_once(fleet) -> None:
    a, b = fleet
    admin = people(a, a.admin_token("fleet-admin"))
    errors: list[int] = []

    def views(inst: BackendProcess) -> None:
        for _ in range(15):
            r = admin.get(inst.url + "/v1/devices", timeout=30)
            if r.status_code != 200:
                errors.append(r.status_code)

    threads = [threading.Thread(target=views, args=(inst,)) for inst in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    check = b.cli("audit-verify", check=False)
    assert check.returncode == 0 and "audit trail: OK" in check.stdout, check.stdout + check.stderr
    # both instances anchor the head every 0.3 s into the one store, taking turns: never two writes of
    # one checkpoint (the store's link-once files would refuse the second and the log would say so)
    assert int(check.stdout.split(" checkpoints")[0].rsplit(", ", 1)[1]) >= 2, check.stdout
    for inst in (a, b):
        log = (inst.root / "serve-1.log").read_text()
        assert "cannot anchor" not in log, log


def test_what_a_killed_instance_held_is_freed_once_it_is_found_dead(tmp_path, pg_cluster) -> None:
    """Instance a holds both admission slots (one upload between PATCHes, one mid-PATCH holding its lease)
    and is SIGKILLed. Within seconds (it stopped saying it is alive: instance_timeout_seconds), not after
    the slots' idle_seconds (60) or the lease's upload_lease_seconds (60), b admits a new upload and the
    device resumes the interrupted one on b and finalizes it."""
    url = pg_cluster.new_database()
    with two_instances(tmp_path / "fleet", url, lease_s=60, max_concurrent_uploads=2, idle_seconds=60,
                       instance_timeout_seconds=1.5) as (a, b):
        dev, segs = camera((a, b), tmp_path, "BC-FLEET-6")
        waiting = dev.create(segs[0], extra_meta={"sequence": "10"})
        assert waiting.status_code == 201, waiting.text
        seg = segs[0]
        data = seg.media.read_bytes()
        loc = dev.create(seg).headers["Location"]
        started = threading.Event()

        def interrupted() -> None:
            try:
                dev.patch(loc, 0, slow(data, started), signed_body=data)
            except requests.RequestException:
                pass  # the instance died under it

        t = threading.Thread(target=interrupted)
        t.start()
        assert started.wait(10)
        deadline = time.monotonic() + 10
        while not pg_cluster.sql(url, "SELECT lease_owner FROM uploads WHERE id=%s", (loc.rsplit("/", 1)[1],))[0][0]:
            assert time.monotonic() < deadline, "the PATCH never took its lease"
            time.sleep(0.02)
        a.kill()
        killed = time.monotonic()
        t.join(30)

        while (r := on(dev, b).create(segs[0], extra_meta={"sequence": "11"})).status_code == 503:
            assert time.monotonic() - killed < 15, "the killed instance's slots were never freed"
            time.sleep(0.2)
        assert r.status_code == 201, r.text
        while (p := on(dev, b).patch(loc, 0, data)).status_code == 423:
            assert time.monotonic() - killed < 15, "the killed instance's lease still holds the upload"
            time.sleep(0.2)
        assert p.status_code == 204, p.text
        assert time.monotonic() - killed < 15
        fin = on(dev, b).finalize(loc, seg)
        assert fin.status_code == 200 and fin.json()["duplicate"] is False, fin.text
        assert "instances stopped saying they are alive" in (b.root / "serve-1.log").read_text()
