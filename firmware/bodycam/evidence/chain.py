"""The device-wide sequence counter and hash chain, persisted so they survive reboots.

A sequence number is reserved (and the reservation made durable) before any file uses it, so a
crash can skip a number but never hand one out twice. The chain head is the SHA-256 of the last
sealed manifest; ``reconcile`` re-derives it from disk in case a crash hit between sealing a
segment and saving the head.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import EvidenceError
from ..storage.durable import atomic_write

GENESIS = "0" * 64


@dataclass
class ChainHead:
    next_sequence: int = 1
    last_sequence: int = 0
    last_manifest_sha256: str = GENESIS


class ChainState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.head = self._load()

    def _load(self) -> ChainHead:
        try:
            raw = json.loads(self.path.read_text())
            return ChainHead(**raw)
        except FileNotFoundError:
            return ChainHead()
        except (ValueError, TypeError) as e:
            raise EvidenceError(f"chain state {self.path} is unreadable ({e}); restore it from backup, "
                                "or move it aside to let 'bodycam run' rebuild it from the manifests") from None

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, (json.dumps(asdict(self.head), indent=2) + "\n").encode())

    def reserve_sequence(self) -> int:
        with self._lock:
            seq = self.head.next_sequence
            self.head.next_sequence = seq + 1
            self._save()
            return seq

    def peek_sequence(self) -> int:
        return self.head.next_sequence

    def ensure_next_above(self, sequence: int) -> None:
        """Never hand out ``sequence`` again (it was used by a journal that recovery found)."""
        with self._lock:
            if self.head.next_sequence <= sequence:
                self.head.next_sequence = sequence + 1
                self._save()

    def previous_hash(self) -> str:
        with self._lock:
            return self.head.last_manifest_sha256

    def sealed(self, sequence: int, manifest_bytes: bytes) -> None:
        with self._lock:
            if sequence <= self.head.last_sequence:
                raise EvidenceError(f"sequence {sequence} sealed after {self.head.last_sequence}: chain out of order")
            self.head.last_sequence = sequence
            self.head.last_manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
            self.head.next_sequence = max(self.head.next_sequence, sequence + 1)
            self._save()

    def reconcile(self, sealed_manifests: dict[int, Path]) -> None:
        """Adopt sealed manifests newer than the saved head (a crash between seal and save)."""
        for seq in sorted(s for s in sealed_manifests if s > self.head.last_sequence):
            self.sealed(seq, sealed_manifests[seq].read_bytes())
