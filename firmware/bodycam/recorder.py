"""A recording's lifecycle: pre-roll in, consecutive sealed segments out, no frame lost between them.

Fed packets by the pipeline's encode thread; ``start``/``stop``/``marker`` may come from any thread,
so one lock guards the open segment. Segment and recording boundaries fall on keyframes only; a
recording longer than ``max_recording_seconds`` rolls into a new recording at the same keyframe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import __version__
from .audio.encoder import AudioPacket
from .clock import Clock
from .config import Config
from .encode.packet import EncodedPacket
from .errors import StorageFullError
from .evidence.chain import ChainState
from .evidence.manifest import SegmentFacts, SegmentPaths, stamp
from .evidence.sealer import Sealer
from .layout import DataLayout
from .recovery import seal_partial
from .segments.journal import SegmentJournal
from .segments.writer import AudioFormat, SegmentWriter, ticks
from .storage.emergency import EmergencySpace
from .storage.reserve import StorageGuard

EventSink = Callable[..., None]
HOLD_NS = 300_000_000      # sound silent this long (in video time): pictures stop waiting for it (a stalled mic)
MAX_LAG_NS = 2_000_000_000  # and pictures never wait longer than this for sound that keeps coming late


def _noop(event: str, **data: Any) -> None:
    pass


@dataclass
class _Open:
    paths: SegmentPaths
    writer: SegmentWriter
    journal: SegmentJournal
    facts: SegmentFacts


class Recorder:
    def __init__(self, *, config: Config, layout: DataLayout, sealer: Sealer, chain: ChainState,
                 storage: StorageGuard, clock: Clock, codec: str,
                 clock_status: Callable[[], dict[str, Any]] = lambda: {"status": "unknown"},
                 camera_info: Callable[[], dict[str, Any]] | None = None,
                 events: EventSink = _noop, audio: AudioFormat | None = None,
                 audio_info: Callable[[], dict[str, Any]] = dict) -> None:
        """``audio``: the sound track's format (None: video only); ``audio_info()``: the manifest's
        description of it and the source's counters (xruns, drift), sampled at opening and sealing."""
        self.cfg = config
        self.layout = layout
        self.sealer = sealer
        self.chain = chain
        self.storage = storage
        self.clock = clock
        self._codec = codec
        self._clock_status = clock_status
        self._camera_info = camera_info  # sampled at opening (journal) and again at sealing (counters)
        self._events = events
        self._lock = threading.RLock()
        self._open: _Open | None = None
        self.recording_id: str | None = None
        self._trigger: dict[str, Any] | None = None
        self._segment_index = 0
        self._recording_first_ns = 0
        self._pre_event_s: float | None = None
        self._pre_event_capped = False
        self._pending_markers: list[dict[str, Any]] = []
        self.segments_sealed = 0
        self.fault: str | None = None
        self.emergency = EmergencySpace(layout.emergency_space)
        self.emergency.ensure()
        self._unsealed: SegmentPaths | None = None  # a segment even the emergency space could not seal
        # Sound: packets of both tracks meet here from two threads and are written in capture order,
        # so a packet always lands in the segment that covers its time (see _drain).
        self.audio = audio
        self._audio_info = audio_info
        self.pre_event_audio = config.audio.pre_event_audio
        self._vq: deque[EncodedPacket] = deque()
        self._aq: deque[AudioPacket] = deque()
        self._video_seen_ns = 0
        self._audio_seen_ns = 0
        self._audio_alive_ns = 0                     # video time at which sound last arrived
        self._audio_from_ns = 0                      # sound before this instant is not recorded (policy)
        self._sound_starts: dict[str, Any] | None = None

    @property
    def recording(self) -> bool:
        return self.recording_id is not None

    def segment_budget(self) -> int:
        """Bytes a segment may take at the configured bitrate, with headroom for complex scenes."""
        rec = self.cfg.recording
        return int(self.cfg.encoder.bitrate_kbps * 1000 / 8 * rec.segment_seconds * 2)

    # --- commands -------------------------------------------------------------------------------

    def start(self, *, trigger_mono_ns: int, trigger_utc_ns: int, preroll: list[EncodedPacket],
              preroll_capped: bool = False, preroll_audio: list[AudioPacket] | None = None) -> str:
        """Begin a recording with the buffered packets (already cut to start on a keyframe).

        ``preroll_capped``: the pre-event buffer's byte cap had cut it below the configured seconds.
        ``preroll_audio``: buffered sound, used only with ``pre_event_audio``; without it, sound starts
        at the trigger and the buffered seconds are video only.
        """
        with self._lock:
            if self.recording_id is not None:
                return self.recording_id
            self.storage.check(self.segment_budget())
            self.fault = None
            self.emergency.ensure()  # given back after a full card; held again now that there is room
            self._begin(trigger_mono_ns, trigger_utc_ns, reason="button")
            self._pre_event_capped = preroll_capped
            if preroll:
                self._pre_event_s = max(0.0, (trigger_mono_ns - preroll[0].mono_ns) / 1e9)
            self._audio_from_ns = 0 if self.pre_event_audio else trigger_mono_ns
            self._sound_starts = None
            self._vq.clear()  # anything left from a recording a fault ended is not this recording's
            self._aq.clear()
            for a in preroll_audio or []:
                self._queue_audio(a)
            for p in preroll:
                self._queue_video(p)
            self._drain()
            return self.recording_id  # type: ignore[return-value]

    def _begin(self, trigger_mono_ns: int, trigger_utc_ns: int, *, reason: str) -> None:
        seq_hint = self.chain.head.next_sequence
        self.recording_id = f"{self.cfg.device.serial}-{seq_hint:010d}"
        self._trigger = {**stamp(trigger_utc_ns, trigger_mono_ns), "reason": reason}
        self._segment_index = 0
        self._recording_first_ns = 0
        self._pre_event_s = None
        self._sound_starts = None
        self._events("record_start", recording_id=self.recording_id, trigger=self._trigger)

    def write(self, packet: EncodedPacket) -> None:
        with self._lock:
            if self.recording_id is not None:
                self._queue_video(packet)
                self._drain()

    def write_audio(self, packet: AudioPacket) -> None:
        with self._lock:
            if self.recording_id is not None and self.audio is not None:
                self._queue_audio(packet)
                self._drain()

    # --- interleaving ---------------------------------------------------------------------------

    def _queue_video(self, packet: EncodedPacket) -> None:
        self._vq.append(packet)
        self._video_seen_ns = max(self._video_seen_ns, packet.mono_ns)

    def _queue_audio(self, packet: AudioPacket) -> None:
        self._aq.append(packet)
        self._audio_seen_ns = max(self._audio_seen_ns, packet.end_ns)
        self._audio_alive_ns = self._video_seen_ns

    def _drain(self, *, force: bool = False) -> None:
        """Write held packets in capture order, as far as both tracks have arrived.

        Sound comes out of its encoder later than pictures (a 20 ms read plus two AAC frames), so a
        picture waits here until sound up to its time has arrived: a segment boundary (a keyframe)
        then splits the two tracks at the same instant, and no sound packet reaches a segment after
        it closed. Without sound (``audio`` None) nothing waits; sound that stops arriving is waited
        for ``HOLD_NS`` of video time, sound that keeps arriving late at most ``MAX_LAG_NS``; ``force``
        (stop) writes everything.
        """
        vq, aq = self._vq, self._aq
        while vq or aq:
            v = vq[0] if vq else None
            a = aq[0] if aq else None
            if v is not None and (a is None or v.mono_ns <= a.mono_ns):
                if (a is None and not force and self.audio is not None and self._audio_seen_ns < v.mono_ns
                        and self._video_seen_ns - self._audio_alive_ns < HOLD_NS
                        and self._video_seen_ns - v.mono_ns < MAX_LAG_NS):
                    return
                vq.popleft()
                self._write(v)
            else:
                assert a is not None
                if (v is None and not force and self._video_seen_ns < a.mono_ns
                        and self._audio_seen_ns - a.end_ns < HOLD_NS):
                    return
                aq.popleft()
                self._write_audio(a)

    def _write_audio(self, packet: AudioPacket) -> None:
        o = self._open
        if self.fault or o is None or packet.mono_ns < self._audio_from_ns:
            return  # before the recording's first frame, or pre-event sound the policy leaves out
        try:
            if not o.writer.write_audio(packet):
                return
        except OSError as e:
            self._storage_fault(f"write failed: {e.strerror or e}", write_failed=True)
            return
        if o.writer.audio_packets == 1:
            first = stamp(packet.utc_ns, packet.mono_ns) | {"pts": o.writer.audio_pts(packet)}
            if self._sound_starts is None:
                self._sound_starts = stamp(packet.utc_ns, packet.mono_ns)
            o.facts.audio = {**(o.facts.audio or {}), "first_sample": first, "sound_starts": self._sound_starts}
            o.journal.append({"audio_first": first, "sound_starts": self._sound_starts})

    def marker(self, *, mono_ns: int, utc_ns: int, note: str = "") -> bool:
        with self._lock:
            if self.recording_id is None:
                return False
            m = {**stamp(utc_ns, mono_ns), "note": note}
            if self._open is not None:
                self._attach_marker(m)
            else:
                self._pending_markers.append(m)
            self._events("marker", recording_id=self.recording_id, **m)
            return True

    def stop(self, reason: str = "button") -> None:
        with self._lock:
            if self.recording_id is None:
                return
            rid = self.recording_id
            self._drain(force=True)
            self._close_segment(end_reason=reason)
            self.recording_id = None
            self._trigger = None
            self._events("record_stop", recording_id=rid, reason=reason)

    # --- packet path ----------------------------------------------------------------------------

    def _write(self, packet: EncodedPacket) -> None:
        if self.fault:
            return
        o = self._open
        try:
            if o is None:
                if not packet.keyframe:
                    return  # waiting for the keyframe forced at the trigger
                self._recording_first_ns = packet.mono_ns
                self._open_segment(packet)
            elif packet.keyframe:
                if packet.mono_ns - self._recording_first_ns >= self.cfg.recording.max_recording_seconds * 1e9:
                    self._roll_recording(packet)
                elif packet.mono_ns - o.writer.first.mono_ns >= self._segment_ns():  # type: ignore[union-attr]
                    # Checked once, before closing: a full disk ends the recording here, sealed with
                    # end_reason "storage_full". Not again on opening the next one: a segment sealed with
                    # null ("continues") must be followed by one, or it would look like a deleted tail.
                    self.storage.check(self.segment_budget())
                    self._close_segment(end_reason=None)
                    self._open_segment(packet, checked=True)
        except StorageFullError as e:
            self._storage_fault(str(e))
            return
        o = self._open
        assert o is not None
        try:
            o.writer.write(packet)
        except OSError as e:
            self._storage_fault(f"write failed: {e.strerror or e}", write_failed=True)
            return
        if o.writer.frame_count % max(1, round(self.cfg.camera.fps)) == 0:
            try:
                self.storage.check()
            except StorageFullError as e:
                self._storage_fault(str(e))

    def _segment_ns(self) -> float:
        # half a frame of slack so a keyframe due "exactly" at the boundary opens the next segment
        return self.cfg.recording.segment_seconds * 1e9 - 0.5e9 / self.cfg.camera.fps

    def _roll_recording(self, packet: EncodedPacket) -> None:
        """Axon-style 4 h limit: close this recording and continue in a new one at the same keyframe."""
        old = self.recording_id
        self._close_segment(end_reason="max_length")
        self._events("record_stop", recording_id=old, reason="max_length")
        self._begin(packet.mono_ns, packet.utc_ns, reason="continuation")
        self._recording_first_ns = packet.mono_ns
        self._open_segment(packet)

    def _open_segment(self, first: EncodedPacket, *, checked: bool = False) -> None:
        if not checked:
            self.storage.check(self.segment_budget())
        seq = self.chain.peek_sequence()  # journal first: recovery must see every reserved number
        paths = SegmentPaths(self.layout.segments, seq)
        enc, cam = self.cfg.encoder, self.cfg.camera
        facts = SegmentFacts(
            device_serial=self.cfg.device.serial, key_id=self.sealer.signer.key_id,
            officer_id=self.cfg.device.officer_id, recording_id=self.recording_id or "",
            segment_index=self._segment_index, sequence=seq, codec="h264", width=cam.width,
            height=cam.height, fps=cam.fps, bitrate_kbps=enc.bitrate_kbps, trigger=dict(self._trigger or {}),
            firmware_version=__version__, clock=self._clock_status(),
            pre_event_configured_seconds=self.cfg.buffer.pre_event_seconds if self._segment_index == 0 else None,
            pre_event_seconds=self._pre_event_s if self._segment_index == 0 else None,
            pre_event_capped=self._pre_event_capped if self._segment_index == 0 else None,
            first_frame=stamp(first.utc_ns, first.mono_ns) | {"pts": 0},
            encoder=self._codec,
            camera=self._camera_info() if self._camera_info else None,
            audio=self._audio_facts(),
        )
        journal = SegmentJournal(paths.journal, header=facts.to_journal())
        if self.chain.reserve_sequence() != seq:
            raise RuntimeError("sequence reserved twice: only the writer thread may open segments")
        writer = SegmentWriter(paths.partial, width=cam.width, height=cam.height, fps=cam.fps,
                               fragment_seconds=self.cfg.recording.fragment_seconds, audio=self.audio)
        self._open = _Open(paths, writer, journal, facts)
        self._segment_index += 1
        for m in self._pending_markers:
            self._attach_marker(m)
        self._pending_markers.clear()

    def _audio_facts(self) -> dict[str, Any] | None:
        """The manifest's ``audio`` object as far as it is known when a segment opens (docs/format.md)."""
        if self.audio is None:
            return None
        return {**self._audio_info(), "pre_event_audio": self.pre_event_audio,
                "sound_starts": self._sound_starts, "sample_count": 0, "first_sample": None, "last_sample": None}

    def _attach_marker(self, marker: dict[str, Any]) -> None:
        o = self._open
        assert o is not None
        o.facts.markers.append(marker)
        o.journal.append({"marker": marker})

    def _close_segment(self, *, end_reason: str | None) -> None:
        o = self._open
        if o is None:
            return
        self._open = None
        sha, size = o.writer.close()
        o.journal.close()
        f = o.facts
        last = o.writer.last
        assert last is not None and o.writer.first is not None
        f.last_frame = stamp(last.utc_ns, last.mono_ns) | {"pts": ticks(last.mono_ns - o.writer.first.mono_ns)}
        f.frame_count = o.writer.frame_count
        f.dropped_frames = o.writer.dropped_frames
        f.end_reason = end_reason
        w = o.writer
        if f.audio is not None:
            f.audio.update(self._audio_info())
            f.audio["sample_count"] = w.audio_samples
            f.audio["sound_starts"] = self._sound_starts
            if w.audio_last is not None:
                f.audio["last_sample"] = (stamp(w.audio_last.utc_ns, w.audio_last.mono_ns)
                                          | {"pts": w.audio_pts(w.audio_last)})
        if self._camera_info:
            f.camera = self._camera_info()
        self.sealer.seal(o.paths, f, media_sha256=sha, media_size=size)
        self.segments_sealed += 1
        self._events("segment_sealed", recording_id=f.recording_id, sequence=f.sequence,
                     segment_index=f.segment_index, frames=f.frame_count, bytes=size, media_sha256=sha)

    def _storage_fault(self, message: str, *, write_failed: bool = False) -> None:
        """Keep what is written (sealed), refuse more; never delete anything to make room.

        Stopped by the reserve check, the segment closes normally. When a write itself failed (the
        card filled under us), the muxer's view of the file is no longer the file: the emergency space
        is given back, and the segment is sealed from what is on disk, cut back to its last complete
        fragment, as crash recovery would (``recovered: true``). The audit entry that follows fits in
        the same freed space. Only if even that fails is the segment left for recovery at next start.
        """
        self.fault = message
        rid = self.recording_id
        if not write_failed:
            try:
                self._close_segment(end_reason="storage_full")
            except OSError:
                write_failed = True
        if write_failed and self._open is not None:
            o, self._open = self._open, None
            self.emergency.release()
            o.writer.abandon()
            o.journal.close()
            self._seal_from_disk(o.paths)
        elif write_failed:
            self.emergency.release()
        self.recording_id = None
        self._trigger = None
        self._events("storage_full", recording_id=rid, message=message)

    def _seal_from_disk(self, paths: SegmentPaths) -> None:
        try:
            seal_partial(paths, sealer=self.sealer, serial=self.cfg.device.serial, end_reason="storage_full")
        except OSError:
            self._unsealed = paths  # tried again at close; else `bodycam recover` / the next start seal it
            return
        self._unsealed = None
        self.segments_sealed += 1

    def close(self, reason: str = "shutdown") -> None:
        self.stop(reason)
        with self._lock:
            if self._unsealed is not None:  # space may have come back since the card filled
                self._seal_from_disk(self._unsealed)
