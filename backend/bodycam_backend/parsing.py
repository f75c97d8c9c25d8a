"""Parsing of untrusted request text, in one place, so every route refuses bad input the same way.

``str.isdigit()`` accepts superscripts and other scripts' digits that ``int()`` then refuses, and a
400-digit number overflows SQLite and float arithmetic: both turned bad input into 500s. JSON nested
deeper than the parser's recursion limit raised RecursionError, which is not a ValueError.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ApiError

INT64_MAX = (1 << 63) - 1


def is_decimal(raw: str, *, max_digits: int = 19) -> bool:
    """ASCII digits only, at most ``max_digits`` of them (19 digits hold any 63-bit value)."""
    return 0 < len(raw) <= max_digits and raw.isascii() and raw.isdigit()


def decimal(raw: str, what: str, *, status: int = 400, code: str = "bad_request") -> int:
    """A non-negative integer that fits SQLite's INTEGER; anything else is one clear error."""
    if not is_decimal(raw) or int(raw) > INT64_MAX:
        raise ApiError(status, code, f"{what} must be a non-negative integer below 2^63, not {raw[:30]!r}")
    return int(raw)


def loads(data: str | bytes) -> Any:
    """``json.loads`` whose every failure, nesting too deep included, is a ValueError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
