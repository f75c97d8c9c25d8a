"""The malloc arena cap (bodycam/memory.py) is really taken by glibc, and an operator's setting wins."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "from bodycam.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def run_probe(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_glibc_takes_the_arena_cap() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert run_probe(env) == "True"  # Debian's glibc: mallopt(M_ARENA_MAX, 2) returns 1


def test_an_operators_malloc_arena_max_wins() -> None:
    assert run_probe({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"
