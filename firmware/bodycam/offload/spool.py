"""What is waiting to go to the backend, in what order, and what the device remembers about it.

Pending = sealed segments (``seg-N.mp4`` + ``.json`` + ``.sig``; the rename to ``.mp4`` is the seal)
that have no verified receipt in ``<data_dir>/receipts/`` and were not refused by the backend. Order:
recordings with a marker first (an officer flagged something: it should reach the evidence system
first, as on Motorola docks), then oldest first; within a recording, in sequence order.

State that must survive a power cut lives in ``state/offload.json`` (written atomically): the tus
location of each upload in flight (to resume from the server's offset rather than start again) and
the segments the backend rejected (kept on the device, not retried every dock). Receipts are files,
fsynced before any segment is freed, so "acknowledged" never depends on memory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evidence.manifest import SegmentPaths
from ..layout import DataLayout
from ..storage.durable import atomic_write, fsync_dir

_SEALED = re.compile(r"^seg-(\d{10})\.mp4$")
_RECEIPT = re.compile(r"^seg-(\d{10})\.receipt\.json$")
STATE_VERSION = 1


@dataclass(frozen=True)
class SpoolItem:
    """One sealed segment to upload."""

    sequence: int
    paths: SegmentPaths
    size: int
    recording_id: str
    marked: bool          # its recording holds at least one marker

    @property
    def name(self) -> str:
        return self.paths.media.name


@dataclass(frozen=True)
class AuditBatch:
    """Complete audit-log lines with ``first_seq`` .. ``last_seq``, as uploaded (backend-api.md 5)."""

    data: bytes
    first_seq: int
    last_seq: int


class Spool:
    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout
        self.receipts = layout.root / "receipts"
        self.state_path = layout.state / "offload.json"

    # --- segments ---------------------------------------------------------------------------------

    def sealed(self) -> list[int]:
        """Sequences whose media, manifest and signature are all on disk."""
        try:
            names = os.listdir(self.layout.segments)
        except FileNotFoundError:
            return []
        seqs = []
        for n in names:
            m = _SEALED.match(n)
            if m:
                p = SegmentPaths(self.layout.segments, int(m.group(1)))
                if p.manifest.exists() and p.signature.exists():
                    seqs.append(p.sequence)
        return sorted(seqs)

    def acknowledged(self) -> set[int]:
        try:
            return {int(m.group(1)) for n in os.listdir(self.receipts) if (m := _RECEIPT.match(n))}
        except FileNotFoundError:
            return set()

    def pending(self) -> list[SpoolItem]:
        """Everything to upload, in upload order (markers first, then oldest)."""
        skip = self.acknowledged() | set(self.rejected())
        items = [self._item(s) for s in self.sealed() if s not in skip]
        marked = {i.recording_id for i in items if i.marked and i.recording_id}
        first_seq: dict[str, int] = {}
        for i in items:
            first_seq.setdefault(i.recording_id or f"?{i.sequence}", i.sequence)
        return sorted(items, key=lambda i: (i.recording_id not in marked,
                                            first_seq[i.recording_id or f"?{i.sequence}"], i.sequence))

    def count_pending(self) -> int:
        """Cheap count for status (no manifest is read)."""
        skip = self.acknowledged() | set(self.rejected())
        return sum(1 for s in self.sealed() if s not in skip)

    def _item(self, seq: int) -> SpoolItem:
        paths = SegmentPaths(self.layout.segments, seq)
        try:
            doc = json.loads(paths.manifest.read_bytes())
            recording = str(doc.get("recording_id") or "")
            marked = bool(doc.get("markers"))
        except (OSError, ValueError, AttributeError):
            recording, marked = "", False  # uploaded anyway: the backend rejects and flags it
        return SpoolItem(seq, paths, paths.media.stat().st_size, recording, marked)

    def leftovers(self) -> list[int]:
        """Acknowledged segments still on disk (kept by config, or freeing cut short by a power cut)."""
        acked = self.acknowledged()
        stems = set()
        try:
            for n in os.listdir(self.layout.segments):
                m = re.match(r"^seg-(\d{10})\.(mp4|json|sig)$", n)
                if m and int(m.group(1)) in acked:
                    stems.add(int(m.group(1)))
        except FileNotFoundError:
            pass
        return sorted(stems)

    def free(self, seq: int) -> int:
        """Delete a segment's files, media first (verify accepts a manifest whose media was offloaded).

        Returns the bytes freed. Only called after its receipt is on disk.
        """
        paths = SegmentPaths(self.layout.segments, seq)
        freed = 0
        for p in (paths.media, paths.signature, paths.manifest):
            try:
                freed += p.stat().st_size
                p.unlink()
            except FileNotFoundError:
                pass
        fsync_dir(self.layout.segments)
        return freed

    # --- receipts ---------------------------------------------------------------------------------

    def receipt_path(self, seq: int) -> Path:
        return self.receipts / f"seg-{seq:010d}.receipt.json"

    def save_receipt(self, name: str, body: dict[str, Any]) -> Path:
        """Durable before return: a receipt is the device's proof that freeing was right."""
        self.receipts.mkdir(parents=True, exist_ok=True)
        path = self.receipts / name
        atomic_write(path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode(), mode=0o444)
        return path

    # --- state ------------------------------------------------------------------------------------

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_bytes())
            if not isinstance(state, dict):
                raise ValueError
        except FileNotFoundError:
            state = {}
        except ValueError:
            state = {}          # unreadable: lose only resume positions; the backend dedupes re-uploads
        state.setdefault("version", STATE_VERSION)
        state.setdefault("uploads", {})
        state.setdefault("rejected", {})
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.state_path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())

    def rejected(self) -> dict[int, dict[str, Any]]:
        return {int(k): v for k, v in self.load_state()["rejected"].items()}

    # --- audit log --------------------------------------------------------------------------------

    def audit_batch(self, after_seq: int, max_bytes: int) -> AuditBatch | None:
        """Complete lines with seq > ``after_seq``, at most ``max_bytes`` (at least one line)."""
        try:
            data = self.layout.audit_log.read_bytes()
        except FileNotFoundError:
            return None
        out: list[bytes] = []
        size, first, last = 0, 0, 0
        for line in data[:data.rfind(b"\n") + 1].splitlines(keepends=True):
            try:
                seq = json.loads(json.loads(line)["entry"])["seq"]
            except (ValueError, KeyError, TypeError):
                continue        # a damaged line: verify reports it; the backend would refuse the batch
            if not isinstance(seq, int) or seq <= after_seq:
                continue
            if out and size + len(line) > max_bytes:
                break
            if out and seq != last + 1:
                break           # a hole in the local log: send up to it, the rest in the next batch
            out.append(line)
            size += len(line)
            first, last = first or seq, seq
        return AuditBatch(b"".join(out), first, last) if out else None
