"""docs/config.md is what `python -m bodycam.configdoc` writes from the config dataclasses, every key
has a help text, and the shipped device config shows the pin tables a technician must set."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from bodycam import config as device_config
from bodycam import configdoc
from bodycam_backend import config as backend_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"


def test_docs_config_md_is_current() -> None:
    assert DOC.read_text() == configdoc.render(), (
        "docs/config.md is out of date: run `python -m bodycam.configdoc --write docs/config.md`")


def test_the_module_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    subprocess.run([sys.executable, "-m", "bodycam.configdoc", "--write", str(out)], check=True)
    assert out.read_text() == DOC.read_text()
    assert "python -m bodycam.configdoc --write docs/config.md" in DOC.read_text().split("\n\n")[1]


@pytest.mark.parametrize("sections", [device_config.sections(), backend_config.sections()],
                         ids=["device", "backend"])
def test_every_table_and_key_is_documented(sections: dict[str, type]) -> None:
    text = DOC.read_text()
    undocumented = []
    for name, cls in sections.items():
        assert f"### [{name}]" in text
        assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("), f"[{name}] has no docstring"
        for f in dataclasses.fields(cls):
            if not f.metadata.get("help", "").strip():
                undocumented.append(f"[{name}] {f.name}")
    assert undocumented == [], f"keys without help: {undocumented}"


def test_a_range_and_a_default_are_rendered_from_the_schema() -> None:
    rows: dict[str, list[str]] = {}  # a key name may appear in two tables ([encoder] and [audio] codec)
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            rows.setdefault(line.split("|")[1].strip(), []).append(line)
    assert rows["`fps`"][0].split("|")[2:5] == [" number ", " `30.0` ", " 1 to 120 "]
    assert '"auto", "libx264", "h264_v4l2m2m"' in rows["`codec`"][0]
    assert '"aac", "opus"' in rows["`codec`"][1]


def test_device_toml_shows_the_pin_tables() -> None:
    """The README tells technicians to set the pins in config/device.toml: it must show them all."""
    raw = tomllib.loads((ROOT / "config" / "device.toml").read_text())
    cfg = device_config.load(ROOT / "config" / "device.toml")
    for table in ("buttons", "indicators"):
        pins = {f.name for f in dataclasses.fields(getattr(cfg, table)) if f.name.endswith("_pin")}
        assert pins <= set(raw.get(table, {})), f"config/device.toml [{table}] lacks {pins - set(raw.get(table, {}))}"
