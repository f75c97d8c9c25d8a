"""What every audio source delivers, and the base every microphone shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..lifecycle import OpenOnce


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


class AudioSourceBase(OpenOnce):
    """A microphone's lifecycle (lifecycle.py), and its xrun count.

    ``read`` does not hold the lifecycle's lock: a read waits for a whole chunk, and ``close`` must not
    wait for it; a read that a close overtakes returns ``None``.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate <= 0 or channels not in (1, 2):
            raise ValueError(f"bad audio format {sample_rate} Hz x {channels} channels")
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
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

    def _read(self) -> AudioChunk | None:
        raise NotImplementedError

    def read(self) -> AudioChunk | None:
        if not self._readable():
            return None
        chunk = self._read()
        return None if self._closed else chunk
