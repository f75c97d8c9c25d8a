"""The threaded pipeline end to end: a real file source through watermark, encoder, writer, sealer."""

from __future__ import annotations

import json
from fractions import Fraction

import av
from bodycam.capture.file_source import FileSource
from bodycam.capture.frame import Frame
from bodycam.clock import ManualClock
from bodycam.device import RecordingDevice
from bodycam.encode.h264 import H264Encoder
from bodycam.evidence.signer import generate_key
from bodycam.verify import verify_paths
from framecode import coded_frame, decode_indices
from rig import small_config
from v4l2fake import open_v4l2m2m_like


def write_clip(path, n: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(20))
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(coded_frame(i), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_file_source_through_the_threaded_pipeline_loses_no_frame(tmp_path) -> None:
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 50)
    cfg = small_config(tmp_path / "data", camera={"fps": 20, "source": "file", "file": str(clip), "loop": False},
                       watermark={"enabled": False}, buffer={"pre_event_seconds": 0})
    generate_key(cfg.key_path)
    # paced on a ManualClock: a loaded machine cannot make the pacer drop slots (that is test_sources'),
    # and the frames arrive as one burst, which the threads must still pass on whole
    src = FileSource(clip, 160, 120, 20, loop=False, clock=ManualClock())
    with RecordingDevice(cfg, source=src, offline=True) as dev:
        dev.pipeline.start_recording()
        dev.start()
        assert dev.pipeline.source_ended.wait(30)
        dev.close("end_of_run")
        stats = dev.pipeline.snapshot()
    segments = sorted((tmp_path / "data" / "segments").glob("seg-*.mp4"))
    codes = [c for seg in segments for c, _, _ in decode_indices(seg)]
    assert codes == list(range(50)) and stats.dropped == 0
    report = verify_paths([tmp_path / "data"])
    assert report.ok, report.render_text()


def test_the_threaded_pipeline_with_a_v4l2m2m_like_encoder_loses_no_frame_and_no_header(tmp_path) -> None:
    """The Pi 4 encoder's ways (tests/v4l2fake.py): headers once, on their own, packets a frame late."""
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 50)
    cfg = small_config(tmp_path / "data", camera={"fps": 20, "source": "file", "file": str(clip), "loop": False},
                       watermark={"enabled": False}, buffer={"pre_event_seconds": 0},
                       recording={"segment_seconds": 1})
    generate_key(cfg.key_path)
    src = FileSource(clip, 160, 120, 20, loop=False, clock=ManualClock())
    enc = H264Encoder(width=160, height=120, fps=20, bitrate_kbps=300, gop_seconds=0.5, codec="h264_v4l2m2m",
                      open_context=open_v4l2m2m_like)
    with RecordingDevice(cfg, source=src, offline=True, encoder=enc) as dev:
        dev.pipeline.start_recording()
        dev.start()
        assert dev.pipeline.source_ended.wait(30)
        dev.close("end_of_run")
    segments = sorted((tmp_path / "data" / "segments").glob("seg-*.mp4"))
    assert len(segments) >= 2
    per_segment = [decode_indices(seg) for seg in segments]   # each file decodes on its own
    assert all(d[0][2] for d in per_segment)
    assert [c for d in per_segment for c, _, _ in d] == list(range(50)), "the late last frame came at flush"
    assert json.loads(segments[1].with_suffix(".json").read_text())["video"]["encoder"] == "h264_v4l2m2m"
    report = verify_paths([tmp_path / "data"])
    assert report.ok, report.render_text()


class _ScriptedSource:
    """Frames on a ManualClock, 1/fps apart; calls ``before(index)`` before capturing a frame."""

    width, height, fps, dropped = 160, 120, 10.0, 0

    def __init__(self, clock: ManualClock, n: int, before=lambda index: None) -> None:
        self.clock, self.n, self.before, self.i = clock, n, before, 0

    def start(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self.i == self.n:
            return None
        self.clock.advance(0.5 / self.fps)
        self.before(self.i)
        self.clock.advance(0.5 / self.fps)
        f = Frame(coded_frame(self.i), self.i, self.clock.monotonic_ns(), self.clock.utc_ns())
        self.i += 1
        return f

    def close(self) -> None:
        pass


def test_a_stop_keeps_every_frame_captured_before_it_even_if_the_encoder_returns_it_late(tmp_path) -> None:
    cfg = small_config(tmp_path / "data", watermark={"enabled": False}, buffer={"pre_event_seconds": 0})
    generate_key(cfg.key_path)
    clock = ManualClock()
    holder: dict = {}

    def before(index: int) -> None:   # the button lands half a frame after frame 24 was captured
        if index == 25:
            holder["dev"].pipeline.stop_recording("button", wait=False)

    enc = H264Encoder(width=160, height=120, fps=10, bitrate_kbps=300, gop_seconds=1.0, codec="h264_v4l2m2m",
                      open_context=open_v4l2m2m_like)
    with RecordingDevice(cfg, clock=clock, source=_ScriptedSource(clock, 40, before), offline=True,
                         encoder=enc) as dev:
        holder["dev"] = dev
        dev.pipeline.start_recording()
        dev.start()
        assert dev.pipeline.source_ended.wait(30)
        dev.close("end_of_run")
    segments = sorted((tmp_path / "data" / "segments").glob("seg-*.mp4"))
    codes = [c for seg in segments for c, _, _ in decode_indices(seg)]
    assert codes == list(range(25)), "frames 0-24 were captured before the stop; 25 on were not"
    last = json.loads(segments[-1].with_suffix(".json").read_text())
    assert last["end_reason"] == "button"
