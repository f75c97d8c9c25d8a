"""Recordings through the real encoder, segment writer, sealer and chain (synchronous rig)."""

from __future__ import annotations

import hashlib
import json

import av
import pytest
from bodycam.errors import StorageFullError
from bodycam.evidence.signer import load_public_key, verify_signature
from bodycam.verify import verify_paths
from framecode import decode_indices
from rig import Rig

NS = 1_000_000_000


def manifests(rig: Rig) -> list[dict]:
    return [json.loads(p.with_suffix(".json").read_bytes()) for p in rig.segments()]


def test_recording_starts_at_least_pre_event_seconds_before_trigger(tmp_path) -> None:
    rig = Rig(tmp_path)  # 10 fps, pre-event 3 s, GOP 1 s, 2 s segments
    rig.frames(57)  # 5.7 s of buffering: the trigger falls mid-GOP
    trigger = rig.trigger()
    rig.frames(50)
    rig.recorder.stop()
    segs = rig.segments()
    first = decode_indices(segs[0])
    m0 = manifests(rig)[0]
    assert m0["first_frame"]["monotonic_ns"] == rig.captured[first[0][0]][0]
    assert trigger - rig.captured[first[0][0]][0] >= 3 * NS  # the decoded video itself starts early enough
    assert m0["pre_event_seconds"] >= 3.0 and m0["pre_event_configured_seconds"] == 3.0
    assert first[0][2], "a segment starts on a keyframe"


def test_segment_boundaries_lose_no_frame_and_each_segment_plays_alone(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.frames(35)
    rig.trigger()
    rig.frames(93)
    rig.recorder.stop()
    segs = rig.segments()
    assert len(segs) >= 5
    seen: list[int] = []
    for seg, m in zip(segs, manifests(rig), strict=True):
        decoded = decode_indices(seg)  # each file decodes on its own
        assert decoded[0][2] and len(decoded) == m["frame_count"]
        seen += [code for code, _, _ in decoded]
    assert seen == list(range(seen[0], rig.index)), "every frame from pre-roll to stop, once, in order"


def test_every_frame_utc_is_recoverable_from_pts_and_manifest(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.frames(12)
    rig.trigger()
    rig.frames(25)
    rig.recorder.stop()
    for seg, m in zip(rig.segments(), manifests(rig), strict=True):
        tb = m["media"]["time_base"]
        assert tb == "1/90000"
        for code, pts, _ in decode_indices(seg):
            utc = m["first_frame"]["utc_ns"] + pts * NS // 90000
            expected = rig.captured[code][1]
            assert abs(utc - expected) < 1_000_000  # 1 ms: tick rounding only
        assert m["last_frame"]["utc_ns"] == rig.captured[code][1]  # code: the segment's last frame


def test_manifests_are_signed_chained_and_hash_the_media(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.frames(10)
    rig.trigger()
    rig.recorder.marker(mono_ns=rig.clock.monotonic_ns(), utc_ns=rig.clock.utc_ns(), note="suspect")
    rig.frames(45)
    rig.recorder.stop()
    pub = load_public_key(rig.signer.public_key_pem())
    prev = "0" * 64
    for i, seg in enumerate(rig.segments()):
        raw = seg.with_suffix(".json").read_bytes()
        assert verify_signature(pub, seg.with_suffix(".sig").read_bytes(), raw)
        m = json.loads(raw)
        assert m["sequence"] == i + 1 and m["segment_index"] == i
        assert m["previous_manifest_sha256"] == prev
        assert m["media"]["sha256"] == hashlib.sha256(seg.read_bytes()).hexdigest()
        assert m["media"]["size"] == seg.stat().st_size
        for key in ("device_serial", "key_id", "officer_id", "recording_id", "frame_count", "video",
                    "trigger", "firmware_version", "clock", "recovered"):
            assert key in m
        assert m["key_id"] == rig.signer.key_id and m["recovered"] is False
        prev = hashlib.sha256(raw).hexdigest()
    ms = manifests(rig)
    assert ms[0]["markers"][0]["note"] == "suspect"
    assert ms[-1]["end_reason"] == "button"
    assert not list(rig.layout.segments.glob("*.partial")) and not list(rig.layout.segments.glob("*.journal"))


def test_sequence_survives_restart_and_chain_continues(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.frames(10)
    rig.trigger()
    rig.frames(25)
    rig.recorder.stop()
    last = manifests(rig)[-1]
    rig2 = Rig(tmp_path)  # a reboot: new objects, same data directory
    rig2.frames(10)
    rig2.trigger()
    rig2.frames(15)
    rig2.recorder.stop()
    ms = manifests(rig2)
    new = [m for m in ms if m["recording_id"] != last["recording_id"]]
    assert new[0]["sequence"] == last["sequence"] + 1
    raw = (rig.layout.segments / f"seg-{last['sequence']:010d}.json").read_bytes()
    assert new[0]["previous_manifest_sha256"] == hashlib.sha256(raw).hexdigest()


def test_zero_pre_event_starts_on_a_forced_keyframe_at_the_trigger(tmp_path) -> None:
    rig = Rig(tmp_path, buffer={"pre_event_seconds": 0})
    rig.frames(14)  # mid-GOP
    trigger = rig.trigger()
    rig.frames(10)
    rig.recorder.stop()
    decoded = decode_indices(rig.segments()[0])
    assert decoded[0][0] == 14 and decoded[0][2]
    assert manifests(rig)[0]["first_frame"]["monotonic_ns"] - trigger <= NS // 10  # the next frame


def test_long_recording_rolls_into_a_new_recording_without_losing_a_frame(tmp_path) -> None:
    rig = Rig(tmp_path, recording={"max_recording_seconds": 10, "segment_seconds": 3})
    rig.frames(10)
    rig.trigger()
    rig.frames(260)
    rig.recorder.stop()
    ms = manifests(rig)
    recordings = list(dict.fromkeys(m["recording_id"] for m in ms))
    assert len(recordings) >= 3
    ends = [m for m in ms if m["end_reason"] == "max_length"]
    assert len(ends) == len(recordings) - 1
    seen = [c for seg in rig.segments() for c, _, _ in decode_indices(seg)]
    assert seen == list(range(seen[0], rig.index))
    for rid in recordings:
        span = [m for m in ms if m["recording_id"] == rid]
        dur = (span[-1]["last_frame"]["monotonic_ns"] - span[0]["first_frame"]["monotonic_ns"]) / NS
        assert dur <= 10.0


def test_full_disk_stops_recording_keeps_evidence_and_refuses_new(tmp_path) -> None:
    free = {"bytes": 10**9}
    rig = Rig(tmp_path, free_bytes=lambda _p: free["bytes"], storage={"reserve_megabytes": 50})
    rig.frames(10)
    rig.trigger()
    rig.frames(30)
    free["bytes"] = 50_000_000 + 10_000  # the disk fills up during the recording
    rig.frames(30)
    assert rig.recorder.fault and not rig.recorder.recording
    assert any(e == "storage_full" for e, _ in rig.events)
    ms = manifests(rig)
    assert ms[-1]["end_reason"] == "storage_full"
    for seg in rig.segments():  # everything written so far is sealed and intact
        assert decode_indices(seg)
    with pytest.raises(StorageFullError, match="dock the camera"):
        rig.trigger()


def test_segments_play_in_a_stock_demuxer(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.frames(10)
    rig.trigger()
    rig.frames(25)
    rig.recorder.stop()
    with av.open(str(rig.segments()[0])) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and (s.width, s.height) == (160, 120)
        assert c.format.name.startswith("mov,mp4")


def test_the_default_four_hour_limit_rolls_over_at_exactly_four_hours(tmp_path) -> None:
    """The shipped default (max_recording_seconds 14400) on the injected clock: 4 h of one recording,
    with the hours in between skipped by moving the clock (the camera delivered nothing then), keyframes
    at 4 h - 0.1 s (still the first recording) and at exactly 4 h (a new recording, end_reason
    "max_length" on the last segment of the old one), and not a frame lost across it."""
    rig = Rig(tmp_path)
    assert rig.cfg.recording.max_recording_seconds == 4 * 3600 == 14400
    rig.frames(12)
    rig.trigger()
    rig.frames(25)
    origin = rig.recorder._recording_first_ns          # the recording's first frame (pre-roll included)
    limit = origin + 14400 * NS

    def move_to(next_frame_ns: int) -> None:          # Rig.frames advances 0.1 s before each frame
        rig.clock.advance((next_frame_ns - NS // 10 - rig.clock.monotonic_ns()) / NS)
        assert rig.clock.monotonic_ns() == next_frame_ns - NS // 10

    move_to(limit - NS)
    rig.encoder.force_keyframe()
    rig.frames(9)                                      # 4 h - 1.0 s ... 4 h - 0.2 s
    rig.encoder.force_keyframe()
    rig.frames(1)                                      # a keyframe at 4 h - 0.1 s: not yet
    assert rig.captured[rig.index - 1][0] == limit - NS // 10
    rig.encoder.force_keyframe()
    rig.frames(1)                                      # a keyframe at exactly 4 h: the new recording
    assert rig.captured[rig.index - 1][0] == limit
    rig.frames(15)
    rig.recorder.stop()

    ms = manifests(rig)
    first_id, second_id = list(dict.fromkeys(m["recording_id"] for m in ms))
    old = [m for m in ms if m["recording_id"] == first_id]
    new = [m for m in ms if m["recording_id"] == second_id]
    assert old[0]["first_frame"]["monotonic_ns"] == origin
    assert old[-1]["end_reason"] == "max_length" and all(m["end_reason"] is None for m in old[:-1])
    assert old[-1]["last_frame"]["monotonic_ns"] == limit - NS // 10
    assert new[0]["first_frame"]["monotonic_ns"] == limit and new[0]["trigger"]["reason"] == "continuation"
    assert new[-1]["end_reason"] == "button"
    assert [m["sequence"] for m in ms] == list(range(1, len(ms) + 1))
    assert ("record_stop", {"recording_id": first_id, "reason": "max_length"}) in rig.events
    seen = [c for seg in rig.segments() for c, _, _ in decode_indices(seg)]
    assert seen == list(range(seen[0], rig.index)), "every frame once, in order, across the rollover"
    report = verify_paths([rig.layout.root], decode=True)
    assert report.ok, report.errors
