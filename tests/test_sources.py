"""Camera sources, driven for real on a ManualClock: pacing, drops, determinism, files, failures.

Nothing under test is mocked. The webcam is opened through OpenCV for real (there is none here, so
only its failure is tested); picamera2, which only exists on a Pi, is tested against a fake modelled on
its source in test_picamera2_source.py; its absence is tested here.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from bodycam.capture.factory import open_source
from bodycam.capture.file_source import FileSource
from bodycam.capture.pacing import GapCounter, Pacer
from bodycam.capture.picamera2_source import Picamera2Source
from bodycam.capture.synthetic import SyntheticSource, read_index_code
from bodycam.capture.webcam import WebcamSource
from bodycam.clock import ManualClock, SystemClock
from bodycam.config import CameraConfig
from bodycam.errors import SourceError

FPS = 30
NS = 1_000_000_000


def due(t0: int, slot: int, fps: float = FPS) -> int:
    return t0 + round(slot * NS / fps)


# ---------------------------------------------------------------------------------------- Pacer

def test_pacer_hands_out_slots_spaced_one_interval_apart() -> None:
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    pacer = Pacer(FPS, clock)
    slots = [pacer.wait_next() for _ in range(100)]
    assert [s for s, _ in slots] == list(range(100))
    assert [m for _, m in slots] == [due(t0, i) for i in range(100)]
    assert all(abs((b - a) - NS / FPS) <= 1 for (_, a), (_, b) in zip(slots, slots[1:], strict=False))
    assert clock.monotonic_ns() == due(t0, 99)  # it slept on the clock, exactly to the last slot
    assert pacer.dropped == 0


def test_pacer_skips_and_counts_slots_a_late_consumer_missed() -> None:
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    pacer = Pacer(FPS, clock)
    assert pacer.wait_next() == (0, t0)
    clock.sleep(3 / FPS)  # the consumer takes three frame times over slot 0
    assert pacer.wait_next() == (3, due(t0, 3))  # slots 1 and 2 are gone, slot 3 is due right now
    assert pacer.dropped == 2
    assert pacer.wait_next() == (4, due(t0, 4))  # back on time: nothing more dropped
    assert pacer.dropped == 2


def test_pacer_late_by_less_than_a_slot_drops_nothing() -> None:
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    pacer = Pacer(FPS, clock)
    pacer.wait_next()
    clock.sleep(1.5 / FPS)
    assert pacer.wait_next() == (1, due(t0, 1))  # late, but still the newest slot
    assert clock.monotonic_ns() == due(t0, 1.5)
    assert pacer.wait_next() == (2, due(t0, 2))
    assert pacer.dropped == 0


def test_pacer_never_bursts_after_a_stall() -> None:
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    pacer = Pacer(FPS, clock)
    pacer.wait_next()
    clock.sleep(10.0)
    assert pacer.wait_next() == (300, due(t0, 300))
    assert pacer.dropped == 299
    before = clock.monotonic_ns()
    assert pacer.wait_next() == (301, due(t0, 301))
    assert clock.monotonic_ns() - before == due(t0, 301) - due(t0, 300)  # waited a whole interval


def test_pacer_keeps_step_at_fractional_rates() -> None:
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    pacer = Pacer(29.97, clock)
    for i in range(1000):
        slot, mono = pacer.wait_next()
        assert (slot, mono) == (i, due(t0, i, 29.97))
        clock.sleep(0.9 / 29.97)  # a consumer using 90 % of each interval
    assert pacer.dropped == 0


def test_gap_counter_counts_missing_frames_from_timestamps() -> None:
    gaps = GapCounter(FPS)
    step = NS // FPS
    advances = [gaps.update(t) for t in (0, step, 2 * step + step // 3, 5 * step, 6 * step)]
    assert advances == [1, 1, 1, 3, 1]  # 1.33 intervals is jitter; 2.67 intervals is two lost frames
    assert gaps.dropped == 2


# ---------------------------------------------------------------------------------- Synthetic

def synthetic(seed: int = 7, width: int = 96, height: int = 64, clock: ManualClock | None = None):
    return SyntheticSource(width, height, FPS, seed=seed, clock=clock or ManualClock())


def test_synthetic_is_deterministic_for_a_seed() -> None:
    with synthetic(seed=7) as a, synthetic(seed=7) as b, synthetic(seed=8) as c:
        fa, fb, fc = [[s.read() for _ in range(5)] for s in (a, b, c)]
    for x, y in zip(fa, fb, strict=True):
        assert x.index == y.index and x.image.tobytes() == y.image.tobytes()
    assert all(x.image.tobytes() != z.image.tobytes() for x, z in zip(fa, fc, strict=True))
    # The image is a function of the slot alone, not of when or how it was read.
    assert synthetic(seed=7).render(3).tobytes() == fa[3].image.tobytes()


def test_synthetic_frames_move_and_carry_their_slot_number() -> None:
    with synthetic(width=320, height=240) as src:
        frames = [src.read() for _ in range(10)]
    for f in frames:
        assert f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8
        assert read_index_code(f.image) == f.index
    for a, b in zip(frames, frames[1:], strict=False):
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16))
        assert (diff.max(axis=2) > 4).mean() > 0.5  # the whole background pans, not just the counter


def test_synthetic_frames_own_their_pixels() -> None:
    with synthetic() as src:
        a, b = src.read(), src.read()
    a.image[:] = 0  # the watermark draws in place; one frame must never change another
    assert b.image.any()
    assert src.render(b.index).tobytes() == b.image.tobytes()


def test_synthetic_is_paced_and_late_reads_drop_slots() -> None:
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    offset = clock.utc_ns() - t0
    with synthetic(clock=clock) as src:
        f0, f1 = src.read(), src.read()
        clock.sleep(3 / FPS)
        f2 = src.read()
        f3 = src.read()
    assert [f.index for f in (f0, f1, f2, f3)] == [0, 1, 4, 5]
    assert src.dropped == 2
    assert [f.mono_ns for f in (f0, f1, f2, f3)] == [due(t0, i) for i in (0, 1, 4, 5)]
    assert all(f.utc_ns - f.mono_ns == offset for f in (f0, f1, f2, f3))
    assert read_index_code(f2.image) == 4


def test_synthetic_lifecycle() -> None:
    src = synthetic()
    with pytest.raises(RuntimeError, match="before start"):
        src.read()
    with src:
        assert src.read() is not None
        src.start()  # harmless when already started
    assert src.read() is None  # closed: ended, like a file at its end
    src.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        src.start()


def test_synthetic_works_at_the_smallest_size() -> None:
    with synthetic(width=64, height=64) as src:
        frames = [src.read() for _ in range(3)]
    assert all(f.image.shape == (64, 64, 3) for f in frames)
    assert read_index_code(frames[2].image) == 2


def test_synthetic_full_hd_sanity() -> None:
    """Runs at 1080p to catch gross slowness by eye (-s prints it); deliberately no timing assertion."""
    src = synthetic(width=1920, height=1080)
    src.render(0)  # builds the texture
    t = time.perf_counter()
    images = [src.render(i) for i in range(10)]
    print(f"synthetic 1920x1080: {(time.perf_counter() - t) * 100:.2f} ms/frame")
    assert all(img.shape == (1080, 1920, 3) for img in images)
    assert read_index_code(images[-1]) == 9


# ---------------------------------------------------------------------------------------- File

FILE_FRAMES = 12


def grey_of(k: int) -> int:
    return 20 + 15 * k


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96x64 H.264 file whose frame k is a flat grey grey_of(k), so order survives compression."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for k in range(FILE_FRAMES):
            img = np.full((64, 96, 3), grey_of(k), np.uint8)
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        c.mux(stream.encode())
    return path


def file_source(path: Path, *, loop: bool, clock: ManualClock | None = None, size=(48, 32)) -> FileSource:
    return FileSource(path, size[0], size[1], FPS, loop=loop, clock=clock or ManualClock())


def k_of(image: np.ndarray) -> int:
    return round((float(image.mean()) - 20) / 15)


def shown_at_30fps(slot: int, file_fps: int = 25) -> int:
    """The file frame on screen at capture slot ``slot``: the latest whose time is not after the slot's."""
    return slot * file_fps // FPS


def test_file_frames_are_delivered_at_the_files_own_speed_and_the_configured_size(video: Path) -> None:
    """A 25 fps clip captured at 30 fps: one frame in six shown twice, so it lasts its real 0.48 s."""
    clock = ManualClock()
    t0 = clock.monotonic_ns()
    slots = 15  # 12 frames at 25 fps last 0.48 s: slots 0..14 (t < 0.48 s) show them
    with file_source(video, loop=False, clock=clock, size=(160, 120)) as src:
        frames = [src.read() for _ in range(slots)]
        assert src.read() is None and src.read() is None  # end of file, and it stays ended
    assert all(f.image.shape == (120, 160, 3) and f.image.flags.c_contiguous for f in frames)
    assert [k_of(f.image) for f in frames] == [shown_at_30fps(i) for i in range(slots)]
    assert [k_of(f.image) for f in frames] == [0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10, 11]
    assert [f.index for f in frames] == list(range(slots))
    assert [f.mono_ns for f in frames] == [due(t0, i) for i in range(slots)]  # captured at 30 fps
    assert src.dropped == 0 and src.passes == 1


@pytest.fixture(scope="module")
def video_60fps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video60") / "clip60.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=60)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for k in range(FILE_FRAMES):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), grey_of(k), np.uint8),
                                                            format="bgr24")))
        c.mux(stream.encode())
    return path


def test_a_faster_file_drops_frames_to_keep_real_time(video_60fps: Path) -> None:
    with file_source(video_60fps, loop=False) as src:
        ks = [k_of(f.image) for f in iter(src.read, None)]
    assert ks == [0, 2, 4, 6, 8, 10]  # 12 frames at 60 fps are 0.2 s: six slots at 30 fps


def test_file_loops_when_asked(video: Path) -> None:
    n = 2 * 15 + 3
    with file_source(video, loop=True) as src:
        ks = [k_of(src.read().image) for _ in range(n)]
    # each pass lasts 0.48 s, so pass p starts at 0.48 p s: the frame on screen keeps real time
    assert ks == [int((i / FPS) % 0.48 * 25 + 1e-9) for i in range(n)]
    assert src.passes == 2


def test_file_drops_the_frames_of_missed_slots(video: Path) -> None:
    clock = ManualClock()
    with file_source(video, loop=False, clock=clock) as src:
        first = src.read()
        clock.sleep(3 / FPS)
        late = src.read()
    assert (first.index, k_of(first.image)) == (0, 0)
    assert (late.index, k_of(late.image)) == (3, shown_at_30fps(3))  # the file kept playing meanwhile
    assert src.dropped == 2


def test_missing_file_is_a_one_line_source_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="not found") as e:
        file_source(missing, loop=True).start()
    assert str(missing) in str(e.value) and "\n" not in str(e.value)


def test_undecodable_file_is_a_source_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is not a video\n" * 100)
    with pytest.raises(SourceError) as e:
        file_source(junk, loop=True).start()
    assert str(junk) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SourceError, match="not a file"):
        file_source(tmp_path, loop=True).start()


# -------------------------------------------------------------------------------------- Webcam

@pytest.mark.parametrize("device", ["/dev/video-does-not-exist", "/dev/null", "63"])
def test_webcam_that_cannot_be_opened_is_a_source_error(device: str) -> None:
    src = WebcamSource(device, 64, 64, FPS, clock=ManualClock())
    with pytest.raises(SourceError, match=r"cannot open webcam .*\(set \[camera\] device\)"):
        src.start()
    src.close()


# ----------------------------------------------------------------------------------- picamera2

def test_picamera2_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes `import picamera2` raise ImportError
    src = Picamera2Source(1280, 720, FPS, clock=ManualClock(), tuning_file="")
    with pytest.raises(SourceError) as e:
        src.start()
    msg = str(e.value)
    assert "sudo apt install python3-picamera2" in msg and "source = 'synthetic'" in msg
    src.close()


# The fake picamera2 and the camera's own tests: tests/fake_picamera2.py, tests/test_picamera2_source.py.


# ------------------------------------------------------------------------------------- Factory

@pytest.mark.parametrize(("source", "cls"), [("synthetic", SyntheticSource), ("file", FileSource),
                                             ("webcam", WebcamSource), ("picamera2", Picamera2Source)])
def test_factory_builds_the_configured_source(source: str, cls: type) -> None:
    cam = CameraConfig(source=source, width=320, height=240, fps=15, file="/tmp/clip.mp4")
    src = open_source(cam, ManualClock())
    assert type(src) is cls
    assert (src.width, src.height, src.fps) == (320, 240, 15.0)
    src.close()  # never started: closing is still fine


def test_factory_passes_source_options(video: Path) -> None:
    cam = CameraConfig(source="file", width=64, height=64, file=str(video), loop=False)
    with open_source(cam, ManualClock()) as src:
        assert src.read().image.shape == (64, 64, 3)
        assert src.loop is False
    with open_source(CameraConfig(seed=5, width=64, height=64), ManualClock()) as src:
        assert src.seed == 5 and src.read().image.shape == (64, 64, 3)


def test_factory_rejects_an_unknown_source() -> None:
    with pytest.raises(SourceError, match="must be one of"):
        open_source(dataclasses.replace(CameraConfig(), source="kinect"), ManualClock())
    with pytest.raises(SourceError, match="file: required"):
        open_source(CameraConfig(source="file"), ManualClock())


def test_close_from_another_thread_ends_a_blocked_reader() -> None:
    """The pipeline closes the source from its control thread while the capture thread reads."""
    src = SyntheticSource(64, 64, 200, seed=1, clock=SystemClock())
    src.start()
    got: list[int] = []

    def reader() -> None:
        while (f := src.read()) is not None:
            got.append(f.index)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    src.close()
    t.join(timeout=5)
    assert not t.is_alive() and got and got == sorted(got)
