"""A stand-in for FFmpeg's ``h264_v4l2m2m`` on a Pi 4 (bcm2835-codec), made of real libx264 encoding.

It reproduces what matters to our muxing and timing, read from FFmpeg's libavcodec/v4l2_m2m_enc.c
(FFmpeg 7/8; https://github.com/FFmpeg/FFmpeg/blob/master/libavcodec/v4l2_m2m_enc.c):

- ``v4l2_encode_init`` never sets ``avctx->extradata`` and nothing reads AV_CODEC_FLAG_GLOBAL_HEADER:
  the context has **no extradata**.
- ``v4l2_prepare_encoder`` sets V4L2_CID_MPEG_VIDEO_HEADER_MODE = HEADER_MODE_SEPARATE: the driver
  returns SPS/PPS as **a buffer of their own**, before the first picture; FFmpeg hands it out as a
  packet like any other (its timestamp is not a frame's: 0 here, and it may carry the key flag).
- Nothing sets V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER (picamera2's H264Encoder does; the driver's
  default is off): SPS/PPS come **once**, later IDRs have none.
- AV_CODEC_CAP_DELAY and a queue of V4L2 buffers: packets come out **later** than their frames
  (one call late here), and the rest at flush.
- ``v4l2_send_frame`` maps ``pict_type == AV_PICTURE_TYPE_I`` to V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME:
  a forced keyframe works as with libx264 (``forced-idr``).

Not from that source but allowed by it: a V4L2 encoder may skip a frame (V4L2 has
V4L2_CID_MPEG_VIDEO_FRAME_SKIP_MODE; we have not seen bcm2835-codec do it). ``skip`` makes the fake
eat those frames, to test that packets are matched to frames by pts and not by order.

libx264 is opened with a global header, which makes x264 keep SPS/PPS out of its packets
(``b_repeat_headers = 0``): the fake sends them once, split off, and then hides the extradata.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import av
from bodycam.encode.h264 import open_context


class V4l2m2mLikeContext:
    """An opened encoder context with h264_v4l2m2m's packet behaviour (see the module docstring)."""

    def __init__(self, real: av.CodecContext, *, header_pts: int = 0, delay: int = 1,
                 skip: frozenset[int] = frozenset()) -> None:
        self._real = real
        self._headers: bytes | None = bytes(real.extradata or b"")
        assert self._headers, "libx264 with a global header has SPS/PPS in extradata"
        self._header_pts = header_pts
        self._delay = delay
        self._queue: deque[av.Packet] = deque()
        self._skip = skip
        self._sent = 0

    @property
    def extradata(self) -> bytes | None:
        return None

    def encode(self, frame: av.VideoFrame | None = None) -> list[av.Packet]:
        out: list[av.Packet] = []
        if self._headers is not None and frame is not None:
            header = av.Packet(self._headers)
            header.pts = header.dts = self._header_pts
            header.is_keyframe = True
            out.append(header)
            self._headers = None
        if frame is not None:
            self._sent += 1
            if self._sent - 1 in self._skip:
                return out
        self._queue.extend(self._real.encode(frame))
        keep = self._delay if frame is not None else 0
        while len(self._queue) > keep:
            out.append(self._queue.popleft())
        return out


def open_v4l2m2m_like(*, skip: frozenset[int] = frozenset(), **settings: Any) -> V4l2m2mLikeContext:
    """Same signature as ``bodycam.encode.h264.open_context``; ``codec`` is ignored (libx264 inside).

    ``skip``: 0-based numbers of frames the fake accepts and never encodes.
    """
    settings = {**settings, "codec": "libx264"}
    return V4l2m2mLikeContext(open_context(**settings), skip=skip)
