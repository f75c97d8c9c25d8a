"""What every audio source delivers, and the lifecycle every source shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np


@dataclass(slots=True)
class AudioChunk:
    """A run of consecutive samples as the microphone delivered them.

    ``samples`` is float32, shape (n, channels), in [-1, 1], at the source's nominal rate (its clock may
    run fast or slow: the drift corrector deals with that). ``mono_ns`` is the source's best estimate
    of when the first sample was captured, on the injected clock's timeline. ``missing`` counts samples
    the device lost just before this chunk (an xrun), so the gap is filled and reported, never hidden.
    """

    samples: np.ndarray
    mono_ns: int
    missing: int = 0

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])


class AudioSource(Protocol):
    """A microphone: ``start``, ``read`` until ``None`` (end of a non-looping file), ``close``."""

    sample_rate: int
    channels: int

    def start(self) -> None: ...

    def read(self) -> AudioChunk | None: ...

    @property
    def xruns(self) -> int:
        """Times the device lost samples because its reader fell behind (overruns) or it dropped out."""
        ...

    @property
    def missing_samples(self) -> int:
        """Samples lost in those xruns, filled with silence so the timeline stays true."""
        ...

    def info(self) -> dict[str, Any]:
        """What the manifest's ``audio.source`` says about this source."""
        ...

    def close(self) -> None: ...


POLL_SECONDS = 0.005  # how often a paced source looks again at its clock while it waits


def wait_until(due_ns: int, clock: Any, sleep: Any, closed: Any) -> bool:
    """Sleep on ``clock`` until ``due_ns`` (the moment a paced source's next chunk is captured); False if
    ``closed()`` turns true first. Short sleeps, so a close or an injected clock's jump is seen soon."""
    while not closed():
        now = clock.monotonic_ns()
        if now >= due_ns:
            return True
        sleep(min(POLL_SECONDS, (due_ns - now) / 1e9))
    return False


class AudioSourceBase:
    """Start once, close idempotently (from any thread, while another reads), count xruns."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate <= 0 or channels not in (1, 2):
            raise ValueError(f"bad audio format {sample_rate} Hz x {channels} channels")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._xruns = 0
        self._missing = 0

    @property
    def xruns(self) -> int:
        return self._xruns

    @property
    def missing_samples(self) -> int:
        return self._missing

    def _xrun(self, missing: int) -> None:
        self._xruns += 1
        self._missing += max(0, missing)

    def info(self) -> dict[str, Any]:
        return {"kind": "unknown"}

    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> AudioChunk | None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{type(self).__name__} is closed; make a new one")
            if not self._started:
                try:
                    self._open()
                except BaseException:
                    self._close()
                    raise
                self._started = True

    def read(self) -> AudioChunk | None:
        if self._closed:
            return None
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.read() before start()")
        chunk = self._read()
        return None if self._closed else chunk

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._started:
                self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
