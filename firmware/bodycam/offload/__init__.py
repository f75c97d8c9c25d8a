"""Offload in the dock: the device side of docs/backend-api.md.

spool (what is pending, in what order) -> uploader (tus upload, finalize, receipt check, free) over
client (signed HTTP) and tus; clocksync (offset from /v1/time, audited); enrol (certificate and the
pinned backend key); service (the daemon's worker thread while docked).
"""
