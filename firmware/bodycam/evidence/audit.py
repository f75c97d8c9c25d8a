"""The device's signed audit log: "was the camera on?" gets a signed, chained answer.

One JSON line per entry: ``{"entry": "<entry JSON text>", "sig": "<base64 DER ECDSA>"}``. The
signature covers the entry text's UTF-8 bytes exactly, and each entry names the SHA-256 of the
previous entry text, so removing, reordering or editing any line breaks the chain. Each line is
fsynced before ``append`` returns. Format: docs/format.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from ..clock import Clock, iso_utc
from .chain import GENESIS
from .signer import Signer

AUDIT_FORMAT = "bodycam.audit/1"


class AuditLog:
    def __init__(self, path: Path, *, signer: Signer, clock: Clock, boot_id: str) -> None:
        self.path = path
        self.signer = signer
        self.clock = clock
        self.boot_id = boot_id
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = self._cut_torn_tail()
        self._seq, self._prev = self._tail_state()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _cut_torn_tail(self) -> int:
        """A power cut mid-line leaves a line with no newline: cut it so the log stays parseable."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
        return len(data) - keep

    def _tail_state(self) -> tuple[int, str]:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return 0, GENESIS
        for line in reversed(lines):
            try:
                text = json.loads(line)["entry"]
                return json.loads(text)["seq"], hashlib.sha256(text.encode()).hexdigest()
            except (ValueError, KeyError, TypeError):
                continue
        return 0, GENESIS

    @property
    def last_sequence(self) -> int:
        return self._seq

    def append(self, event: str, **data: Any) -> int:
        with self._lock:
            utc_ns, mono_ns = self.clock.utc_ns(), self.clock.monotonic_ns()
            entry = {"format": AUDIT_FORMAT, "seq": self._seq + 1, "prev": self._prev, "event": event,
                     "utc": iso_utc(utc_ns), "utc_ns": utc_ns, "monotonic_ns": mono_ns,
                     "boot_id": self.boot_id, "key_id": self.signer.key_id, "data": data}
            text = json.dumps(entry, separators=(",", ":"), sort_keys=True)
            sig = base64.b64encode(self.signer.sign(text.encode())).decode()
            line = json.dumps({"entry": text, "sig": sig}, separators=(",", ":")) + "\n"
            self._write_whole(line.encode())
            self._seq += 1
            self._prev = hashlib.sha256(text.encode()).hexdigest()
            return self._seq

    def _write_whole(self, data: bytes) -> None:
        """The line goes on disk whole or not at all: a full disk (ENOSPC after part of it) must not
        leave a torn line that hides the entries after it; the caller learns of the failure."""
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass  # the torn tail is cut at the next start (_cut_torn_tail)
            raise

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
