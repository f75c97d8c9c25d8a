"""Crash recovery on real torn files: cut the open segment anywhere, recover, check what survived."""

from __future__ import annotations

import hashlib
import json

import pytest
from bodycam.evidence.chain import ChainState
from bodycam.evidence.sealer import Sealer
from bodycam.evidence.signer import verify_signature
from bodycam.recovery import recover
from bodycam.segments.mp4_boxes import complete_length, iter_boxes
from bodycam.verify import verify_paths
from cryptography.hazmat.primitives import serialization
from framecode import decode_indices
from rig import Rig


def crashed_rig(tmp_path, frames_after_trigger: int = 37) -> Rig:
    """A recording whose process 'dies': the open segment is never closed."""
    rig = Rig(tmp_path)
    rig.frames(12)
    rig.trigger()
    rig.frames(frames_after_trigger)
    return rig


def run_recovery(rig: Rig):
    chain = ChainState(rig.layout.chain)  # a fresh process: state only from disk
    return recover(rig.layout.segments, chain=chain, sealer=Sealer(signer=rig.signer, chain=chain),
                   serial=rig.cfg.device.serial)


def test_open_segment_is_sealed_as_recovered_and_chain_continues(tmp_path) -> None:
    rig = crashed_rig(tmp_path)
    partial = next(rig.layout.segments.glob("*.mp4.partial"))
    torn_size = partial.stat().st_size
    results = run_recovery(rig)
    assert len(results) == 1 and results[0].frames > 0
    segs = rig.segments()
    last = json.loads(segs[-1].with_suffix(".json").read_bytes())
    prev = segs[-2].with_suffix(".json").read_bytes()
    assert last["recovered"] is True and last["end_reason"] == "crash"
    assert last["previous_manifest_sha256"] == hashlib.sha256(prev).hexdigest()
    assert last["media"]["sha256"] == hashlib.sha256(segs[-1].read_bytes()).hexdigest()
    assert segs[-1].stat().st_size <= torn_size
    decoded = decode_indices(segs[-1])
    assert len(decoded) == last["frame_count"]
    # frames older than one fragment (0.5 s = 5 frames at 10 fps) before the crash all survived
    assert decoded[-1][0] >= rig.index - 1 - 5
    assert last["last_frame"]["utc_ns"] == rig.captured[decoded[-1][0]][1]
    assert not list(rig.layout.segments.glob("*.partial")) and not list(rig.layout.segments.glob("*.journal"))
    # the next segment after the reboot continues the chain
    rig2 = Rig(tmp_path)
    rig2.frames(12)
    rig2.trigger()
    rig2.frames(5)
    rig2.recorder.stop()
    newest = json.loads(rig2.segments()[-1].with_suffix(".json").read_bytes())
    assert newest["sequence"] == last["sequence"] + 1
    assert newest["previous_manifest_sha256"] == hashlib.sha256(
        segs[-1].with_suffix(".json").read_bytes()).hexdigest()


def test_markers_of_the_open_segment_survive(tmp_path) -> None:
    rig = crashed_rig(tmp_path, frames_after_trigger=22)
    rig.recorder.marker(mono_ns=rig.clock.monotonic_ns(), utc_ns=rig.clock.utc_ns(), note="crash-marker")
    rig.frames(3)
    run_recovery(rig)
    last = json.loads(rig.segments()[-1].with_suffix(".json").read_bytes())
    assert [m["note"] for m in last["markers"]] == ["crash-marker"]


@pytest.mark.parametrize("cut_fraction", [0.0, 0.01, 0.2, 0.5, 0.77, 0.999])
def test_a_torn_tail_fragment_is_cut_and_complete_fragments_kept(tmp_path, cut_fraction) -> None:
    rig = crashed_rig(tmp_path, frames_after_trigger=29)
    partial = next(rig.layout.segments.glob("*.mp4.partial"))
    data = partial.read_bytes()
    cut = int(len(data) * cut_fraction)
    partial.write_bytes(data[:cut])  # the power died with only this much on disk
    expect_keep = complete_length(partial)
    whole_fragments = sum(1 for k, off, size in iter_boxes(data) if k == "mdat" and off + size <= cut)
    results = run_recovery(rig)
    assert results[0].bytes_kept == expect_keep
    seg = rig.segments()[-1]
    m = json.loads(seg.with_suffix(".json").read_bytes())
    assert m["recovered"] and m["media"]["size"] == expect_keep
    if whole_fragments:
        assert len(decode_indices(seg)) == m["frame_count"] > 0
    else:
        assert m["frame_count"] == 0  # honest: nothing playable survived, but the sequence is not lost


def test_crash_between_journal_and_media_keeps_sequence_accounted(tmp_path) -> None:
    rig = crashed_rig(tmp_path)
    partial = next(rig.layout.segments.glob("*.mp4.partial"))
    partial.unlink()  # only the journal reached the disk
    results = run_recovery(rig)
    assert results and results[0].frames == 0
    seqs = [json.loads(p.with_suffix(".json").read_bytes())["sequence"] for p in rig.segments()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_crash_after_rename_before_chain_update_is_reconciled(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.frames(12)
    rig.trigger()
    rig.frames(35)
    rig.recorder.stop()
    chain_file = rig.layout.chain
    head = json.loads(chain_file.read_text())
    # pretend the last seal's chain update never reached the disk
    stale = dict(head, last_sequence=head["last_sequence"] - 1, last_manifest_sha256=hashlib.sha256(
        rig.segments()[-2].with_suffix(".json").read_bytes()).hexdigest())
    chain_file.write_text(json.dumps(stale))
    chain = ChainState(chain_file)
    recover(rig.layout.segments, chain=chain, sealer=Sealer(signer=rig.signer, chain=chain), serial="x")
    assert chain.head.last_sequence == head["last_sequence"]
    assert chain.head.last_manifest_sha256 == head["last_manifest_sha256"]


def test_a_lost_journal_header_is_sealed_with_what_is_unknown_said_so(tmp_path) -> None:
    """The power died before the journal's header reached the disk (here: torn mid-line): the media is
    still sealed, signed and chained, its frames counted from the file, and the manifest says honestly
    that recording id, officer, trigger and frame times are unknown instead of inventing them."""
    rig = crashed_rig(tmp_path, frames_after_trigger=29)
    journal = next(rig.layout.segments.glob("*.journal"))
    journal.write_bytes(journal.read_bytes()[:40])          # half a header line, no newline
    seq = int(journal.name[4:14])
    [r] = run_recovery(rig)
    assert r.sequence == seq and r.recording_id == f"BC-TEST-0001-unknown-{seq:010d}"
    seg = rig.segments()[-1]
    raw = seg.with_suffix(".json").read_bytes()
    m = json.loads(raw)
    assert (m["officer_id"], m["segment_index"], m["trigger"], m["clock"]) == ("unknown", -1, {},
                                                                               {"status": "unknown"})
    assert m["first_frame"] is None and m["last_frame"] is None and m["recovered"] is True
    assert m["frame_count"] == len(decode_indices(seg)) == r.frames > 0    # counted from the real file
    assert m["media"]["sha256"] == hashlib.sha256(seg.read_bytes()).hexdigest()
    prev = rig.segments()[-2].with_suffix(".json").read_bytes()
    assert m["previous_manifest_sha256"] == hashlib.sha256(prev).hexdigest()
    pub = serialization.load_pem_public_key(rig.signer.public_key_pem())
    assert verify_signature(pub, seg.with_suffix(".sig").read_bytes(), raw)
    report = verify_paths([rig.layout.root], decode=True)
    assert report.ok, report.errors


def test_media_the_demuxer_cannot_read_is_sealed_with_no_frames(tmp_path) -> None:
    """Whole boxes, unreadable contents (the init segment damaged): recovery keeps the bytes, signs
    them with frame_count 0 and no frame times, and the chain goes on."""
    rig = crashed_rig(tmp_path, frames_after_trigger=29)
    partial = next(rig.layout.segments.glob("*.mp4.partial"))
    data = bytearray(partial.read_bytes())
    [(_, off, size)] = [b for b in iter_boxes(data) if b[0] == "moov"]
    data[off + 8: off + size] = bytes(size - 8)                  # the moov's contents zeroed, sizes intact
    partial.write_bytes(bytes(data))
    keep = complete_length(partial)
    assert keep > off + size, "the fragments after it are whole"
    [r] = run_recovery(rig)
    m = json.loads(rig.segments()[-1].with_suffix(".json").read_bytes())
    assert r.frames == m["frame_count"] == 0 and m["first_frame"] is None and m["last_frame"] is None
    assert m["media"]["size"] == keep == r.bytes_kept
    assert m["recording_id"] == r.recording_id and "unknown" not in m["recording_id"]   # the journal held
    report = verify_paths([rig.layout.root])
    assert report.ok, report.errors


def test_the_device_cuts_a_torn_audit_line_at_start_and_says_so_in_power_on(tmp_path) -> None:
    """A power cut mid-append left half a line: the next start cuts it, the signed power_on entry says
    how many bytes went, it chains on the last whole line, and the log verifies without a warning."""
    from bodycam.device import RecordingDevice
    from bodycam.evidence.signer import generate_key
    from rig import small_config

    cfg = small_config(tmp_path / "data")
    generate_key(cfg.key_path)
    with RecordingDevice(cfg) as dev:
        dev.start()
    log = tmp_path / "data" / "audit" / "audit.log"
    whole = log.read_bytes()
    last_text = json.loads(whole.splitlines()[-1])["entry"]
    torn = whole.splitlines(keepends=True)[-1][:57]
    log.write_bytes(whole + torn)
    assert "torn by a power cut" in verify_paths([tmp_path / "data"]).warnings[0]

    with RecordingDevice(cfg) as dev:
        assert log.read_bytes() == whole, "cut back to the last whole line when the log is opened"
        dev.start()
    entries = [json.loads(json.loads(line)["entry"]) for line in log.read_bytes().splitlines()]
    power_on = [e for e in entries if e["event"] == "power_on"]
    assert "audit_torn_bytes_cut" not in power_on[0]["data"]
    assert power_on[1]["data"]["audit_torn_bytes_cut"] == len(torn)
    assert power_on[1]["prev"] == hashlib.sha256(last_text.encode()).hexdigest()
    report = verify_paths([tmp_path / "data"])
    assert report.ok and report.warnings == [], (report.errors, report.warnings)
