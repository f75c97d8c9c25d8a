"""One exception root, so the CLI can print a single line for anything a user can cause."""


class BodycamError(Exception):
    """Base of every error bodycam raises on purpose; its message says what to fix."""


class ConfigError(BodycamError, ValueError):
    """A configuration file is missing, unreadable, or holds a bad value."""


class SourceError(BodycamError, RuntimeError):
    """A camera source cannot be opened or stopped delivering frames."""


class DeviceKeyError(BodycamError, RuntimeError):
    """The device key is missing, unreadable, or would be overwritten."""


class DataDirError(BodycamError, OSError):
    """A folder bodycam must write to is missing and cannot be made, is a file, or is read-only."""


class EncoderError(BodycamError, RuntimeError):
    """The configured H.264 encoder cannot be opened on this machine (or in this PyAV build)."""


class StorageFullError(BodycamError, OSError):
    """Writing more footage would eat into the configured free-space reserve."""


class EvidenceError(BodycamError, RuntimeError):
    """Evidence on disk is inconsistent in a way that needs a human to look at it."""
