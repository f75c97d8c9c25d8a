"""Crash recovery: after a kill -9 or power cut, seal whatever the open segment holds.

Complete fragments are kept, a torn tail fragment is cut off, the manifest says ``recovered: true``
and the chain continues. Runs at every start before anything new is recorded.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import av

from . import __version__
from .evidence.chain import ChainState
from .evidence.manifest import TIME_BASE, SegmentFacts, SegmentPaths, stamp
from .evidence.sealer import Sealer
from .segments.journal import read_journal
from .segments.mp4_boxes import complete_length

_SEQ = re.compile(r"^seg-(\d{10})\.")


@dataclass(frozen=True)
class Recovered:
    sequence: int
    frames: int
    bytes_kept: int
    bytes_cut: int
    recording_id: str


def sealed_manifests(segments: Path) -> dict[int, Path]:
    out = {}
    for p in segments.glob("seg-*.json"):
        m = _SEQ.match(p.name)
        if m and (segments / f"seg-{m.group(1)}.mp4").exists():
            out[int(m.group(1))] = p
    return out


def _open_sequences(segments: Path) -> list[int]:
    seqs = set()
    for p in list(segments.glob("seg-*.journal")) + list(segments.glob("seg-*.mp4.partial")):
        m = _SEQ.match(p.name)
        if m:
            seqs.add(int(m.group(1)))
    return sorted(seqs)


@dataclass
class _Probe:
    frames: int = 0
    last_pts: int = 0
    audio_samples: int = 0
    audio_first_pts: int | None = None
    audio_last_pts: int = 0


def _probe(path: Path) -> _Probe:
    """Frame count and last pts (and the sound track's samples and pts) of what is left of the media."""
    out = _Probe()
    if path.stat().st_size == 0:
        return out
    try:
        with av.open(str(path)) as c:
            streams = [c.streams.video[0]] + list(c.streams.audio[:1])
            for packet in c.demux(streams):
                if packet.pts is None:
                    continue
                if packet.stream.type == "video":
                    out.frames += 1
                    out.last_pts = max(out.last_pts, packet.pts)
                elif packet.size:
                    out.audio_samples += packet.duration or 1024
                    if out.audio_first_pts is None:
                        out.audio_first_pts = packet.pts
                    out.audio_last_pts = max(out.audio_last_pts, packet.pts)
    except (av.error.FFmpegError, IndexError):
        return _Probe()
    return out


def _recover_audio(facts: SegmentFacts, entries: list[dict], probe: _Probe) -> None:
    """The sound track's counts from the kept media; its first stamp from the journal, the rest by pts."""
    if facts.audio is None:
        return
    a = facts.audio
    first = next((e["audio_first"] for e in entries if "audio_first" in e), None)
    starts = next((e["sound_starts"] for e in entries if e.get("sound_starts")), None)
    a["sound_starts"] = starts or a.get("sound_starts")
    a["sample_count"] = probe.audio_samples
    if not probe.audio_samples or first is None or probe.audio_first_pts is None:
        a["first_sample"] = a["last_sample"] = None
        return
    a["first_sample"] = first
    rate = a.get("sample_rate") or 48000
    offset_ns = (probe.audio_last_pts - probe.audio_first_pts) * 1_000_000_000 // rate
    a["last_sample"] = stamp(first["utc_ns"] + offset_ns, first["monotonic_ns"] + offset_ns) | {
        "pts": probe.audio_last_pts}


def _fallback_facts(seq: int, serial: str, key_id: str) -> SegmentFacts:
    """For a segment whose journal header never reached the disk: say honestly what is unknown."""
    return SegmentFacts(device_serial=serial, key_id=key_id, officer_id="unknown",
                        recording_id=f"{serial}-unknown-{seq:010d}", segment_index=-1, sequence=seq,
                        codec="h264", width=0, height=0, fps=0.0, bitrate_kbps=0, trigger={},
                        firmware_version=__version__, clock={"status": "unknown"})


def recover(segments: Path, *, chain: ChainState, sealer: Sealer, serial: str) -> list[Recovered]:
    chain.reconcile(sealed_manifests(segments))
    results = []
    for seq in _open_sequences(segments):
        paths = SegmentPaths(segments, seq)
        chain.ensure_next_above(seq)  # it may have crashed between journal and reservation
        if paths.media.exists():  # sealed already; only the journal was left behind
            paths.journal.unlink(missing_ok=True)
            continue
        results.append(seal_partial(paths, sealer=sealer, serial=serial, end_reason="crash"))
    return results


def seal_partial(paths: SegmentPaths, *, sealer: Sealer, serial: str, end_reason: str) -> Recovered:
    """Seal an open segment from what is on disk: its complete fragments, its journal's facts.

    After a power cut (``end_reason`` "crash", at start) and when a write failed mid-recording (a full
    card: "storage_full"), when the muxer's own idea of the file can no longer be trusted.
    """
    seq = paths.sequence
    header, entries = read_journal(paths.journal) if paths.journal.exists() else (None, [])
    facts = SegmentFacts.from_journal(header) if header else _fallback_facts(seq, serial, sealer.signer.key_id)
    if not paths.partial.exists():
        paths.partial.touch(mode=0o644)
    original = paths.partial.stat().st_size
    keep = complete_length(paths.partial)
    with open(paths.partial, "r+b") as f:
        f.truncate(keep)
        os.fsync(f.fileno())
    probe = _probe(paths.partial)
    frames, last_pts = probe.frames, probe.last_pts
    facts.markers = [e["marker"] for e in entries if "marker" in e]
    _recover_audio(facts, entries, probe)
    facts.recovered = True
    facts.end_reason = end_reason
    facts.frame_count = frames
    first = facts.first_frame
    if frames and first:
        offset_ns = last_pts * 1_000_000_000 // TIME_BASE
        facts.last_frame = stamp(first["utc_ns"] + offset_ns, first["monotonic_ns"] + offset_ns)
        facts.last_frame["pts"] = last_pts
        interval = TIME_BASE / facts.fps if facts.fps else 0
        expected = round(last_pts / interval) + 1 if interval else frames
        facts.dropped_frames = max(0, expected - frames)
    else:
        facts.first_frame = facts.last_frame = None
    data = paths.partial.read_bytes()
    sealer.seal(paths, facts, media_sha256=hashlib.sha256(data).hexdigest(), media_size=len(data))
    return Recovered(seq, frames, keep, original - keep, facts.recording_id)
