"""Picks the microphone named by ``[audio] source``; the only place that knows all of them."""

from __future__ import annotations

from ..clock import Clock
from ..config import Config
from ..errors import SourceError
from .chain import AudioChain
from .chunk import AudioSource
from .encoder import AudioEncoder


def open_audio_source(config: Config, clock: Clock) -> AudioSource | None:
    """Build (not start) the configured source; None for ``source = "none"``."""
    a = config.audio
    match a.source:
        case "none":
            return None
        case "synthetic":
            from .synthetic import SyntheticAudioSource
            return SyntheticAudioSource(a.sample_rate, a.channels, clock=clock, chunk_ms=a.chunk_ms,
                                        drift_ppm=a.drift_ppm)
        case "file":
            from .file_source import FileAudioSource
            return FileAudioSource(config.camera.file, a.sample_rate, a.channels, clock=clock,
                                   chunk_ms=a.chunk_ms, loop=config.camera.loop)
        case "alsa":
            from .alsa import AlsaSource
            return AlsaSource(a.device, a.sample_rate, a.channels, clock=clock, chunk_ms=a.chunk_ms)
        case other:
            raise SourceError(f"[audio] source = {other!r}: must be one of 'synthetic', 'file', 'alsa', 'none'")


def open_audio(config: Config, clock: Clock, source: AudioSource | None = None) -> AudioChain | None:
    """The whole microphone chain (source, drift corrector, encoder), or None for video only."""
    src = source or open_audio_source(config, clock)
    if src is None:
        return None
    a = config.audio
    enc = AudioEncoder(codec=a.codec, sample_rate=a.sample_rate, channels=a.channels, bitrate_kbps=a.bitrate_kbps)
    return AudioChain(source=src, encoder=enc, clock=clock, source_kind=a.source if source is None else
                      str(src.info().get("kind", a.source)))
