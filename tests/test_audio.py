"""Sound beside the pictures: sync measured from decoded files, drift, the pre-event policy, xruns.

Every sync figure here comes from FFmpeg decoding the sealed segment (tests/avsync.py): each flash of
the synthetic lamp against the click the synthetic microphone heard at the same instant.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from avsync import audio_track, click_times, flash_times, offsets, sync_errors
from bodycam.audio.chunk import AudioChunk
from bodycam.audio.drift import DriftCorrector
from bodycam.audio.synthetic import SyntheticAudioSource
from bodycam.clock import ManualClock
from bodycam.config import from_dict
from bodycam.errors import ConfigError
from bodycam.verify import verify_paths
from rig import AvRig

FRAME_S = 1 / 30


def manifests(rig: AvRig) -> list[dict]:
    return [json.loads(p.with_suffix(".json").read_text()) for p in rig.segments()]


# ------------------------------------------------------------------------------- drift correction

def run_corrector(ppm: float, seconds: int, *, step: float = 0.1) -> tuple[float, DriftCorrector, float]:
    """(worst |timeline error| in ms after the first second, corrector, naive error in ms at the end)."""
    clock = ManualClock(monotonic_ns=10_000_000_000)
    mic = SyntheticAudioSource(48000, 1, clock=clock, chunk_ms=100, drift_ppm=ppm, sleep=lambda _s: None)
    mic.start()
    dc = DriftCorrector(48000, 1)
    worst = 0.0
    for i in range(int(seconds / step)):
        clock.advance(step)
        while mic.ready():
            dc.feed(mic.read())
        if dc.origin_ns is None or i * step < 1:
            continue
        # output sample k is at origin + k / 48000; the next one must be the sound of the next capture instant
        err = dc.origin_ns + dc.out_count * 1e9 / 48000 - mic._capture_ns(mic._count)
        worst = max(worst, abs(err) / 1e6)
    naive = (mic._count / 48000 * 1e9 - (mic._capture_ns(mic._count) - mic._capture_ns(0))) / 1e6
    return worst, dc, naive


@pytest.mark.parametrize("ppm", [150.0, -300.0])
def test_a_drifting_microphone_stays_on_the_system_clock_for_an_hour(ppm) -> None:
    worst, dc, naive = run_corrector(ppm, 3600, step=0.5)
    assert abs(naive) > 500, "the microphone really drifts: counted as time, its samples would be this far off"
    assert worst < 1.0, f"timeline error reached {worst:.3f} ms"
    assert dc.drift_ppm == pytest.approx(ppm, abs=5)
    assert dc.resyncs == 0 and dc.inserted == 0 and dc.dropped == 0


def test_an_xrun_is_reported_and_filled_with_silence_of_its_length() -> None:
    clock = ManualClock(monotonic_ns=10_000_000_000)
    mic = SyntheticAudioSource(48000, 1, clock=clock, sleep=lambda _s: None)
    mic.start()
    dc = DriftCorrector(48000, 1)
    out = []
    for i in range(60):
        clock.advance(0.1)
        if i == 20:
            mic.lose(4800)  # 100 ms never reach the reader
        while mic.ready():
            out.append(dc.feed(mic.read()))
    assert mic.xruns == 1 and mic.missing_samples == 4800
    assert dc.inserted == 4800  # the gap is kept as silence, not closed up
    err = dc.origin_ns + dc.out_count * 1e9 / 48000 - mic._capture_ns(mic._count)
    assert abs(err) < 1e6


def test_an_unreported_jump_resyncs_at_once_and_is_counted() -> None:
    dc = DriftCorrector(48000, 1)
    t = 10_000_000_000
    for _ in range(10):
        dc.feed(AudioChunk(np.zeros((960, 1), np.float32), t))
        t += 20_000_000
    dc.feed(AudioChunk(np.zeros((960, 1), np.float32), t + 200_000_000))  # 200 ms vanished silently
    assert dc.resyncs == 1 and dc.inserted == pytest.approx(9600, abs=2)


# ------------------------------------------------------------------------------- sync in files

def record(tmp: Path, *, seconds_before: float, seconds_after: float, **kw) -> AvRig:
    rig = AvRig(tmp / "data", camera={"width": 160, "height": 120, "fps": 30}, **kw)
    rig.frames(round(seconds_before * 30))
    rig.trigger()
    rig.frames(round(seconds_after * 30))
    rig.recorder.stop("button")
    return rig


def test_flash_and_click_agree_at_the_start_and_across_every_segment_boundary(tmp_path) -> None:
    rig = record(tmp_path, seconds_before=3, seconds_after=7.2, pre_event_audio=True)
    segs = rig.segments()
    assert len(segs) >= 4
    for seg, m in zip(segs, manifests(rig), strict=True):
        off = offsets(seg)
        if m["last_frame"]["pts"] >= 90000:  # a segment of a second or more shows a flash
            assert len(off) >= 1, seg.name
        assert max((abs(o) for o in off), default=0) <= FRAME_S, (seg.name, off)  # as a viewer sees it: within a frame
        err = sync_errors(seg, m)
        assert max((abs(e) for e in err), default=0) <= 0.002, (seg.name, err)  # and the sound itself: within 2 ms
    # the boundary instants themselves: each segment's sound starts where its pictures start
    for m in manifests(rig)[1:]:
        a = m["audio"]
        assert abs(a["first_sample"]["monotonic_ns"] - m["first_frame"]["monotonic_ns"]) < 25_000_000
    report = verify_paths([tmp_path / "data"], decode=True)
    assert report.ok, report.render_text()


@pytest.mark.slow
def test_sync_holds_after_an_hour_with_a_microphone_running_200_ppm_fast(tmp_path) -> None:
    """An hour on the injected clock, small and slow (64x64 at 5 fps, 16 kHz sound) so it takes minutes."""
    rig = AvRig(tmp_path / "data", drift_ppm=200.0, camera={"width": 64, "height": 64, "fps": 5},
                encoder={"bitrate_kbps": 100, "gop_seconds": 1}, recording={"segment_seconds": 600},
                audio={"chunk_ms": 100, "sample_rate": 16000, "bitrate_kbps": 24})
    rig.frames(5)
    rig.trigger()
    rig.clock.advance(0.1)  # back onto whole seconds: at 5 fps a flash frame may otherwise be 100 ms off
    rig.frames(3600 * 5 + 5)
    rig.recorder.stop("button")
    segs = rig.segments()
    last = segs[-2]  # the last full 10-minute segment (the one after it holds the final seconds)
    m = json.loads(last.with_suffix(".json").read_text())
    assert m["last_frame"]["monotonic_ns"] - manifests(rig)[0]["first_frame"]["monotonic_ns"] > 3590e9
    off = offsets(last)
    assert len(off) > 500
    assert max(abs(o) for o in off) <= FRAME_S, off[-5:]
    err = sync_errors(last, m)
    assert max(abs(e) for e in err) <= 0.002, err[-5:]
    assert m["audio"]["drift_ppm"] == pytest.approx(200, abs=10)
    # uncorrected, 200 ppm over the hour would have put the clicks 0.72 s late
    every = manifests(rig)
    total = sum(x["audio"]["sample_count"] for x in every)
    sound_s = (every[-1]["audio"]["last_sample"]["monotonic_ns"]
               - every[0]["audio"]["sound_starts"]["monotonic_ns"]) / 1e9
    last_packet_s = 1024 / 16000  # last_sample stamps the start of the last AAC frame
    assert abs(total / 16000 - (sound_s + last_packet_s)) < 0.002  # 16000 samples a clock second, none lost


# ------------------------------------------------------------------------------- pre-event policy

def test_pre_event_sound_off_by_default_sound_starts_at_the_press(tmp_path) -> None:
    rig = record(tmp_path, seconds_before=3, seconds_after=1.5, recording={"segment_seconds": 10})
    first = rig.segments()[0]
    m = manifests(rig)[0]
    trigger = m["trigger"]["monotonic_ns"]
    assert m["audio"]["pre_event_audio"] is False
    assert m["audio"]["sound_starts"]["monotonic_ns"] >= trigger
    start, samples, rate = audio_track(first)
    pre_s = (trigger - m["first_frame"]["monotonic_ns"]) / 1e9
    assert pre_s >= 2.9
    assert start >= pre_s - 0.001, "decoded sound starts at the press, not in the buffered seconds"
    assert len(samples) / rate < 1.5 + 0.2
    flashes = flash_times(first)
    assert any(t < pre_s for t in flashes) and all(c >= pre_s for c in click_times(first))


def test_pre_event_sound_on_carries_the_buffered_seconds(tmp_path) -> None:
    rig = record(tmp_path, seconds_before=3, seconds_after=1.5, pre_event_audio=True,
                 recording={"segment_seconds": 10})
    first = rig.segments()[0]
    m = manifests(rig)[0]
    assert m["audio"]["pre_event_audio"] is True
    assert m["audio"]["sound_starts"]["monotonic_ns"] < m["trigger"]["monotonic_ns"] - 2.5e9
    start, samples, rate = audio_track(first)
    assert start < 0.025
    pre_s = (m["trigger"]["monotonic_ns"] - m["first_frame"]["monotonic_ns"]) / 1e9
    assert len([c for c in click_times(first) if c < pre_s]) >= 2


# ------------------------------------------------------------------------------- manifests and config

def test_manifest_describes_the_sound_track(tmp_path) -> None:
    rig = record(tmp_path, seconds_before=1, seconds_after=2.5, pre_event_audio=True)
    for seg, m in zip(rig.segments(), manifests(rig), strict=True):
        a = m["audio"]
        assert (a["codec"], a["profile"], a["sample_rate"], a["channels"]) == ("aac", "LC", 48000, 1)
        _, samples, _ = audio_track(seg)
        assert a["sample_count"] == len(samples)
        assert a["first_sample"]["pts"] >= 0 and a["last_sample"]["utc_ns"] > a["first_sample"]["utc_ns"]
        assert a["xruns"] == 0 and a["missing_samples"] == 0
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
                                "-of", "csv=p=0", str(seg)], capture_output=True, text=True, check=True)
        assert sorted(probe.stdout.split()) == ["aac,audio", "h264,video"]


def test_audio_config_is_checked() -> None:
    cfg = from_dict({"audio": {"source": "none"}})
    assert not cfg.audio.enabled
    with pytest.raises(ConfigError, match=r"\[audio\] source = 'file'"):
        from_dict({"audio": {"source": "file"}})
    with pytest.raises(ConfigError, match=r"\[audio\] sample_rate"):
        from_dict({"audio": {"sample_rate": 44}})


# ------------------------------------------------------------------------------- alsa and file sources

def test_pyav_has_the_alsa_input_the_alsa_source_uses() -> None:
    import av
    assert "alsa" in av.formats_available


def test_alsa_source_maps_ffmpeg_stamps_to_the_clock_and_reports_an_overrun() -> None:
    from bodycam.audio.alsa import AlsaSource
    from fake_alsa import opener
    clock = ManualClock(monotonic_ns=10_000_000_000)
    open_ = opener(clock, overrun_after=40, overrun_periods=3)
    src = AlsaSource("hw:1,0", 48000, 1, clock=clock, opener=open_)
    src.start()
    assert open_.calls == [("hw:1,0", {"sample_rate": "48000", "channels": "1"})]
    first = src.read()
    assert first is not None and first.frames == 1024
    assert abs(first.mono_ns - 10_000_000_000) < 30_000  # the capture of its first sample (us stamps)
    dc = DriftCorrector(48000, 1)
    dc.feed(first)
    for i in range(1, 80):
        if i == 60:
            clock.step_utc(3600)  # the dock sets the wall clock: sample times must not move
        chunk = src.read()
        assert chunk is not None
        dc.feed(chunk)
    assert src.xruns == 1 and src.missing_samples == 3 * 1024
    assert dc.inserted == pytest.approx(3 * 1024, abs=2)
    end = 10_000_000_000 + (80 + 3) * 1024 * 1e9 / 48000
    assert abs(dc.origin_ns + dc.out_count * 1e9 / 48000 - end) < 1e6
    src.close()
    assert src.read() is None


def test_alsa_source_that_cannot_open_says_what_to_check() -> None:
    from bodycam.audio.alsa import AlsaSource
    from bodycam.errors import SourceError
    src = AlsaSource("hw:9,9", 48000, 1, clock=ManualClock())
    with pytest.raises(SourceError, match=r"cannot open ALSA device 'hw:9,9'.*arecord -l"):
        src.start()


def test_file_source_plays_the_files_sound_resampled(tmp_path) -> None:
    import av
    from bodycam.audio.file_source import FileAudioSource
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("aac", rate=44100)
        s.layout = "stereo"
        t = np.arange(44100 * 2) / 44100
        tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        fs = 1024  # one AAC frame
        for i in range(0, len(tone) - fs, fs):
            f = av.AudioFrame.from_ndarray(np.stack([tone[i:i + fs]] * 2), format="fltp", layout="stereo")
            f.sample_rate, f.pts = 44100, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    clock = ManualClock()
    src = FileAudioSource(clip, 48000, 1, clock=clock, loop=False, sleep=lambda s: clock.advance(s))
    src.start()
    chunks = []
    while (c := src.read()) is not None:
        chunks.append(c)
    x = np.concatenate([c.samples for c in chunks])[:, 0]
    assert src.info()["has_sound"] and abs(len(x) / 48000 - 2.0) < 0.1
    mid = x[24000:72000]
    crossings = np.count_nonzero(np.diff(np.sign(mid)) > 0)
    assert abs(crossings - 1000) < 10  # still 1 kHz after resampling to 48 kHz
    assert 0.3 < np.sqrt(np.mean(mid ** 2)) < 0.6  # FFmpeg mixes L+R down at -3 dB each


# ------------------------------------------------------------------------------- verify and validate

def test_verify_decode_checks_the_sound_track_against_the_signed_manifest(tmp_path) -> None:
    from bodycam.evidence.signer import FileKeySigner
    rig = record(tmp_path, seconds_before=1, seconds_after=2.5)
    assert verify_paths([tmp_path / "data"], decode=True).ok
    last = rig.segments()[-1].with_suffix(".json")
    doc = json.loads(last.read_text())
    doc["audio"]["sample_count"] += 1024  # a manifest claiming sound the file does not hold
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    last.chmod(0o644)
    last.write_bytes(raw)
    sig = last.with_suffix(".sig")
    sig.chmod(0o644)
    sig.write_bytes(FileKeySigner.load(rig.cfg.key_path).sign(raw))
    report = verify_paths([tmp_path / "data"], decode=True)
    want = doc["audio"]["sample_count"]
    assert any(f"sound samples, manifest says {want}" in e for e in report.errors), report.render_text()


def test_validate_accepts_manifests_without_sound_and_rejects_a_bad_audio_object() -> None:
    from bodycam.evidence.validate import manifest_shape_problems
    base = {"sequence": 1, "device_serial": "BC-1", "key_id": "k", "previous_manifest_sha256": "0" * 64,
            "media": {"file": "seg-0000000001.mp4", "sha256": "a" * 64, "size": 1}, "frame_count": 1}
    assert manifest_shape_problems(base) == []                     # older firmware: no "audio" key
    assert manifest_shape_problems({**base, "audio": None}) == []  # recorded without sound
    bad = {"sample_rate": "48000", "channels": 1, "sample_count": -1, "pre_event_audio": "no",
           "first_sample": {"utc": "x"}}
    assert set(manifest_shape_problems({**base, "audio": bad})) == {
        "audio.sample_rate", "audio.sample_count", "audio.pre_event_audio", "audio.first_sample"}


def test_opus_is_the_other_codec_and_keeps_sync_and_every_sample(tmp_path) -> None:
    rig = record(tmp_path, seconds_before=1, seconds_after=3, pre_event_audio=True, audio={"codec": "opus"})
    for seg, m in zip(rig.segments(), manifests(rig), strict=True):
        assert (m["audio"]["codec"], m["audio"]["encoder"]) == ("opus", "libopus")
        assert max(abs(e) for e in sync_errors(seg, m)) <= 0.002
    report = verify_paths([tmp_path / "data"], decode=True)  # decoded samples and first pts match
    assert report.ok, report.render_text()


# ------------------------------------------------------------------------------- the real pipeline

@pytest.mark.slow
def test_the_threaded_pipeline_in_real_time_keeps_sound_on_its_pictures(tmp_path) -> None:
    """The daemon's own threads on the system clock: capture, encode, microphone, writer."""
    import time

    from bodycam.device import RecordingDevice
    from bodycam.evidence.signer import generate_key
    from rig import small_config
    cfg = small_config(tmp_path / "data", camera={"width": 320, "height": 240, "fps": 30},
                       buffer={"pre_event_seconds": 2}, recording={"segment_seconds": 2})
    generate_key(cfg.key_path)
    with RecordingDevice(cfg) as dev:
        dev.start()
        time.sleep(2.5)
        dev.pipeline.start_recording()
        time.sleep(4.5)
        assert dev.audio_status()["recording"] is True
        dev.pipeline.stop_recording()
        assert dev.audio_status()["xruns"] == 0
        dropped = dev.pipeline.snapshot().dropped_by_source
    segs = sorted((tmp_path / "data" / "segments").glob("seg-*.mp4"))
    ms = [json.loads(s.with_suffix(".json").read_text()) for s in segs]
    found, seen = 0, []
    for seg, m in zip(segs, ms, strict=True):
        off = offsets(seg)
        found += len(off)
        assert max((abs(o) for o in off), default=0) <= FRAME_S, (seg.name, off)
        assert max((abs(e) for e in sync_errors(seg, m)), default=0) <= 0.005, seg.name
        # every flash recorded after the sound starts has its click (a flash whose frame the loaded
        # machine dropped is simply not there; a click that is missing is a failure)
        sound = m["audio"]["sound_starts"]
        if sound:
            from_s = (sound["monotonic_ns"] - m["first_frame"]["monotonic_ns"]) / 1e9 + FRAME_S
            flashes = [t for t in flash_times(seg) if t >= from_s]
            seen.append((seg.name, flashes, click_times(seg)))
            assert len(off) >= len(flashes), seen[-1]
    assert found >= 2, (seen, f"{dropped} frames dropped by the source")
    trigger = ms[0]["trigger"]["monotonic_ns"]
    starts = next(m["audio"]["sound_starts"]["monotonic_ns"] for m in ms if m["audio"]["sound_starts"])
    assert 0 <= starts - trigger < 50_000_000  # pre-event: video only (the default); sound from the press
    report = verify_paths([tmp_path / "data"], decode=True)
    assert report.ok, report.render_text()
