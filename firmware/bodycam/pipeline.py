"""The capture pipeline: source -> watermark -> encoder -> (pre-event buffer | writer) -> recorder.

Three threads, so that no stage waits on a slower one:
- capture: paces the source and burns the watermark; if the encoder is behind, the frame is
  dropped and counted (never silently), rather than growing a queue of raw frames.
- encode: turns frames into packets and routes them: into the RAM pre-event buffer while
  buffering, or onto the writer queue while recording.
- writer: muxes, fsyncs and seals segments. Disk stalls (an SD card fsync can take 100 ms) only
  grow a queue of small compressed packets; capture and encoding carry on.
Commands (start, stop, marker) go through the writer queue too, so they stay ordered with packets.
With sound, a fourth thread (audio) reads the microphone, corrects its drift and encodes it; its
packets take the same routes (writer queue, or a pre-event sound buffer if ``pre_event_audio``), and
the recorder interleaves the two tracks by capture time.

A stop goes by capture time, not by when packets arrive: frames captured before the stop but still
in the frame queue or inside the encoder (the Pi 4's hardware encoder returns each packet a frame or
more late) belong to the recording, so the stop reaches the writer once they are all out.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .audio.chain import AudioChain
from .audio.encoder import AudioPacket
from .capture.frame import CameraSource, Frame
from .clock import Clock
from .encode.h264 import H264Encoder
from .encode.packet import EncodedPacket
from .errors import BodycamError
from .prebuffer import PreEventBuffer
from .recorder import Recorder
from .watermark import Watermarker

_END = object()
STALL_SECONDS = 0.5  # no frame for this long: a pending stop stops waiting for the encoder
AUDIO_STALL_NS = 500_000_000  # no sound this long after a stop: the stop stops waiting for it


@dataclass
class _Start:
    trigger_mono_ns: int
    trigger_utc_ns: int
    preroll: list[EncodedPacket]
    capped: bool = False
    preroll_audio: list[AudioPacket] = field(default_factory=list)


@dataclass
class _Stop:
    reason: str
    done: threading.Event


@dataclass
class _PendingStop:
    mono_ns: int
    stop: _Stop
    video_done: bool = False  # every frame captured before the stop has come out of the encoder


@dataclass
class _Marker:
    mono_ns: int
    utc_ns: int
    note: str


@dataclass
class PipelineStats:
    frames_captured: int = 0
    frames_encoded: int = 0
    dropped_by_source: int = 0
    dropped_in_queue: int = 0
    writer_queue: int = 0
    buffer_seconds: float = 0.0
    buffer_bytes: int = 0
    audio_level_dbfs: float | None = None  # None: no microphone
    audio_recording: bool = False           # sound is going into the recording now
    audio_xruns: int = 0
    audio_missing_samples: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_by_source + self.dropped_in_queue


class Pipeline:
    def __init__(self, *, source: CameraSource, encoder: H264Encoder, watermarker: Watermarker | None,
                 prebuffer: PreEventBuffer, recorder: Recorder, clock: Clock,
                 on_fault: Callable[[str], None] = lambda msg: None,
                 frame_queue: int = 3, drop_when_behind: bool = True,
                 audio: AudioChain | None = None, pre_event_audio: bool = False,
                 on_audio_fault: Callable[[str], None] = lambda msg: None) -> None:
        """``audio``: the microphone chain (None: video only); ``pre_event_audio``: the buffer keeps sound.

        ``on_audio_fault``: a microphone that fails is reported there (audit log, status), but it is not
        a camera fault: video goes on recording without sound.
        """
        self._on_audio_fault = on_audio_fault
        self.audio_fault: str | None = None
        self.source = source
        self.audio = audio
        self.pre_event_audio = pre_event_audio
        self._audio_buf: deque[AudioPacket] = deque()
        self._audio_until_ns = 0          # end of the newest sound packet routed
        self._sound_from_ns: int | None = None  # recording: sound from this instant goes to the writer
        self.encoder = encoder
        self.watermarker = watermarker
        self.prebuffer = prebuffer
        self.recorder = recorder
        self.clock = clock
        self._on_fault = on_fault
        self.source_ended = threading.Event()  # a non-looping file (or a replay) ran out
        self._frames: queue.Queue[Any] = queue.Queue(maxsize=frame_queue)
        self._drop_when_behind = drop_when_behind  # False: offline input (a file, a benchmark) waits instead
        self._writes: queue.Queue[Any] = queue.Queue()
        self._route = threading.Lock()
        self._recording = False
        self._pending_stop: _PendingStop | None = None  # stopped; packets of earlier frames still due
        self._last_fed_ns: int | None = None            # capture time of the last frame encoded
        self._buffering = True
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._encode_thread: threading.Thread | None = None
        self.stats = PipelineStats()
        self.last_frame: Frame | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.encoder.start()  # first: an encoder that cannot open here fails before the camera runs
        self.source.start()
        loops = [("capture", self._capture_loop), ("encode", self._encode_loop), ("writer", self._writer_loop)]
        if self.audio is not None:
            self.audio.source.start()
            loops.append(("audio", self._audio_loop))
        for name, target in loops:
            t = threading.Thread(target=target, name=f"bodycam-{name}", daemon=True)
            t.start()
            self._threads.append(t)
            if name == "encode":
                self._encode_thread = t

    def close(self, reason: str = "shutdown") -> None:
        """Stop capture, seal the open segment, join the threads. Idempotent."""
        if self._stopping.is_set():
            return
        self.stop_recording(reason, wait=False)
        self._stopping.set()
        if self.audio is not None:
            self.audio.source.close()  # wakes the audio thread
        for t in self._threads:
            t.join(timeout=30)
        self.source.close()
        self.encoder.close()
        if self.audio is not None:
            self.audio.close()

    # --- commands -----------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._recording

    def set_buffering(self, enabled: bool) -> None:
        """Docked cameras do not buffer (as on real cameras); the buffer is emptied."""
        with self._route:
            self._buffering = enabled
            if not enabled:
                self.prebuffer.clear()
                self._audio_buf.clear()

    def start_recording(self) -> tuple[int, int]:
        """Returns at once: the pre-roll is handed to the writer, which muxes it in the background."""
        mono, utc = self.clock.monotonic_ns(), self.clock.utc_ns()
        with self._route:
            if self._recording:
                return mono, utc
            self._settle_stop(force=True)  # restarted at once: frames still due go to the new one
            capped = self.prebuffer.capped
            preroll = self.prebuffer.take(mono)
            audio = list(self._audio_buf) if self.pre_event_audio else []
            self._audio_buf.clear()
            self._sound_from_ns = 0 if self.pre_event_audio else mono
            self.encoder.force_keyframe()
            self._recording = True
            self._writes.put(_Start(mono, utc, preroll, capped, audio))
        return mono, utc

    def stop_recording(self, reason: str = "button", *, wait: bool = True, timeout: float = 30.0) -> None:
        """Frames captured until now are recorded; ``wait``: until the writer has sealed the segment."""
        mono = self.clock.monotonic_ns()
        with self._route:
            if not self._recording:
                return
            self._recording = False
            done = threading.Event()
            self._pending_stop = _PendingStop(mono, _Stop(reason, done))
            if self._encode_thread is None or not self._encode_thread.is_alive():
                self._settle_stop(force=True)  # no encode thread to settle it
        if wait:
            done.wait(timeout)

    def marker(self, note: str = "") -> None:
        self._writes.put(_Marker(self.clock.monotonic_ns(), self.clock.utc_ns(), note))

    def snapshot(self) -> PipelineStats:
        s = self.stats
        s.dropped_by_source = self.source.dropped
        s.writer_queue = self._writes.qsize()
        s.buffer_seconds = self.prebuffer.duration_s()
        s.buffer_bytes = self.prebuffer.nbytes
        if self.audio is not None:
            a = self.audio.stats
            s.audio_level_dbfs = a.level_dbfs if a.chunks else None
            s.audio_xruns, s.audio_missing_samples = a.xruns, a.missing_samples
            s.audio_recording = self._recording and self._sound_from_ns is not None and (
                self._audio_until_ns >= self._sound_from_ns)
        return s

    # --- threads ------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                frame = self.source.read()
                if frame is None:
                    self.source_ended.set()
                    break
                if self.watermarker is not None:
                    self.watermarker.apply(frame)
                self.stats.frames_captured += 1
                self.last_frame = frame
                try:
                    self._frames.put(frame, block=not self._drop_when_behind)
                except queue.Full:
                    self.stats.dropped_in_queue += 1
        except BodycamError as e:
            self._on_fault(str(e))
        finally:
            self._frames.put(_END)

    def _encode_loop(self) -> None:
        try:
            while True:
                try:
                    frame = self._frames.get(timeout=STALL_SECONDS)
                except queue.Empty:  # no frame for a while: do not hold a stop for packets that may never come
                    with self._route:
                        self._settle_stop(force=True)
                    continue
                if frame is _END:
                    packets = self.encoder.flush()
                    for p in packets:
                        self._route_packet(p)
                    break
                packets = self.encoder.encode(frame)
                with self._route:
                    self._last_fed_ns = frame.mono_ns
                for p in packets:
                    self._route_packet(p)
                with self._route:
                    self._settle_stop(force=False)
                self.stats.frames_encoded += 1
        except Exception as e:  # noqa: BLE001 - an encoder that dies mid-stream is a fault, not a silent stop
            self._fault(f"encoder {self.encoder.codec_name} failed: {e}")
        finally:
            with self._route:
                self._settle_stop(force=True)
            self._writes.put(_END)

    def _route_packet(self, packet: EncodedPacket) -> None:
        with self._route:
            stop = self._pending_stop
            if self._recording or (stop is not None and packet.mono_ns <= stop.mono_ns):
                self._writes.put(packet)
            elif self._buffering:
                self.prebuffer.push(packet)

    def _settle_stop(self, *, force: bool) -> None:
        """Hand a pending stop to the writer once no frame captured before it can still come out.

        Called under ``_route``. Frames are encoded in capture order, so that is when a later frame
        has gone into the encoder and the encoder holds none from before the stop.
        """
        stop = self._pending_stop
        if stop is None:
            return
        if not force:
            if not stop.video_done:
                if self._last_fed_ns is None or self._last_fed_ns <= stop.mono_ns:
                    return
                oldest = self.encoder.oldest_pending_ns()
                if oldest is not None and oldest <= stop.mono_ns:
                    return
                stop.video_done = True
            if not self._audio_done(stop.mono_ns):
                return
        self._pending_stop = None
        self._writes.put(stop.stop)

    def _audio_done(self, stop_ns: int) -> bool:
        """Sound up to the stop has been routed (or there is none, or the microphone has gone quiet)."""
        if self.audio is None or self._audio_until_ns >= stop_ns:
            return True
        return self.clock.monotonic_ns() - stop_ns > AUDIO_STALL_NS

    def _audio_loop(self) -> None:
        """Microphone -> drift correction -> encoder -> route; a failing microphone never stops video."""
        chain = self.audio
        assert chain is not None
        try:
            while not self._stopping.is_set():
                chunk = chain.source.read()
                if chunk is None:
                    break
                for p in chain.process(chunk):
                    self._route_audio(p)
        except Exception as e:  # noqa: BLE001 - reported (audit log, status), video carries on
            self.audio_fault = f"audio source {chain.source_kind} failed: {e}"
            self._on_audio_fault(self.audio_fault)

    def _route_audio(self, packet: AudioPacket) -> None:
        with self._route:
            stop = self._pending_stop
            if self._recording or (stop is not None and packet.mono_ns < stop.mono_ns):
                self._writes.put(packet)
            elif self._buffering and self.pre_event_audio:
                buf = self._audio_buf
                buf.append(packet)
                horizon = packet.mono_ns - int((self.prebuffer.duration_s() + 1.0) * 1e9)
                while buf and buf[0].mono_ns < horizon:
                    buf.popleft()
            self._audio_until_ns = packet.end_ns
            if stop is not None and stop.video_done:
                self._settle_stop(force=False)

    def _writer_loop(self) -> None:
        rec = self.recorder
        while True:
            item = self._writes.get()
            try:
                if item is _END:
                    rec.stop("shutdown")
                    return
                if isinstance(item, EncodedPacket):
                    rec.write(item)
                elif isinstance(item, AudioPacket):
                    rec.write_audio(item)
                elif isinstance(item, _Start):
                    rec.start(trigger_mono_ns=item.trigger_mono_ns, trigger_utc_ns=item.trigger_utc_ns,
                              preroll=item.preroll, preroll_capped=item.capped, preroll_audio=item.preroll_audio)
                elif isinstance(item, _Stop):
                    rec.stop(item.reason)
                    item.done.set()
                elif isinstance(item, _Marker):
                    rec.marker(mono_ns=item.mono_ns, utc_ns=item.utc_ns, note=item.note)
            except BodycamError as e:
                self._fault(str(e))
            if rec.fault and self._recording:
                self._fault(rec.fault)

    def _fault(self, message: str) -> None:
        with self._route:
            self._recording = False
        self._on_fault(message)
