"""Which H.264 encoder this machine has: the Pi 4's hardware block, or libx264 in software.

``[encoder] codec = "auto"`` asks the kernel, not the board name: the Pi 4's H.264 encoder is the
``bcm2835-codec`` V4L2 memory-to-memory driver, whose encode node appears in sysfs as
``/sys/class/video4linux/videoN/name`` = ``bcm2835-codec-encode``. A Pi 5 has no H.264 block (and no
such node), a Pi 4 with the codec overlay disabled has none either; both get libx264. The root is a
parameter so tests can hand in a fake sysfs tree.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import av

HARDWARE_CODEC = "h264_v4l2m2m"
SOFTWARE_CODEC = "libx264"
CODEC_CHOICES = ("auto", SOFTWARE_CODEC, HARDWARE_CODEC)
BCM2835_ENCODER = "bcm2835-codec-encode"


@dataclass(frozen=True)
class Platform:
    """What ``auto`` looks at: a filesystem root (for /sys) and the encoders this PyAV build has."""

    root: Path = Path("/")
    codecs: Collection[str] = field(default_factory=lambda: av.codecs_available)

    def hardware_encoder_device(self) -> Path | None:
        """/dev/videoN of the bcm2835-codec H.264 encoder, or None if this machine has none."""
        for node in sorted((self.root / "sys/class/video4linux").glob("video*")):
            try:
                name = (node / "name").read_text().strip()
            except OSError:
                continue
            if name == BCM2835_ENCODER:
                return Path("/dev") / node.name
        return None


@dataclass(frozen=True)
class CodecChoice:
    codec: str
    hardware: bool
    why: str

    @property
    def description(self) -> str:
        return f"{self.codec} ({'hardware' if self.hardware else 'software'}: {self.why})"


def choose_codec(configured: str, platform: Platform | None = None) -> CodecChoice:
    """The encoder to open for ``[encoder] codec``.

    A named codec is taken as is, even one this PyAV build lacks: opening it then fails with a
    one-line EncoderError, which the daemon shows as its fault (rather than not starting at all).
    """
    platform = platform or Platform()
    if configured == "auto":
        device = platform.hardware_encoder_device()
        if device is None:
            return CodecChoice(SOFTWARE_CODEC, False, "no bcm2835-codec H.264 encoder on this machine")
        if HARDWARE_CODEC not in platform.codecs:
            return CodecChoice(SOFTWARE_CODEC, False,
                               f"{device} is a hardware encoder, but this PyAV build has no {HARDWARE_CODEC}")
        return CodecChoice(HARDWARE_CODEC, True, f"bcm2835-codec at {device}")
    return CodecChoice(configured, configured == HARDWARE_CODEC, "configured")
