"""H.264 encoding: frames in, timestamped packets out.

``make_encoder(config)`` is the one way in: it resolves ``[encoder] codec`` ("auto" picks the Pi 4's
hardware encoder when the machine has one, libx264 otherwise) and returns an H264Encoder that opens
at ``start()``; ``open_encoder`` also opens it, for tools that encode at once (the benchmark).
"""

from __future__ import annotations

from ..config import Config
from .h264 import H264Encoder, open_context
from .platform import Platform, choose_codec

__all__ = ["H264Encoder", "Platform", "make_encoder", "open_encoder"]


def make_encoder(config: Config, *, platform: Platform | None = None) -> H264Encoder:
    """The encoder ``config`` asks for on this machine, not yet opened (``start()`` opens it).

    ``description`` says which one and whether it is hardware, e.g. "h264_v4l2m2m (hardware)";
    ``reason`` why it was chosen.
    """
    cam, enc = config.camera, config.encoder
    choice = choose_codec(enc.codec, platform)
    return H264Encoder(width=cam.width, height=cam.height, fps=cam.fps, bitrate_kbps=enc.bitrate_kbps,
                       gop_seconds=enc.gop_seconds, codec=choice.codec, hardware=choice.hardware, reason=choice.why,
                       preset=enc.preset, threads=enc.threads, open_context=open_context)


def open_encoder(config: Config, *, platform: Platform | None = None) -> H264Encoder:
    """``make_encoder``, opened: raises EncoderError now if the encoder cannot run here."""
    encoder = make_encoder(config, platform=platform)
    encoder.start()
    return encoder
