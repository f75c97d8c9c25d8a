"""Segments: fragmented MP4 files written, sealed and recovered."""
