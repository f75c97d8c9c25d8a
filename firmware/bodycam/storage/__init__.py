"""Durable files on the device: atomic writes and the free-space reserve."""
