"""bodycam: open firmware for a police body-worn camera."""

__version__ = "0.1.0"
