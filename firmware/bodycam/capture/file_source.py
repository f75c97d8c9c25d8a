"""A recorded video played back as if it were the camera, for demos and repeatable end-to-end runs.

The file stands for the world in front of the lens, so it moves on in real time by its own clock: each
capture slot (at the configured fps) shows the file frame whose timestamp is the latest at or before
the slot's time into the file. A 25 fps clip captured at 30 fps repeats one frame in six; a 60 fps
clip drops every other one; either way it plays at its true speed, not 1.2x or 0.5x. When the consumer
falls behind, the frames of the skipped time are decoded and thrown away, just as a real camera would
have lost them. Frames are converted to BGR at the configured size (stretched if the file's differs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from ..clock import Clock
from ..errors import SourceError
from .frame import Frame
from .pacing import Pacer, SourceBase, utc_at

_FIX = "set [camera] file to a video file FFmpeg can decode"


class FileSource(SourceBase):
    """Plays a video file through a :class:`Pacer`; ``loop`` restarts it, else ``read`` ends with None."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, *, loop: bool = True,
                 clock: Clock) -> None:
        super().__init__(width, height, fps)
        self.path = Path(path)
        self.loop = bool(loop)
        self._clock = clock
        self._pacer = Pacer(self.fps, clock)
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._pending: av.VideoFrame | None = None
        self._frames_this_pass = 0
        self._last_slot = -1
        self._ended = False
        self._current: tuple[av.VideoFrame, float] | None = None    # on screen, with its playback time
        self._lookahead: tuple[av.VideoFrame, float] | None = None  # decoded, not yet due
        self._frame_seconds = 1 / self.fps  # one frame's duration in the file (set from its rate)
        self._pass_start: float | None = None  # first timestamp of the current pass
        self._offset = 0.0    # playback time at which the current pass started
        self._pass_end = 0.0  # playback time at which the frames decoded so far end
        self.passes = 0  # completed plays of the whole file, for logs and tests

    # -- lifecycle -------------------------------------------------------------------------------

    def _open(self) -> None:
        if not self.path.is_file():
            what = "is not a file" if self.path.exists() else "not found"
            raise SourceError(f"video file {what}: {self.path} ({_FIX})")
        self._open_container()
        # Decode one frame now, so a file FFmpeg opens but cannot decode fails at start, not mid-run.
        first = self._decode_next()
        if first is None:
            raise SourceError(f"video file {self.path} has no decodable video frames ({_FIX})")
        self._pending = first

    def _read(self) -> Frame | None:
        if self._ended:
            return None
        slot, mono_ns = self._pacer.wait_next()
        raw = self._frame_at(slot / self.fps)
        if raw is None:
            self._ended = True
            return None
        self._last_slot = slot
        try:
            image = raw.to_ndarray(format="bgr24", width=self.width, height=self.height)
        except (av.FFmpegError, ValueError) as e:
            raise SourceError(f"cannot convert a frame of {self.path}: {e} ({_FIX})") from None
        return Frame(image=np.ascontiguousarray(image), index=slot, mono_ns=mono_ns,
                     utc_ns=utc_at(self._clock, mono_ns))

    def _frame_at(self, t: float) -> av.VideoFrame | None:
        """The frame on screen ``t`` seconds into playback (loops included); None once a file that does
        not loop has ended (its last frame has been shown for its own duration)."""
        while True:
            if self._lookahead is None:
                self._lookahead = self._timed(self._next_frame())
            nxt = self._lookahead
            if nxt is not None and (self._current is None or nxt[1] <= t + 1e-9):
                self._current, self._lookahead = nxt, None
                continue
            if self._current is None:
                return None
            if nxt is None and t >= self._current[1] + self._frame_seconds:
                return None
            return self._current[0]

    def _timed(self, frame: av.VideoFrame | None) -> tuple[av.VideoFrame, float] | None:
        """``frame`` with its playback time: its timestamp from the start of its pass, plus the passes
        played before it."""
        if frame is None:
            return None
        own = frame.time if frame.time is not None else (self._frames_this_pass - 1) * self._frame_seconds
        if self._pass_start is None:
            self._pass_start = own
        t = self._offset + own - self._pass_start
        self._pass_end = max(self._pass_end, t + self._frame_seconds)
        return frame, t

    def _close(self) -> None:
        self._frames = None
        self._pending = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def camera_info(self) -> dict[str, object]:
        """A replayed file: its frames are stamped with the capture slots they are played in."""
        return {"source": "file", "file": self.path.name, "frame_times": {"method": "paced"}}

    def _dropped(self) -> int:
        return self._pacer.dropped

    # -- decoding --------------------------------------------------------------------------------

    def _open_container(self) -> None:
        try:
            container = av.open(str(self.path), mode="r")
        except (av.FFmpegError, OSError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise SourceError(f"cannot open video file {self.path}: {reason} ({_FIX})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"video file {self.path} has no video stream ({_FIX})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        if rate:
            self._frame_seconds = float(1 / rate)
        self._container = container
        self._frames = container.decode(stream)
        self._frames_this_pass = 0

    def _decode_next(self) -> av.VideoFrame | None:
        assert self._frames is not None
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise SourceError(f"cannot decode video file {self.path}: {reason} ({_FIX})") from None
        self._frames_this_pass += 1
        return frame

    def _next_frame(self) -> av.VideoFrame | None:
        """The next frame of the file, starting it again at the end when looping; None at the end."""
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        frame = self._decode_next()
        if frame is not None:
            return frame
        self.passes += 1
        if not self.loop:
            self._ended = True
            return None
        # Reopening is the one restart that works for every container (seeking to 0 does not).
        self._offset, self._pass_start = self._pass_end, None
        self._close()
        self._open_container()
        frame = self._decode_next()
        if frame is None:
            raise SourceError(f"video file {self.path} has no decodable video frames ({_FIX})")
        return frame
