"""Progress for long steps: numbered step lines, and a byte counter that redraws in place on a TTY.

Off a TTY (CI logs, pipes) the byte counter prints a line every 10 % instead of carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .tools import human


class Progress:
    def __init__(self, total_steps: int = 0, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.total = total_steps
        self.step_no = 0
        self.quiet = quiet
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, text: str) -> None:
        self.step_no += 1
        prefix = f"[{self.step_no}/{self.total}] " if self.total else ""
        self._print(f"{prefix}{text}")

    def info(self, text: str) -> None:
        self._print(f"      {text}")

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)

    def bytes(self, label: str, total: int) -> ByteCounter:
        return ByteCounter(self, label, total)


class ByteCounter:
    """``with progress.bytes("writing", n) as c: c.add(len(chunk))``; prints rate and percentage."""

    def __init__(self, progress: Progress, label: str, total: int) -> None:
        self.p, self.label, self.total = progress, label, max(total, 1)
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def __enter__(self) -> ByteCounter:
        return self

    def add(self, n: int) -> None:
        self.done += n
        self._draw(final=False)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._draw(final=True)
        elif self.p._tty and not self.p.quiet:
            print(file=self.p.stream)

    def _draw(self, *, final: bool) -> None:
        if self.p.quiet:
            return
        now = time.monotonic()
        pct = min(100, int(self.done * 100 / self.total))
        rate = self.done / max(now - self._start, 1e-6)
        text = f"      {self.label}: {pct:3d}%  {human(self.done)} of {human(self.total)}  {human(rate)}/s"
        if self.p._tty:
            if final or now - self._last_draw >= 0.2:
                self._last_draw = now
                print("\r" + text, end="\n" if final else "", file=self.p.stream, flush=True)
        elif pct // 10 > self._last_decile or (final and self._last_decile < 10):
            self._last_decile = pct // 10
            print(text, file=self.p.stream, flush=True)
