"""The burned-in stamp: where it goes, that it only touches its box, and that it shows the frame's time."""

from __future__ import annotations

import time

import numpy as np
import pytest
from bodycam.capture.frame import Frame
from bodycam.clock import iso_utc
from bodycam.config import WatermarkConfig
from bodycam.watermark import Watermarker

UTC = 1_795_170_000_123_000_000  # 2026-11-20T10:20:00.123Z
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")


def frame(width: int = 640, height: int = 360, *, utc_ns: int = UTC, seed: int = 1) -> Frame:
    image = np.random.default_rng(seed).integers(40, 216, (height, width, 3), dtype=np.uint8)
    return Frame(image=image, index=0, mono_ns=0, utc_ns=utc_ns)


def marker(**cfg) -> Watermarker:
    return Watermarker(WatermarkConfig(**cfg), serial="BC-TEST-0001", officer_id="PC-4711")


def changed_bbox(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((before != after).any(axis=2))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("position", POSITIONS)
def test_stamp_changes_only_its_box_in_the_configured_corner(position: str) -> None:
    wm = marker(position=position)
    f = frame()
    before = f.image.copy()
    wm.apply(f)
    x0, y0, x1, y1 = wm.box(640, 360)
    cx0, cy0, cx1, cy1 = changed_bbox(before, f.image)
    assert x0 <= cx0 and y0 <= cy0 and cx1 <= x1 and cy1 <= y1  # nothing outside the box moved
    outside = np.ones((360, 640), bool)
    outside[y0:y1, x0:x1] = False
    assert (before[outside] == f.image[outside]).all()
    assert (x1 <= 320) == position.endswith("left") and (x0 >= 320) == position.endswith("right")
    assert (y1 <= 180) == position.startswith("top") and (y0 >= 180) == position.startswith("bottom")
    # It is a box hugging its corner, not a stray line.
    assert min(x0, 640 - x1, y0, 360 - y1) <= 20 and x1 - x0 > 100 and y1 - y0 > 30


def test_stamp_is_white_text_on_a_darkened_box() -> None:
    wm = marker()
    f = frame()
    before = f.image.copy()
    wm.apply(f)
    x0, y0, x1, y1 = wm.box(640, 360)
    box, was = f.image[y0:y1, x0:x1], before[y0:y1, x0:x1]
    assert np.median(box) < 0.4 * np.median(was)  # background darkened
    assert (box.min(axis=2) >= 240).sum() > 100  # and plenty of white text strokes on it


def test_stamp_shows_the_frame_time_to_the_millisecond() -> None:
    wm = marker()
    a, b, c = frame(utc_ns=UTC), frame(utc_ns=UTC + 1_000_000), frame(utc_ns=UTC + 999)
    for f in (a, b, c):
        wm.apply(f)
    assert iso_utc(UTC).endswith(".123Z") and iso_utc(UTC + 1_000_000).endswith(".124Z")
    assert a.image.tobytes() != b.image.tobytes()  # one millisecond later looks different
    assert a.image.tobytes() == c.image.tobytes()  # below a millisecond there is nothing to show


def test_box_does_not_change_size_with_the_time() -> None:
    wm = marker()
    size = wm.box(640, 360)
    for utc in (UTC, UTC + 111_111_111_111_111, 4_102_444_799_999_000_000):  # up to 2099-12-31T23:59:59.999Z
        f = frame(utc_ns=utc)
        before = f.image.copy()
        wm.apply(f)
        cx0, cy0, cx1, cy1 = changed_bbox(before, f.image)
        assert (cx0, cy0, cx1, cy1) == size  # the darkening fills the box exactly, every time


def test_lines_and_scale_follow_the_config() -> None:
    w_full = marker().box(1280, 720)
    w_time = marker(show_serial=False, show_officer=False).box(1280, 720)
    w_big = marker(scale=2.0).box(1280, 720)
    assert (w_time[3] - w_time[1]) < (w_full[3] - w_full[1])  # fewer lines, shorter box
    assert (w_big[2] - w_big[0]) > 1.8 * (w_full[2] - w_full[0])


def test_disabled_stamp_leaves_the_frame_alone() -> None:
    f = frame()
    before = f.image.copy()
    marker(enabled=False).apply(f)
    assert (before == f.image).all()


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0])
@pytest.mark.parametrize("size", [(64, 64), (96, 64), (7, 5), (1, 1)])
def test_tiny_frames_are_clipped_not_crashed(position: str, scale: float, size: tuple[int, int]) -> None:
    wm = marker(position=position, scale=scale)
    f = frame(*size)
    wm.apply(f)
    x0, y0, x1, y1 = wm.box(*size)
    assert 0 <= x0 <= x1 <= size[0] and 0 <= y0 <= y1 <= size[1]
    assert f.image.shape == (size[1], size[0], 3)


def test_odd_characters_in_ids_do_not_break_the_stamp() -> None:
    """Hershey fonts are ASCII-only: each other character is drawn as '?', so none silently vanishes."""
    odd = Watermarker(WatermarkConfig(), serial="BC-0001", officer_id="Müller/Ø 7")
    asked = Watermarker(WatermarkConfig(), serial="BC-0001", officer_id="M?ller/? 7")
    dropped = Watermarker(WatermarkConfig(), serial="BC-0001", officer_id="Mller/ 7")
    a, b, c = frame(), frame(), frame()
    odd.apply(a)
    asked.apply(b)
    dropped.apply(c)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.tobytes() != c.image.tobytes()  # not dropped: the '?' are there
    x0, y0, x1, y1 = odd.box(640, 360)
    assert (a.image[y0:y1, x0:x1].min(axis=2) >= 240).sum() > 100  # the text was drawn


def test_stamp_at_720p_follows_each_frame() -> None:
    """At 720p the same stamper, reused frame after frame, draws each frame's own time (-s prints the
    cost per frame; deliberately no timing assertion on a shared machine)."""
    wm = marker()
    base = frame(1280, 720)
    seen = set()
    t = time.perf_counter()
    for i in range(50):
        f = Frame(image=base.image.copy(), index=i, mono_ns=0, utc_ns=UTC + i * 33_333_333)
        wm.apply(f)
        x0, y0, x1, y1 = wm.box(1280, 720)
        seen.add(f.image[y0:y1, x0:x1].tobytes())
    print(f"watermark 1280x720: {(time.perf_counter() - t) * 20:.3f} ms/frame")
    assert len(seen) == 50  # 33 ms apart: every frame shows a different time
