"""Argument types shared by the commands: a bad value is argparse's one-line usage error, not a
recording that never ends (``--seconds -5``) or a wait that returns at once (``--wait -3``)."""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """A duration: a finite number, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give zero or more seconds")
    return value


def percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: give a percentage from 0 to 100")
    return value
