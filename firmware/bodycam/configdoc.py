"""docs/config.md, generated from the config dataclasses, so the reference cannot drift from what
the loader accepts: every table and key with its type, default, range or choices, and help.

Regenerate with ``python -m bodycam.configdoc --write docs/config.md``; tests/test_configdoc.py fails
when the file is not what this module would write.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import Any

from . import config as device_config

HEADER = """\
# Configuration reference

Generated from the config schema (`firmware/bodycam/config.py`, `backend/bodycam_backend/config.py`)
by `python -m bodycam.configdoc --write docs/config.md`; do not edit by hand (tests/test_configdoc.py
checks that it is current). Unknown tables and keys are refused on load, and every bad value is one
line naming the table and key. Relative paths are taken from the config file's folder.
"""

_TYPES = {bool: "bool", int: "integer", float: "number", str: "string"}


def _type(t: Any) -> str:
    return _TYPES.get(t, getattr(t, "__name__", str(t)))


def _value(v: Any) -> str:
    """A value as it is written in TOML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return f"{v:g}" if v != int(v) or abs(v) >= 1e16 else f"{v:.1f}"
    return str(v)


def _num(x: float) -> str:
    """A bound as written in a config: 1000000, not 1e+06."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _allowed(meta: Any) -> str:
    if meta.get("choices"):
        return ", ".join(_value(c) for c in meta["choices"])
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"at least {_num(lo)}"
    if hi is not None:
        return f"at most {_num(hi)}"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table_doc(name: str, cls: type) -> str:
    """One TOML table: its purpose (the class docstring) and a row per key."""
    hints = typing.get_type_hints(cls)
    lines = [f"### [{name}]", ""]
    doc = inspect.getdoc(cls)
    if doc and not doc.startswith(f"{cls.__name__}("):  # dataclasses invent a signature when there is none
        lines += [doc, ""]
    lines += ["| key | type | default | allowed | what |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"| `{f.name}` | {_type(hints[f.name])} | `{_value(default)}` | {_cell(_allowed(f.metadata))} "
                     f"| {_cell(f.metadata.get('help', ''))} |")
    return "\n".join(lines) + "\n"


def _backend_sections() -> dict[str, type] | None:
    try:
        from bodycam_backend import config as backend_config
    except ImportError:
        return None
    return backend_config.sections()


def render() -> str:
    """The whole of docs/config.md."""
    parts = [HEADER, "## Device (`bodycam run`, `record`, `sim`, ...)", "",
             "`config/device.toml` (a Pi) and `config/sim.toml` (the simulator) are examples; on a camera the "
             "file is `/etc/bodycam/device.toml`.", ""]
    parts += [table_doc(name, cls) for name, cls in device_config.sections().items()]
    backend = _backend_sections()
    if backend is None:
        raise SystemExit("bodycam: the backend is not installed here: pip install 'bodycam[backend]' "
                         "(its config is part of the reference)")
    parts += ["## Evidence backend (`bodycam backend ...`)", "",
              "`config/backend.toml` (SQLite and a directory store) and `config/backend-s3.toml` (S3 with Object "
              "Lock) are examples.", ""]
    parts += [table_doc(name, cls) for name, cls in backend.items()]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bodycam.configdoc",
                                     description="Print (or write) the configuration reference, docs/config.md.")
    parser.add_argument("--write", type=Path, metavar="FILE", help="write it to FILE instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
