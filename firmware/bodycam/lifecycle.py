"""The lifecycle every capture source shares, camera or microphone (gpiozero-style): start once, close
idempotently, from any thread, while another thread reads.

A device held open by a forgotten source would keep the next daemon from opening it, so ``close`` is
safe to call more than once, runs on ``with`` exit and, as a last resort, on garbage collection.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self


class OpenOnce:
    """Subclasses implement ``_open`` and ``_close`` (which must cope with a half-done ``_open``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Open the device; calling it again is harmless, after ``close`` it is an error."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{type(self).__name__} is closed; make a new one")
            if not self._started:
                try:
                    self._open()
                except BaseException:
                    self._close()  # whatever _open got as far as opening
                    raise
                self._started = True

    def _readable(self) -> bool:
        """Whether a read may go ahead: False once closed; an error before ``start``."""
        if self._closed:
            return False
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.read() before start()")
        return True

    def close(self) -> None:
        """Release the device or file; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._started:
                self._close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not keep a device busy
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing sensible left to do
            pass
