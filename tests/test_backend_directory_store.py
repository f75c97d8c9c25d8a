"""The write-once directory store on real files: created once, read-only, never replaced, keys that
cannot leave the store, and new directories made durable with their files."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from bodycam_backend.store import WriteOnceViolation, segment_key
from bodycam_backend.store.directory import DirectoryStore


def test_files_are_written_once_read_only_and_never_replaced(tmp_path) -> None:
    store = DirectoryStore(tmp_path / "store")
    key = segment_key("BC-1", 7, "json")
    store.put_bytes(key, b'{"a": 1}')
    staged = tmp_path / "media.part"
    staged.write_bytes(b"media bytes")
    mp4 = segment_key("BC-1", 7, "mp4")
    store.put_file(mp4, staged, hashlib.sha256(b"media bytes").hexdigest())
    store.flush()
    path = store.local_path(mp4)
    assert path.read_bytes() == b"media bytes" and os.stat(path).st_ino == os.stat(staged).st_ino, "linked, no copy"
    assert path.stat().st_mode & 0o222 == 0 and store.local_path(key).stat().st_mode & 0o222 == 0
    store.put_bytes(key, b'{"a": 1}')  # the same bytes again: fine (a replayed finalize)
    with pytest.raises(WriteOnceViolation):
        store.put_bytes(key, b'{"a": 2}')
    other = tmp_path / "other.part"
    other.write_bytes(b"other bytes")
    with pytest.raises(WriteOnceViolation):
        store.put_file(mp4, other, hashlib.sha256(b"other bytes").hexdigest())
    assert store.read(key) == b'{"a": 1}' and path.read_bytes() == b"media bytes"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "no temporary files left"


@pytest.mark.parametrize("key", ["../escape", "devices/../../x", "/etc/passwd", "devices//x", "./x"])
def test_keys_cannot_leave_the_store(tmp_path, key) -> None:
    store = DirectoryStore(tmp_path / "store")
    with pytest.raises(ValueError, match="escapes"):
        store.put_bytes(key, b"x")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()


def test_new_directories_are_flushed_with_their_parents(tmp_path) -> None:
    store = DirectoryStore(tmp_path / "store")
    store.put_bytes(segment_key("BC-NEW", 1, "sig"), b"sig")
    assert store._dirty >= {tmp_path / "store", tmp_path / "store" / "devices" / "BC-NEW" / "segments"}
    store.flush()
    assert store._dirty == set()


def test_a_flush_waits_for_the_directory_fsync_another_flush_took(tmp_path, monkeypatch) -> None:
    """Two devices' finalizes put into one directory; the first flush takes the directory and is still
    fsyncing it when the second flushes: the second must not return (and acknowledge) before that fsync
    is done. The fsync is real; the test only holds it at its start."""
    from bodycam_backend.store import directory

    store = DirectoryStore(tmp_path / "store")
    store.put_bytes(segment_key("BC-1", 1, "json"), b"{}")
    store.flush()  # the device's directory exists and is durable
    started, go = threading.Event(), threading.Event()
    real = directory.fsync_dir

    def held(path):
        started.set()
        assert go.wait(30)
        real(path)

    monkeypatch.setattr(directory, "fsync_dir", held)
    store.put_bytes(segment_key("BC-1", 2, "json"), b"{}")
    store.put_bytes(segment_key("BC-1", 3, "json"), b"{}")
    done: list[str] = []
    first = threading.Thread(target=lambda: (store.flush(), done.append("first")), daemon=True)
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=lambda: (store.flush(), done.append("second")), daemon=True)
    second.start()
    second.join(0.3)
    assert done == [], "the second flush returned while the directory's fsync was still under way"
    go.set()
    first.join(30)
    second.join(30)
    assert sorted(done) == ["first", "second"]
