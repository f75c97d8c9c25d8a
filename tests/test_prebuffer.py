"""The pre-event buffer fed synthetic packet sequences: no camera, no encoder."""

from __future__ import annotations

import pytest
from bodycam.encode.packet import EncodedPacket
from bodycam.prebuffer import PreEventBuffer

FPS = 30
GOP = 30
NS = 1_000_000_000


def packets(n: int, *, start: int = 0, size: int = 1000, keyframe_size: int | None = None, gop: int = GOP):
    for i in range(start, start + n):
        key = i % gop == 0
        yield EncodedPacket(b"\0" * ((keyframe_size or size) if key else size), key,
                            mono_ns=i * NS // FPS, utc_ns=10**18 + i * NS // FPS, index=i)


def fill(buf: PreEventBuffer, n: int, **kw) -> None:
    for p in packets(n, **kw):
        buf.push(p)


@pytest.mark.parametrize("seconds", [0.5, 1, 2.5, 30, 120])
@pytest.mark.parametrize("phase", [0, 1, 15, 29])
def test_recording_starts_at_least_configured_seconds_before_trigger(seconds: float, phase: int) -> None:
    buf = PreEventBuffer(seconds=seconds, max_bytes=10**9)
    n = int(seconds * FPS) + 5 * GOP + phase
    fill(buf, n)
    trigger = (n - 1) * NS // FPS + NS // (2 * FPS)  # between the last frame and the next
    out = buf.take(trigger)
    assert out[0].keyframe
    assert out[0].mono_ns <= trigger - seconds * NS
    # ... and by no more than one GOP (the buffer keeps just one extra GOP)
    assert trigger - out[0].mono_ns < seconds * NS + GOP * NS // FPS + NS // FPS
    assert [p.index for p in out] == list(range(out[0].index, n))  # contiguous, nothing missing
    assert len(buf) == 0 and buf.nbytes == 0


def test_head_is_always_a_keyframe_and_partial_gops_are_discarded() -> None:
    buf = PreEventBuffer(seconds=2, max_bytes=10**9)
    fill(buf, 20, start=10)  # starts mid-GOP: nothing before the keyframe at 30 may be kept
    assert len(buf) == 0
    fill(buf, 200, start=30)
    out = buf.take(229 * NS // FPS)
    assert out[0].keyframe and out[0].index % GOP == 0


def test_byte_bound_drops_whole_gops_from_the_head() -> None:
    buf = PreEventBuffer(seconds=30, max_bytes=200_000)
    for p in packets(40 * FPS, size=2000, keyframe_size=20_000):
        buf.push(p)
        assert buf.nbytes <= 200_000
    out = buf.take(40 * NS)
    assert out[0].keyframe
    assert sum(p.size for p in out) <= 200_000
    assert buf.discarded_gops > 0  # the shortfall is reported, not hidden


def test_just_booted_buffer_gives_everything_it_has() -> None:
    buf = PreEventBuffer(seconds=30, max_bytes=10**9)
    fill(buf, 100)
    out = buf.take(100 * NS // FPS)
    assert [p.index for p in out] == list(range(100))


def test_zero_seconds_buffers_nothing() -> None:
    buf = PreEventBuffer(seconds=0, max_bytes=10**9)
    fill(buf, 300)
    assert len(buf) == 0 and buf.take(10 * NS) == []


def test_duration_tracks_held_video() -> None:
    buf = PreEventBuffer(seconds=5, max_bytes=10**9)
    fill(buf, 20 * FPS)
    assert 5.0 <= buf.duration_s() <= 5.0 + GOP / FPS


def test_capping_is_reported_once_per_stretch_and_cleared_by_take() -> None:
    calls: list[float] = []
    buf = PreEventBuffer(seconds=30, max_bytes=200_000, on_capped=calls.append)
    fill(buf, 10 * FPS, size=2000, keyframe_size=20_000)  # ~80 kB a second: 200 kB hold ~2.5 s of 30
    assert buf.capped and len(calls) == 1 and 1.0 < calls[0] < 3.0
    fill(buf, 10 * FPS, start=10 * FPS, size=2000, keyframe_size=20_000)
    assert len(calls) == 1, "one report per stretch of capping, not one per dropped GOP"
    buf.take(20 * NS)
    assert not buf.capped
    fill(buf, 10 * FPS, start=20 * FPS, size=2000, keyframe_size=20_000)
    assert len(calls) == 2


def test_a_cap_that_holds_the_seconds_never_reports() -> None:
    calls: list[float] = []
    buf = PreEventBuffer(seconds=2, max_bytes=10**9, on_capped=calls.append)
    fill(buf, 20 * FPS)
    assert not buf.capped and calls == []
