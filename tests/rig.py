"""A synchronous recording rig: real encoder, buffer, recorder, sealer and chain on a ManualClock.

It replaces only the pipeline's threads (routing a packet is one if-statement), so tests can place
a trigger between two exact frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bodycam import config as configmod
from bodycam.audio.factory import open_audio
from bodycam.audio.synthetic import SyntheticAudioSource
from bodycam.capture.flash import draw_flash, flash_due
from bodycam.capture.frame import Frame
from bodycam.clock import ManualClock
from bodycam.encode.h264 import ContextOpener, H264Encoder, open_context
from bodycam.evidence.chain import ChainState
from bodycam.evidence.sealer import Sealer
from bodycam.evidence.signer import FileKeySigner, generate_key
from bodycam.layout import DataLayout
from bodycam.prebuffer import PreEventBuffer
from bodycam.recorder import Recorder
from bodycam.segments.writer import AudioFormat
from bodycam.storage.reserve import StorageGuard
from framecode import coded_frame


def small_config(data: Path, **tables: dict[str, Any]) -> configmod.Config:
    raw: dict[str, Any] = {
        "device": {"serial": "BC-TEST-0001", "officer_id": "PC-4711", "data_dir": str(data)},
        "camera": {"width": 160, "height": 120, "fps": 10},
        "encoder": {"bitrate_kbps": 300},
        "buffer": {"pre_event_seconds": 3},
        "recording": {"segment_seconds": 2},
        "storage": {"reserve_megabytes": 0},
    }
    for name, values in tables.items():
        raw.setdefault(name, {}).update(values)
    return configmod.from_dict(raw)


class Rig:
    def __init__(self, data: Path, *, free_bytes=None, codec: str = "libx264",
                 open_context: ContextOpener = open_context, **tables: dict[str, Any]) -> None:
        """``codec``/``open_context``: the encoder seam (tests/v4l2fake.py stands in for the Pi's)."""
        self.cfg = small_config(data, **tables)
        self.clock = ManualClock()
        self.layout = DataLayout(data)
        self.layout.create()
        if not self.cfg.key_path.exists():
            generate_key(self.cfg.key_path)
        self.signer = FileKeySigner.load(self.cfg.key_path)
        self.chain = ChainState(self.layout.chain)
        cam, enc = self.cfg.camera, self.cfg.encoder
        self.encoder = H264Encoder(width=cam.width, height=cam.height, fps=cam.fps,
                                   bitrate_kbps=enc.bitrate_kbps, gop_seconds=enc.gop_seconds,
                                   codec=codec, open_context=open_context)
        self.buffer = PreEventBuffer(seconds=self.cfg.buffer.pre_event_seconds, max_bytes=50_000_000)
        self.events: list[tuple[str, dict]] = []
        guard = StorageGuard(data, reserve_bytes=int(self.cfg.storage.reserve_megabytes * 1e6),
                             **({"free_bytes": free_bytes} if free_bytes else {}))
        self.recorder = Recorder(config=self.cfg, layout=self.layout,
                                 sealer=Sealer(signer=self.signer, chain=self.chain), chain=self.chain,
                                 storage=guard, clock=self.clock,
                                 codec=codec, events=lambda e, **d: self.events.append((e, d)))
        self.index = 0
        self.captured: dict[int, tuple[int, int]] = {}  # frame index -> (mono_ns, utc_ns)

    def frames(self, n: int) -> None:
        """Capture, encode and route n frames, 1/fps apart."""
        for _ in range(n):
            self.clock.advance(1 / self.cfg.camera.fps)
            f = Frame(coded_frame(self.index, self.cfg.camera.width, self.cfg.camera.height), self.index,
                      self.clock.monotonic_ns(), self.clock.utc_ns())
            self.captured[self.index] = (f.mono_ns, f.utc_ns)
            self.index += 1
            self._route(f)

    def _route(self, f: Frame) -> None:
        """Encode a frame; its packets go to the recording if one runs, else to the pre-event buffer."""
        for p in self.encoder.encode(f):
            if self.recorder.recording:
                self.recorder.write(p)
            else:
                self.buffer.push(p)

    def trigger(self) -> int:
        """Half a frame after the last frame, as a button press would land."""
        self.clock.advance(0.5 / self.cfg.camera.fps)
        t = self.clock.monotonic_ns()
        self.encoder.force_keyframe()
        self.recorder.start(trigger_mono_ns=t, trigger_utc_ns=self.clock.utc_ns(), preroll=self.buffer.take(t))
        return t

    def segments(self) -> list[Path]:
        return sorted(self.layout.segments.glob("seg-*.mp4"))


class AvRig(Rig):
    """The rig with sound: the synthetic microphone (capture/flash.py clicks) on the rig's clock.

    Frames carry the sync lamp; after each frame, every audio chunk captured by then is pushed through
    the real drift corrector and AAC encoder and routed like the pipeline's audio thread does. The
    clock starts on a whole second, so flashes fall exactly on frames and clicks on the same instants.
    """

    def __init__(self, data: Path, *, drift_ppm: float = 0.0, pre_event_audio: bool = False,
                 **tables: dict[str, Any]) -> None:
        tables.setdefault("audio", {}).update({"pre_event_audio": pre_event_audio, "drift_ppm": drift_ppm})
        super().__init__(data, **tables)
        self.clock = ManualClock(monotonic_ns=10_000_000_000)
        self.recorder.clock = self.clock
        self.mic = SyntheticAudioSource(self.cfg.audio.sample_rate, 1, clock=self.clock,
                                        chunk_ms=self.cfg.audio.chunk_ms, drift_ppm=drift_ppm,
                                        sleep=lambda _s: None)
        self.mic.start()
        self.audio = open_audio(self.cfg, self.clock, self.mic)
        assert self.audio is not None
        enc = self.audio.encoder
        self.recorder.audio = AudioFormat(enc.codec_name, enc.rate, enc.channels, enc.extradata)
        self.recorder._audio_info = lambda: {**self.audio.describe(), **self.audio.counters()}
        self.audio_buffer: list = []

    def frames(self, n: int) -> None:
        fps = self.cfg.camera.fps
        for _ in range(n):
            self.clock.advance(1 / fps)
            t = self.clock.monotonic_ns()
            img = coded_frame(self.index % 13000, self.cfg.camera.width, self.cfg.camera.height)
            draw_flash(img, flash_due(t, fps))
            f = Frame(img, self.index, t, self.clock.utc_ns())
            self.captured[self.index] = (f.mono_ns, f.utc_ns)
            self.index += 1
            self._route(f)
            self.pump_audio()

    def pump_audio(self) -> None:
        while self.mic.ready():
            for p in self.audio.process(self.mic.read()):
                if self.recorder.recording:
                    self.recorder.write_audio(p)
                elif self.cfg.audio.pre_event_audio:
                    self.audio_buffer.append(p)

    def trigger(self) -> int:
        self.clock.advance(0.5 / self.cfg.camera.fps)
        t = self.clock.monotonic_ns()
        self.encoder.force_keyframe()
        audio, self.audio_buffer = self.audio_buffer, []
        self.recorder.start(trigger_mono_ns=t, trigger_utc_ns=self.clock.utc_ns(), preroll=self.buffer.take(t),
                            preroll_audio=audio)
        return t
