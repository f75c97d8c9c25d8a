"""A recorded video played back as if it were the camera, for demos and repeatable end-to-end runs.

The file stands for the world in front of the lens, so it moves on in real time: one decoded frame per
capture slot at the configured fps (the file's own frame rate is ignored), and when the consumer falls
behind, the frames of the skipped slots are decoded and thrown away, just as a real camera would have
lost them. Frames are converted to BGR at the configured size (stretched if the file's differs).
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
        for _ in range(slot - self._last_slot - 1):  # slots the consumer missed: their frames are gone
            if self._next_frame() is None:
                return None
        raw = self._next_frame()
        if raw is None:
            return None
        self._last_slot = slot
        try:
            image = raw.to_ndarray(format="bgr24", width=self.width, height=self.height)
        except (av.FFmpegError, ValueError) as e:
            raise SourceError(f"cannot convert a frame of {self.path}: {e} ({_FIX})") from None
        return Frame(image=np.ascontiguousarray(image), index=slot, mono_ns=mono_ns,
                     utc_ns=utc_at(self._clock, mono_ns))

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
        self._close()
        self._open_container()
        frame = self._decode_next()
        if frame is None:
            raise SourceError(f"video file {self.path} has no decodable video frames ({_FIX})")
        return frame
