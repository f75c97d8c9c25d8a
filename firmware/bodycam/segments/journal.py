"""The open segment's journal: what a manifest needs that the torn media itself cannot tell.

Written beside the partial media and fsynced at each step, so crash recovery can sign a truthful
manifest (recording id, trigger, first-frame clocks, markers) for footage that never closed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class SegmentJournal:
    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.append({"header": header})

    def append(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, other entries); a torn last line is ignored."""
    header = None
    entries: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "header" in entry and header is None:
            header = entry["header"]
        else:
            entries.append(entry)
    return header, entries
