"""Structured logging for the daemon: one JSON object per line on stdout, which journald keeps whole.

Call sites log a short event name as the message and put details in ``extra={"event": ..., "data":
{...}}``; the formatter flattens ``data`` into the line, so `journalctl -u bodycam -o cat | jq` works
without parsing prose. The signed audit log stays the record of evidence; this is for diagnosis.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

_RESERVED = frozenset({"ts", "level", "logger", "msg", "event"})


class JsonFormatter(logging.Formatter):
    """``{"ts": ISO UTC, "level", "logger", "event", "msg", **data}``; tracebacks go in "exc"."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "msg": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            for k, v in data.items():
                line[f"data_{k}" if k in _RESERVED else k] = v
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def setup(level: str = "info", *, stream: TextIO | None = None) -> logging.Handler:
    """Send the ``bodycam`` loggers to ``stream`` (stdout) as JSON lines; idempotent per stream."""
    root = logging.getLogger("bodycam")
    target = stream or sys.stdout
    for h in root.handlers:
        if isinstance(h, logging.StreamHandler) and h.stream is target:
            return h
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return handler


def last_error(lines: Sequence[str]) -> str | None:
    """The daemon's own words for why it stopped, read back from its output (``journalctl -o cat``),
    the newest of: its one-line ``bodycam: ...`` error,
    a JSON log entry at level error, the exception line that ends a Python traceback. systemd's own
    lines ("Main process exited", "Scheduled restart job") say nothing about why, so they are skipped."""
    found: list[str] = []
    in_traceback = False
    for line in lines:
        text = line.rstrip()
        if text.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback:
            if text and not text[0].isspace():
                found.append(text)
                in_traceback = False
        elif text.startswith("bodycam: "):
            found.append(text.removeprefix("bodycam: "))
        elif text.startswith("{"):
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                found.append(str(entry.get("msg") or entry.get("event")))
    return found[-1] if found else None
