"""`bodycam verify` against real segments: encoded with libx264, muxed, sealed and chained by the real
modules, then tampered with the way an adversary (or a careless export) would."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bodycam import cli_verify
from bodycam.capture.frame import Frame
from bodycam.clock import ManualClock
from bodycam.encode.annexb import ParameterSets, join_annexb, split_nals, with_parameter_sets
from bodycam.encode.h264 import H264Encoder
from bodycam.evidence.audit import AuditLog
from bodycam.evidence.chain import ChainState
from bodycam.evidence.manifest import SegmentFacts, SegmentPaths, stamp
from bodycam.evidence.sealer import Sealer
from bodycam.evidence.signer import FileKeySigner, generate_key
from bodycam.layout import DataLayout
from bodycam.segments.writer import SegmentWriter, ticks
from bodycam.verify import format_sequences, verify_paths
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

SERIAL = "BC-TEST-0001"
W, H, FPS, PER_SEGMENT = 160, 120, 10, 10
RECORDINGS = [3, 2]  # segments per recording: sequences 1-3 and 4-5


def _image(i: int) -> np.ndarray:
    """Moving content, so the encoder produces realistic P-frames."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :, 0] = (np.arange(W)[None, :] * 2 + i * 7) % 256
    img[:, :, 1] = (np.arange(H)[:, None] * 2 + i * 3) % 256
    img[40:80, (i * 6) % W:(i * 6) % W + 20] = 255
    return img


def _build_device(root: Path) -> None:
    """A data directory as a camera leaves it: sealed segments, chain head, signed audit log."""
    layout = DataLayout(root)
    layout.create()
    signer = generate_key(layout.device / "key.pem")
    chain = ChainState(layout.chain)
    sealer = Sealer(signer=signer, chain=chain)
    clock = ManualClock()
    audit = AuditLog(layout.audit_log, signer=signer, clock=clock, boot_id="boot-1")
    audit.append("power_on", serial=SERIAL)
    enc = H264Encoder(width=W, height=H, fps=FPS, bitrate_kbps=300, gop_seconds=1.0)
    index = 0
    for n_segments in RECORDINGS:
        clock.advance(5)
        rid = f"{SERIAL}-{chain.peek_sequence():010d}"
        trigger = {**stamp(clock.utc_ns(), clock.monotonic_ns()), "reason": "button"}
        audit.append("record_start", recording_id=rid, trigger=trigger)
        for seg_index in range(n_segments):
            enc.force_keyframe()
            packets = []
            for _ in range(PER_SEGMENT):
                packets += enc.encode(Frame(_image(index), index, clock.monotonic_ns(), clock.utc_ns()))
                index += 1
                clock.advance(1 / FPS)
            assert len(packets) == PER_SEGMENT and packets[0].keyframe  # zerolatency: no frame delay
            seq = chain.reserve_sequence()
            paths = SegmentPaths(layout.segments, seq)
            writer = SegmentWriter(paths.partial, width=W, height=H, fps=FPS,
                                   fragment_seconds=1.0)
            for p in packets:
                writer.write(p)
            sha, size = writer.close()
            first, last = packets[0], packets[-1]
            facts = SegmentFacts(
                device_serial=SERIAL, key_id=signer.key_id, officer_id="PC-4242", recording_id=rid,
                segment_index=seg_index, sequence=seq, codec="h264", width=W, height=H, fps=FPS,
                bitrate_kbps=300, trigger=trigger, firmware_version="0.1.0", clock={"status": "unsynced"},
                first_frame=stamp(first.utc_ns, first.mono_ns) | {"pts": 0},
                last_frame=stamp(last.utc_ns, last.mono_ns) | {"pts": ticks(last.mono_ns - first.mono_ns)},
                frame_count=writer.frame_count, encoder="libx264",
                end_reason="button" if seg_index == n_segments - 1 else None)
            sealer.seal(paths, facts, media_sha256=sha, media_size=size)
            audit.append("segment_sealed", recording_id=rid, sequence=seq, segment_index=seg_index,
                         frames=writer.frame_count, bytes=size, media_sha256=sha)
        audit.append("record_stop", recording_id=rid, reason="button")
    audit.append("power_off", reason="shutdown")
    audit.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "data"
    _build_device(root)
    return root


@pytest.fixture
def dev(template: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of the device data directory for each test to tamper with."""
    root = tmp_path / "data"
    shutil.copytree(template, root)
    for p in root.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return root


def seg(root: Path, seq: int, ext: str) -> Path:
    return root / "segments" / f"seg-{seq:010d}.{ext}"


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_verify.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def drop(root: Path, seq: int) -> None:
    for ext in ("mp4", "json", "sig"):
        seg(root, seq, ext).unlink()


# --- a clean set ------------------------------------------------------------------------------------

def test_clean_device_verifies(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(str(dev), capsys=capsys)
    assert code == 0, out
    assert out.startswith("verify: OK") and "error:" not in out and err == ""
    report = verify_paths([dev], decode=True)
    assert report.ok and report.errors == [] and report.warnings == []
    d = report.devices[SERIAL]
    assert (d.segments, d.recordings, d.frames, d.first_sequence, d.last_sequence) == (5, 2, 50, 1, 5)
    assert d.duration_seconds == pytest.approx(5.0)
    assert d.key_ids == [FileKeySigner.load(dev / "device" / "key.pem").key_id]
    assert d.first_utc < d.last_utc and d.first_utc.endswith("Z")
    assert report.audit[0].entries == 1 + 2 * 2 + 5 + 1  # power on/off, start/stop x2, 5 sealed
    assert any("taken from beside the evidence" in n for n in report.notes)  # integrity, not origin


def test_export_bundle_with_certificate(dev: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An export: segments plus the device certificate, checked against that certificate."""
    bundle = tmp_path / "bundle"
    shutil.copytree(dev / "segments", bundle)
    key = serialization.load_pem_private_key((dev / "device" / "key.pem").read_bytes(), None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (bundle / f"{SERIAL}.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    code, out, _ = cli(str(bundle), "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["keys"][0]["subject"] == f"CN={SERIAL}"
    assert report["devices"][SERIAL]["segments"] == 5
    code, out, _ = cli(str(bundle / "seg-0000000003.json"), "--key", str(bundle / f"{SERIAL}.cert.pem"),
                       capsys=capsys)
    assert code == 0, out
    assert "starts at sequence 3" in out and "taken from beside the evidence" not in out


def test_single_media_file_implies_manifest(dev: Path) -> None:
    report = verify_paths([seg(dev, 1, "mp4")], public_keys=[dev / "device" / "device.pub.pem"])
    assert report.ok and report.devices[SERIAL].segments == 1


def test_single_manifest_finds_its_key_as_its_data_dir_does(dev: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The README's `bodycam verify seg-0000000042.json --decode`: no --key, the key is in
    segments/../device/ as for `bodycam verify DATA_DIR`, and the note says where it came from."""
    code, out, _ = cli(str(seg(dev, 2, "json")), "--decode", capsys=capsys)
    assert code == 0, out
    assert "taken from beside the evidence" in out and "device.pub.pem" in out
    report = verify_paths([seg(dev, 2, "mp4")])
    assert report.ok and report.devices[SERIAL].segments == 1
    (dev / "device" / "device.pub.pem").unlink()  # no key anywhere: an error that says what to pass
    code, out, _ = cli(str(seg(dev, 2, "json")), capsys=capsys)
    assert code == 1 and "no public key to check signatures with" in out


def test_single_manifest_in_an_export_finds_the_certificate_beside_it(dev: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(dev / "segments", bundle)
    shutil.copy(dev / "device" / "device.pub.pem", bundle)
    report = verify_paths([bundle / "seg-0000000004.json"])
    assert report.ok and report.keys[0]["source"] == str(bundle / "device.pub.pem")
    assert any("taken from beside the evidence" in n for n in report.notes)


# --- tampering --------------------------------------------------------------------------------------

def test_flipped_media_byte(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = seg(dev, 3, "mp4")
    data = bytearray(media.read_bytes())
    data[len(data) // 2] ^= 0x01
    media.write_bytes(data)
    code, out, _ = cli(str(dev), capsys=capsys)
    assert code == 1 and out.startswith("verify: FAILED")
    assert "error: seg-0000000003.mp4: SHA-256 mismatch (media altered)" in out


def test_removed_middle_segments_named_exactly(dev: Path) -> None:
    drop(dev, 3)
    drop(dev, 4)
    report = verify_paths([dev])
    assert report.errors == [f"device {SERIAL}: missing sequences 3, 4 "
                             "(between seg-0000000002.json and seg-0000000005.json)"]
    assert report.devices[SERIAL].missing_sequences == [3, 4]


def test_swapped_manifests(dev: Path) -> None:
    for ext in ("json", "sig"):
        a, b, tmp = seg(dev, 2, ext), seg(dev, 3, ext), seg(dev, 9, ext)
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
    report = verify_paths([dev])
    assert not report.ok
    assert ("seg-0000000002.json: holds the manifest of sequence 3, not 2 "
            "(manifest files swapped or renamed)") in report.errors
    assert any(e.startswith("seg-0000000003.json: holds the manifest of sequence 2") for e in report.errors)


def test_edited_manifest_fails_signature(dev: Path) -> None:
    m = seg(dev, 2, "json")
    m.write_text(m.read_text().replace('"PC-4242"', '"PC-0000"'))
    report = verify_paths([dev])
    assert "seg-0000000002.json: signature invalid (manifest altered)" in report.errors
    assert any(e.startswith("seg-0000000003.json: chain broken") for e in report.errors)


def test_wrong_key_is_unknown_key(dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = generate_key(tmp_path / "other" / "key.pem")
    code, out, _ = cli(str(dev), "--key", str(tmp_path / "other" / "device.pub.pem"), capsys=capsys)
    own = FileKeySigner.load(dev / "device" / "key.pem").key_id
    assert code == 1 and other.key_id != own
    assert f"error: seg-0000000001.json: signed by unknown key {own}" in out
    assert f"error: audit.log line 1: signed by unknown key {own}" in out
    assert "ignored, because keys were given: device.pub.pem" in out


def test_tail_deletion_via_chain_state(dev: Path) -> None:
    drop(dev, 5)
    (dev / "audit" / "audit.log").unlink()  # only the chain head is left to tell
    report = verify_paths([dev])
    assert report.errors == [f"device {SERIAL}: missing sequence 5 at the end "
                             "(state/chain.json says sequence 5 was sealed)"]


def test_tail_deletion_via_audit_log_even_if_chain_state_edited(dev: Path) -> None:
    drop(dev, 4)
    drop(dev, 5)
    head = json.loads((dev / "state" / "chain.json").read_text())
    head.update(last_sequence=3, next_sequence=4,
                last_manifest_sha256=hashlib.sha256(seg(dev, 3, "json").read_bytes()).hexdigest())
    (dev / "state" / "chain.json").write_text(json.dumps(head))
    report = verify_paths([dev])
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"device {SERIAL}: missing sequences 4, 5 ")
    assert "audit.log lines" in report.errors[0]


def test_offloaded_head_is_a_note_not_a_failure(dev: Path) -> None:
    drop(dev, 1)
    drop(dev, 2)
    report = verify_paths([dev])
    assert report.ok, report.errors
    assert any("starts at sequence 3" in n and "cannot be checked" in n for n in report.notes)
    assert any("2 sealed segment(s) before the first one here" in n for n in report.notes)


def test_unrecovered_leftovers_fail_and_say_to_recover(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg(dev, 6, "mp4.partial").write_bytes(b"\0\0\0\x18ftyp")
    seg(dev, 6, "journal").write_text('{"header": {}}\n')
    report = verify_paths([dev])
    assert not report.ok
    assert report.errors == ["seg-0000000006: unrecovered segment (a power cut left it open): run 'bodycam "
                             "recover --config FILE' (or start the daemon) to seal it, then verify again"]
    code, out, _ = cli(str(dev), capsys=capsys)
    assert code == 1 and "bodycam recover" in out


def test_the_open_segment_of_a_running_daemon_is_not_a_leftover(dev: Path) -> None:
    import socket

    seg(dev, 6, "mp4.partial").write_bytes(b"\0\0\0\x18ftyp")
    (dev / "run").mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:  # what the daemon's control socket does
        live.bind(str(dev / "run" / "control.sock"))
        live.listen(1)
        report = verify_paths([dev])
    assert report.ok, report.errors
    assert any("being recorded now by the running daemon" in n for n in report.notes)
    assert not verify_paths([dev]).ok  # the socket file left by a dead daemon proves nothing


def test_newest_segment_that_continues_into_nothing_is_flagged(dev: Path) -> None:
    """Sequence 4 says its recording continues; 5 was deleted along with the audit log and the chain
    head was edited to match: nothing else is left to tell, so the dangling continuation must."""
    drop(dev, 5)
    (dev / "audit" / "audit.log").unlink()
    head = json.loads((dev / "state" / "chain.json").read_text())
    head.update(last_sequence=4, next_sequence=5,
                last_manifest_sha256=hashlib.sha256(seg(dev, 4, "json").read_bytes()).hexdigest())
    (dev / "state" / "chain.json").write_text(json.dumps(head))
    report = verify_paths([dev])
    assert report.warnings == [f"device {SERIAL}: seg-0000000004.json says its recording continues, but no "
                               "sequence 5 follows it: possible deletion of the newest segment(s) (or a power "
                               "cut just as the next one opened); check the device's audit log"]


def test_damaged_manifest_says_what_it_is(dev: Path) -> None:
    seg(dev, 2, "json").write_text('{"sequence": 2}')
    seg(dev, 3, "json").write_text('{"format": "someone-else/9"}')
    errors = verify_paths([dev]).errors
    assert 'seg-0000000002.json: not a bodycam manifest (no "format" field): damaged or not ours' in errors
    assert any(e.startswith("seg-0000000003.json: manifest format 'someone-else/9' is not") for e in errors)
    assert not any("None" in e for e in errors)


def test_decode_catches_frame_count_lie(dev: Path) -> None:
    """A manifest signed by the device key that misstates frame_count (a firmware bug)."""
    signer = FileKeySigner.load(dev / "device" / "key.pem")
    doc = json.loads(seg(dev, 5, "json").read_text())
    doc["frame_count"] = 11
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    seg(dev, 5, "json").write_bytes(raw)
    seg(dev, 5, "sig").write_bytes(signer.sign(raw))
    head = json.loads((dev / "state" / "chain.json").read_text())
    head["last_manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    (dev / "state" / "chain.json").write_text(json.dumps(head))
    assert verify_paths([dev]).ok  # the hash and the signature cannot see it
    report = verify_paths([dev], decode=True)
    assert report.errors == ["seg-0000000005.mp4: decoded 10 frames, manifest says 11"]


def resign_last(dev: Path, change) -> bytes:
    """Segment 5's manifest changed by ``change(doc)`` and signed again with the device key, the chain
    head moved to it: the signature and chain checks cannot see the change, so only the check under
    test can."""
    signer = FileKeySigner.load(dev / "device" / "key.pem")
    doc = json.loads(seg(dev, 5, "json").read_text())
    change(doc)
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    seg(dev, 5, "json").write_bytes(raw)
    seg(dev, 5, "sig").write_bytes(signer.sign(raw))
    head = json.loads((dev / "state" / "chain.json").read_text())
    head["last_manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    (dev / "state" / "chain.json").write_text(json.dumps(head))
    return raw


def test_a_signed_manifest_of_an_unknown_format_is_refused(dev: Path) -> None:
    resign_last(dev, lambda d: d.update(format="bodycam.segment/99"))
    errors = verify_paths([dev]).errors
    assert errors[0].startswith("seg-0000000005.json: manifest format 'bodycam.segment/99' is not "
                                "'bodycam.segment/1'"), errors
    assert errors[1:] == [f"device {SERIAL}: missing sequence 5 at the end (state/chain.json says sequence 5 "
                          "was sealed)"], "not counted as a segment it could not read"


def test_missing_media_is_named_with_the_manifest_that_names_it(dev: Path) -> None:
    seg(dev, 3, "mp4").unlink()
    report = verify_paths([dev])
    assert report.errors == ["seg-0000000003.mp4: missing (named by seg-0000000003.json)"]


@pytest.mark.parametrize("change", [b"", b"\0" * 3])
def test_media_of_another_size_says_so_before_any_hash(dev: Path, change: bytes) -> None:
    media = seg(dev, 2, "mp4")
    data = media.read_bytes()
    media.write_bytes(data[:-3] if not change else data + change)
    size = len(data) - 3 if not change else len(data) + 3
    assert verify_paths([dev]).errors == [f"seg-0000000002.mp4: size {size} bytes, manifest says {len(data)} "
                                          "(media truncated or altered)"]


def test_decode_catches_media_that_is_not_video(dev: Path) -> None:
    """Bytes the manifest hashes and signs correctly, that are not H.264 in MP4 (a firmware bug): only
    decoding can tell (the segments alone: the audit log would also see the changed hash)."""
    junk = np.random.default_rng(5).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    seg(dev, 5, "mp4").write_bytes(junk)
    resign_last(dev, lambda d: d["media"].update(sha256=hashlib.sha256(junk).hexdigest(), size=len(junk)))
    keys = [dev / "device" / "device.pub.pem"]
    assert verify_paths([dev / "segments"], public_keys=keys).ok
    errors = verify_paths([dev / "segments"], public_keys=keys, decode=True).errors
    assert len(errors) == 1 and errors[0].startswith("seg-0000000005.mp4: cannot be decoded ("), errors


def test_decode_catches_a_last_frame_time_lie(dev: Path) -> None:
    real = json.loads(seg(dev, 5, "json").read_text())["last_frame"]["pts"]
    resign_last(dev, lambda d: d["last_frame"].update(pts=real + 9000))
    assert verify_paths([dev]).ok
    assert verify_paths([dev], decode=True).errors == [
        f"seg-0000000005.mp4: last frame pts {real}, manifest says {real + 9000}"]


def test_decode_catches_a_segment_that_does_not_start_on_a_keyframe(dev: Path) -> None:
    """Media re-muxed from the second frame on (a P-frame first, given SPS/PPS and called a keyframe),
    hashed and signed as if sound."""
    enc = H264Encoder(width=W, height=H, fps=FPS, bitrate_kbps=300, gop_seconds=1.0)
    clock = ManualClock()
    packets = []
    for i in range(12):
        packets += enc.encode(Frame(_image(i), i, clock.monotonic_ns(), clock.utc_ns()))
        clock.advance(1 / FPS)
    seg(dev, 5, "mp4").unlink()
    writer = SegmentWriter(seg(dev, 5, "mp4"), width=W, height=H, fps=FPS, fragment_seconds=1.0)
    params = ParameterSets.find(split_nals(packets[0].data))
    p_frame = join_annexb(with_parameter_sets(split_nals(packets[1].data), params))
    writer.write(dataclasses.replace(packets[1], data=p_frame, keyframe=True))   # the writer is told it is one
    for p in packets[2:]:
        writer.write(p)
    sha, size = writer.close()
    resign_last(dev, lambda d: (d["media"].update(sha256=sha, size=size), d.update(frame_count=writer.frame_count)))
    keys = [dev / "device" / "device.pub.pem"]
    assert verify_paths([dev / "segments"], public_keys=keys).ok    # hash and signature agree with it
    errors = verify_paths([dev / "segments"], public_keys=keys, decode=True).errors
    # FFmpeg drops what it cannot decode up to the next keyframe (frame 10): the count gives it away
    assert errors[0] == "seg-0000000005.mp4: decoded 2 frames, manifest says 11", errors


def test_recovered_segment_verifies(dev: Path) -> None:
    """A power cut mid-segment: recovery cuts the torn fragment and seals the rest, which verifies."""
    from bodycam.recovery import recover
    from bodycam.segments.journal import SegmentJournal

    layout = DataLayout(dev)
    signer = FileKeySigner.load(layout.device / "key.pem")
    chain = ChainState(layout.chain)
    clock = ManualClock(utc_ns=1_763_700_100_000_000_000)
    enc = H264Encoder(width=W, height=H, fps=FPS, bitrate_kbps=300, gop_seconds=1.0)
    packets = []
    for i in range(25):  # 2.5 s: two complete fragments and a torn third
        packets += enc.encode(Frame(_image(i), i, clock.monotonic_ns(), clock.utc_ns()))
        clock.advance(1 / FPS)
    seq = chain.peek_sequence()
    paths = SegmentPaths(layout.segments, seq)
    first = packets[0]
    facts = SegmentFacts(
        device_serial=SERIAL, key_id=signer.key_id, officer_id="PC-4242", recording_id=f"{SERIAL}-x",
        segment_index=0, sequence=seq, codec="h264", width=W, height=H, fps=FPS, bitrate_kbps=300,
        trigger={}, firmware_version="0.1.0", clock={"status": "unsynced"},
        first_frame=stamp(first.utc_ns, first.mono_ns) | {"pts": 0}, encoder="libx264")
    journal = SegmentJournal(paths.journal, header=facts.to_journal())
    assert chain.reserve_sequence() == seq
    writer = SegmentWriter(paths.partial, width=W, height=H, fps=FPS,
                           fragment_seconds=1.0)
    for p in packets:
        writer.write(p)
    on_disk = paths.partial.read_bytes()  # what a power cut leaves: fragments so far, the tail torn
    writer.abandon()
    journal.close()
    paths.partial.write_bytes(on_disk[:-100])
    assert any("unrecovered segment" in e for e in verify_paths([dev]).errors)
    [r] = recover(layout.segments, chain=chain, sealer=Sealer(signer=signer, chain=chain), serial=SERIAL)
    report = verify_paths([dev], decode=True)
    assert report.ok and report.warnings == [], report.errors
    d = report.devices[SERIAL]
    assert d.recovered_segments == 1 and d.segments == 6 and d.frames == 50 + r.frames and r.frames >= 10
    doc = json.loads(paths.manifest.read_text())
    assert doc["recovered"] is True and doc["end_reason"] == "crash"


# --- the audit log ----------------------------------------------------------------------------------

def _audit_lines(root: Path) -> list[str]:
    return (root / "audit" / "audit.log").read_text().splitlines(keepends=True)


def test_audit_entry_edited(dev: Path) -> None:
    lines = _audit_lines(dev)
    outer = json.loads(lines[2])
    outer["entry"] = outer["entry"].replace('"frames":10', '"frames":9', 1)  # segment_sealed, seq 3
    assert outer["entry"] != json.loads(lines[2])["entry"]
    lines[2] = json.dumps(outer, separators=(",", ":")) + "\n"
    (dev / "audit" / "audit.log").write_text("".join(lines))
    report = verify_paths([dev])
    assert report.errors == ["audit.log line 3: signature invalid (entry altered)"]


def test_audit_entry_removed(dev: Path) -> None:
    lines = _audit_lines(dev)
    del lines[4]  # entry seq 5
    (dev / "audit" / "audit.log").write_text("".join(lines))
    report = verify_paths([dev / "audit" / "audit.log"], public_keys=[dev / "device" / "device.pub.pem"])
    assert report.errors == ["audit.log: entry seq 5 missing (between line 4 and 5)"]


def test_audit_torn_last_line_is_a_warning(dev: Path) -> None:
    with open(dev / "audit" / "audit.log", "a") as f:
        f.write('{"entry": "{\\"seq\\": 12')
    report = verify_paths([dev])
    assert report.ok and len(report.warnings) == 1 and "torn by a power cut" in report.warnings[0]


def test_the_device_cuts_a_torn_audit_line_at_start_and_chains_on(dev: Path) -> None:
    """A power cut mid-append: at the next start the torn line is cut, so the next entry is a whole line
    that follows the last whole one, and the log verifies with no warning left."""
    log_path = dev / "audit" / "audit.log"
    whole = log_path.read_bytes()
    lines = whole.splitlines()
    last = json.loads(json.loads(lines[-1])["entry"])
    torn = lines[-1][: len(lines[-1]) // 2]                     # half of an entry, no newline
    log_path.write_bytes(whole + torn)
    assert "torn by a power cut" in verify_paths([dev]).warnings[0]
    signer = FileKeySigner.load(dev / "device" / "key.pem")
    log = AuditLog(log_path, signer=signer, clock=ManualClock(), boot_id="boot-2")
    assert log.repaired_bytes == len(torn)
    assert log_path.read_bytes() == whole                        # cut back to the last whole line, exactly
    assert log.append("power_on", serial=SERIAL) == last["seq"] + 1
    log.close()
    new = json.loads(json.loads(log_path.read_bytes().splitlines()[-1])["entry"])
    assert new["prev"] == hashlib.sha256(json.loads(lines[-1])["entry"].encode()).hexdigest()
    report = verify_paths([dev])
    assert report.ok and report.warnings == [], (report.errors, report.warnings)
    # a log that ends on a whole line is left alone
    assert AuditLog(log_path, signer=signer, clock=ManualClock(), boot_id="boot-3").repaired_bytes == 0


def test_audit_rotated_head_is_a_note(dev: Path) -> None:
    lines = _audit_lines(dev)
    (dev / "audit" / "audit.log").write_text("".join(lines[3:]))
    report = verify_paths([dev])
    assert report.ok and any("starts at entry seq 4" in n for n in report.notes)


# --- stock tools, as docs/format.md tells a reviewer to use them ---------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"


def _doc_command(prefix: str) -> str:
    """The command exactly as docs/format.md prints it, so the docs cannot drift from what works."""
    return next(line for line in DOC.read_text().splitlines() if line.startswith(prefix))


def _doc_block(containing: str) -> str:
    blocks = DOC.read_text().split("```sh\n")[1:]
    return next(b.split("```")[0] for b in blocks if containing in b)


def test_openssl_checks_a_segment_as_documented(dev: Path) -> None:
    segments = dev / "segments"
    shutil.copy(dev / "device" / "device.pub.pem", segments)
    dgst = shlex.split(_doc_command("openssl dgst -sha256 -verify device.pub.pem -signature seg-0000000002"))
    ok = subprocess.run(dgst, cwd=segments, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "Verified OK"
    key_id = shlex.split(_doc_command("openssl pkey -pubin -in device.pub.pem -outform DER").split("|")[0])
    der = subprocess.run(key_id, cwd=segments, capture_output=True, check=True).stdout
    assert hashlib.sha256(der).hexdigest() == json.loads(seg(dev, 2, "json").read_text())["key_id"]
    manifest = seg(dev, 2, "json")
    manifest.write_text(manifest.read_text().replace('"PC-4242"', '"PC-0000"'))
    bad = subprocess.run(dgst, cwd=segments, capture_output=True, text=True)
    assert bad.returncode == 1 and "Verification failure" in bad.stdout


def test_documented_shell_loop_checks_the_whole_set(dev: Path) -> None:
    # scripts/_bootstrap.sh installs openssl and jq; a missing tool must fail, not skip
    assert None not in (shutil.which("openssl"), shutil.which("jq"), shutil.which("bash"))
    segments = dev / "segments"
    shutil.copy(dev / "device" / "device.pub.pem", segments)
    loop = _doc_block("for m in seg-*.json")

    def run() -> str:
        return subprocess.run(["bash", "-c", loop], cwd=segments, capture_output=True, text=True).stdout

    assert run() == "checked 5 segments\n"
    media = seg(dev, 4, "mp4")
    data = bytearray(media.read_bytes())
    data[-1] ^= 0xFF
    media.write_bytes(data)
    assert run() == "media altered: seg-0000000004.json\nchecked 5 segments\n"


# --- the command line -------------------------------------------------------------------------------

def test_json_output_parses(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drop(dev, 2)
    code, out, _ = cli(str(dev), "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["devices"][SERIAL]["missing_sequences"] == [2]


def test_nonexistent_path_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "firmware")}
    p = subprocess.run([sys.executable, "-m", "bodycam.cli_verify", str(missing)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == f"bodycam: {missing}: no such file or directory\n"


def test_bad_key_file_is_a_usage_error(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(str(dev), "--key", str(seg(dev, 1, "json")), capsys=capsys)
    assert code == 2 and out == "" and err.endswith("not a PEM public key or X.509 certificate\n")
    code, _, err = cli(str(dev), "--key", str(dev / "device" / "key.pem"), capsys=capsys)
    assert code == 2 and "is a private key" in err


def test_format_sequences() -> None:
    assert format_sequences([6, 5]) == "5, 6"
    assert format_sequences([1, 2, 3, 4, 9, 11, 12]) == "1-4, 9, 11, 12"


def test_documented_audit_entry_check_works_as_printed(dev: Path) -> None:
    """docs/format.md section 8 step 6, run exactly as printed, on a real signed audit log: the entry's
    signature verifies with openssl and the last two commands print the same hash; an edited entry
    fails the signature, and an edited line before it breaks the link."""
    assert None not in (shutil.which("openssl"), shutil.which("jq"), shutil.which("sed"))
    work = dev / "check"
    work.mkdir()
    shutil.copy(dev / "device" / "device.pub.pem", work)
    shutil.copy(dev / "audit" / "audit.log", work)
    block = _doc_block("sed -n 3p audit.log")

    def run() -> list[str]:
        p = subprocess.run(["bash", "-c", block], cwd=work, capture_output=True, text=True)
        return p.stdout.splitlines()

    out = run()
    assert out[0] == "Verified OK", out
    assert len(out) == 3 and out[1].split()[0] == out[2] and len(out[2]) == 64, out
    lines = _audit_lines(dev)
    assert out[2] == hashlib.sha256(json.loads(lines[1])["entry"].encode()).hexdigest()
    edited = lines[:2] + [lines[2].replace('"seq\\":3', '"seq\\":33')] + lines[3:]
    assert edited != lines
    (work / "audit.log").write_text("".join(edited))
    assert run()[0] == "Verification failure"
    before = lines[:1] + [lines[1].replace('"boot-1', '"boot-X')] + lines[2:]
    assert before != lines
    (work / "audit.log").write_text("".join(before))
    out = run()
    assert out[0] == "Verified OK" and out[1].split()[0] != out[2], "line 2 changed: the link no longer holds"
