"""The threaded pipeline end to end: a real file source through watermark, encoder, writer, sealer."""

from __future__ import annotations

from fractions import Fraction

import av
from bodycam.capture.file_source import FileSource
from bodycam.clock import SystemClock
from bodycam.device import RecordingDevice
from bodycam.evidence.signer import generate_key
from bodycam.verify import verify_paths
from framecode import coded_frame, decode_indices
from rig import small_config


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
    src = FileSource(clip, 160, 120, 20, loop=False, clock=SystemClock())
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
