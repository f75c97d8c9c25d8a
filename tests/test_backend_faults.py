"""Backend faults with a real process: SIGKILL mid-upload then restart, admission control (503 +
Retry-After), and config errors that name the key."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from backendkit import (
    ROOT,
    TUS,
    BackendProcess,
    Device,
    Segment,
    enrolled_device,
    free_port,
    record,
    segments_of,
    store_files,
)
from bodycam.errors import ConfigError
from bodycam_backend import config as configmod


@contextmanager
def own_backend(tmp_path: Path, serial: str, *, after: int = 5, database: dict[str, Any] | None = None,
                **tables: dict[str, Any]) -> Iterator[tuple[BackendProcess, Device, Segment]]:
    """A backend process of the test's own (it gets killed), and one enrolled camera's first segment."""
    backend = BackendProcess(tmp_path / "backend", database=database or {}, **tables)
    backend.start()
    try:
        rig = record(tmp_path / "dev", serial, after=after)
        yield backend, enrolled_device(backend, rig), segments_of(rig)[0]
    finally:
        backend.stop()


def kill_mid_body(
    backend: BackendProcess, send: Callable[[Iterator[bytes]], object], data: bytes, start: int,
    in_flight: Callable[[], None] = lambda: None,
) -> None:
    """Send ``data[start:]`` slowly through ``send`` and SIGKILL the backend while the body is in flight."""
    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield data[start : start + 1000]
        sent.set()
        for i in range(start + 1000, len(data), 500):
            time.sleep(0.2)
            yield data[i : i + 500]

    def until_killed() -> None:
        try:
            send(slow_body())
        except requests.RequestException:
            pass  # the server died under it

    t = threading.Thread(target=until_killed)
    t.start()
    assert sent.wait(10)
    time.sleep(0.5)
    in_flight()
    backend.kill()
    t.join(15)


def test_backend_killed_mid_upload_resumes_without_loss_or_duplicate(tmp_path, database) -> None:
    with own_backend(tmp_path, "BC-KILL-1", after=25, database=database,
                     limits={"upload_lease_seconds": 8}) as (backend, dev, seg):
        data = seg.media.read_bytes()
        loc = dev.create(seg).headers["Location"]
        half = len(data) // 2
        assert dev.patch(loc, 0, data[:half]).status_code == 204
        # killed mid-PATCH, with bytes past the durable offset on disk
        kill_mid_body(backend, lambda body: dev.patch(loc, half, body, signed_body=data[half:]), data, half)
        backend.start()
        offset = int(dev.head(loc).headers["Upload-Offset"])
        assert offset == half, "HEAD gives the durable offset: the acknowledged bytes, no more"
        r = dev.patch(loc, offset, data[offset:])
        if database:  # PostgreSQL, maybe a fleet: the dead process's lease holds until it expires
            assert r.status_code == 423 and r.json()["offset"] == offset, r.text
            assert 1 <= int(r.headers["Retry-After"]) <= 8
            time.sleep(int(r.headers["Retry-After"]))
            r = dev.patch(loc, offset, data[offset:])
        assert r.status_code == 204, r.text  # the embedded backend knows it was the only one: free at once
        r = dev.finalize(loc, seg)
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False
        # no loss: the stored media is byte for byte the segment; no duplicate: stored once
        stored = backend.data / "store" / "devices" / "BC-KILL-1" / "segments" / "seg-0000000001.mp4"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == seg.sha256
        assert len([p for p in store_files(backend) if p.suffix == ".mp4"]) == 1
        again = dev.upload(seg)
        assert again.json()["duplicate"] is True and again.json()["receipt"] == r.json()["receipt"]
        # and a finalize interrupted by the kill is answered after restart with the same receipt
        assert dev.finalize(loc, seg).json()["receipt"] == r.json()["receipt"]


def test_backend_killed_during_a_creation_with_upload_leaves_no_stray_upload(tmp_path) -> None:
    """The upload row is written once its first bytes are durable; a crash before that leaves only a
    staged file no client knows, and the restarted backend removes it."""
    with own_backend(tmp_path, "BC-KILL-2") as (backend, dev, seg):
        data = seg.media.read_bytes()
        staging = backend.data / "uploads"

        def mid_body() -> None:
            assert [p.suffix for p in staging.iterdir()] == [".part"], "the POST is mid-body"

        octets = {"Content-Type": "application/offset+octet-stream"}
        kill_mid_body(backend, lambda body: dev.create(seg, data=body, headers=octets, signed_body=data), data, 0,
                      mid_body)
        backend.start()
        assert list(staging.iterdir()) == [], "the orphaned staged file is swept at start"
        assert dev.upload(seg).status_code == 200, "the device simply uploads the segment again"


def test_crash_between_the_acknowledging_commit_and_the_store_flush_is_repaired_at_start(tmp_path, database) -> None:
    """The store's new names and the segment's row are made durable at once. If the backend dies after
    the row but before the names, the staged files (durable, kept until both are) complete the store
    at the next start, before anything is served: the receipt never points at missing evidence."""
    with own_backend(tmp_path, "BC-CRASH-3", database=database) as (backend, dev, seg):
        r = dev.create_whole(seg)
        assert r.status_code == 201, r.text
        upload_id = r.headers["Location"].rsplit("/", 1)[1]
        backend.kill()
        # the state that crash leaves: row committed, staged files present, store names not durable
        staging = backend.data / "uploads"
        (staging / f"{upload_id}.part").write_bytes(seg.media.read_bytes())
        (staging / f"{upload_id}.json").write_bytes(seg.manifest.read_bytes())
        (staging / f"{upload_id}.sig").write_bytes(seg.signature.read_bytes())
        stored = backend.data / "store" / "devices" / "BC-CRASH-3" / "segments"
        for name in ("seg-0000000001.mp4", "seg-0000000001.json"):
            (stored / name).unlink()

        backend.start()

        assert (stored / "seg-0000000001.mp4").read_bytes() == seg.media.read_bytes()
        assert (stored / "seg-0000000001.json").read_bytes() == seg.manifest.read_bytes()
        assert (stored / "seg-0000000001.mp4").stat().st_mode & 0o222 == 0, "read-only, like all evidence"
        assert list(staging.iterdir()) == [], "staged files are dropped once the store holds them"
        again = dev.upload(seg)
        assert again.json()["duplicate"] is True and again.json()["receipt"] == r.json()["receipt"]


def test_admission_limit_answers_503_with_retry_after(tmp_path, database) -> None:
    backend = BackendProcess(
        tmp_path / "backend",
        admission={"max_concurrent_uploads": 2, "retry_after_seconds": 7, "idle_seconds": 1},
        database=database,
    )
    backend.start()
    try:
        rig = record(tmp_path / "dev", "BC-BUSY-1", after=45)
        dev = enrolled_device(backend, rig)
        segs = segments_of(rig)
        a, b = dev.create(segs[0]), dev.create(segs[1])
        assert a.status_code == b.status_code == 201
        staged = set((backend.data / "uploads").iterdir())
        busy = dev.create(segs[2])
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "7"
        assert busy.json()["error"] == "busy" and busy.json()["retry_after"] == 7
        assert set((backend.data / "uploads").iterdir()) == staged, "a refused upload stages nothing"
        # an admitted upload keeps its slot and finishes; its slot is freed at finalize
        data = segs[0].media.read_bytes()
        assert dev.patch(a.headers["Location"], 0, data).status_code == 204
        assert dev.finalize(a.headers["Location"], segs[0]).status_code == 200
        c = dev.create(segs[2])
        assert c.status_code == 201
        # a device gone silent frees its slot after idle_seconds
        time.sleep(1.2)
        d = dev.create(segs[2])
        assert d.status_code == 201
        # b lost its slot while idle: its next PATCH, with the limit reached, is refused and leaves no lease
        # behind (slot and lease commit together), so it goes on at once when a slot frees
        e = dev.create(segs[0])  # another upload (its sequence is stored already; creating is still allowed)
        assert e.status_code == 201
        busy = dev.patch(b.headers["Location"], 0, segs[1].media.read_bytes())
        assert busy.status_code == 503 and busy.json()["error"] == "busy", busy.text
        assert dev.request("DELETE", e.headers["Location"], headers=TUS).status_code == 204
        assert dev.patch(b.headers["Location"], 0, segs[1].media.read_bytes()).status_code == 204
    finally:
        backend.stop()


def test_config_errors_name_the_key(tmp_path) -> None:
    bad = {
        "[storage]\nbackend = 'ftp'\n": "[storage] backend",
        "[admission]\nmax_concurrent_uploads = 0\n": "[admission] max_concurrent_uploads",
        "[limits]\nmax_upload_bytes = 'big'\n": "[limits] max_upload_bytes",
        "[s3]\nbucket = ''\n[storage]\nbackend = 's3'\n": "[s3] bucket",
        "[server]\nprot = 1\n": "[server] prot",
        "[nope]\n": "[nope]",
        "[database]\nurl = 'mysql://u@h/db'\n": "[database] url",
        "[database]\nurl = 'postgresql://u:secret@h:5432'\n": "[database] url",
        "[database]\nurl = 'postgresql://u@h:port/db'\n": "[database] url",
        "[database]\npool_size = 1\n": "[database] pool_size",
    }
    for text, key in bad.items():
        p = tmp_path / "b.toml"
        p.write_text(text)
        with pytest.raises(ConfigError) as e:
            configmod.load(p)
        assert key in str(e.value) and "\n" not in str(e.value) and "secret" not in str(e.value)
    p = tmp_path / "ok.toml"
    p.write_text("[storage]\ndata_dir = 'rel'\n")
    assert configmod.load(p).data_dir == tmp_path / "rel"
    for shipped in ("backend.toml", "backend-s3.toml"):
        configmod.load(ROOT / "config" / shipped)


def test_cli_backend_prints_one_line_without_traceback(tmp_path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bodycam.cli",
            "backend",
            "revoke",
            "X",
            "--config",
            str(tmp_path / "missing.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "config file not found" in r.stderr and "Traceback" not in r.stderr


def test_a_database_that_cannot_be_reached_is_one_line(tmp_path) -> None:
    dead = f"postgresql://bodycam:secret@127.0.0.1:{free_port()}/evidence"
    backend = BackendProcess(tmp_path / "backend", database={"url": dead})
    r = backend.cli("token", "list", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    line, = r.stderr.strip().splitlines()
    assert "[database] url: cannot connect to PostgreSQL at postgresql://bodycam:***@127.0.0.1" in line, line
    assert "secret" not in line
