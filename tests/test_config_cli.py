"""Config validation and the CLI's one-line errors, through the real `bodycam` entry point."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bodycam import config as configmod
from bodycam.errors import ConfigError


def bodycam(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bodycam.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("toml, message", [
    ("[buffer]\npre_event_seconds = 500", "[buffer] pre_event_seconds = 500: must be between 0 and 120"),
    ("[buffer]\npre_event_seconds = -1", "[buffer] pre_event_seconds = -1: must be between 0 and 120"),
    ("[camera]\nfps = 'fast'", "[camera] fps = 'fast': must be a number"),
    ("[camera]\nsource = 'gopro'", "[camera] source = 'gopro': must be one of"),
    ("[camera]\nwidth = 1281", "[camera] width/height = 1281x720: H.264 needs even numbers"),
    ("[camera]\nsource = 'file'", "[camera] file: required when source = 'file'"),
    ("[recording]\nsegment_secs = 5", "[recording] segment_secs: unknown key"),
    ("[recordings]\nsegment_seconds = 5", "[recordings]: unknown table"),
    ("[storage]\nreserve_megabytes = true", "[storage] reserve_megabytes = True: must be a number"),
    ("[device]\nserial = 'BC 01/../x'", "[device] serial = 'BC 01/../x': use letters, digits"),
    ("[recording]\nsegment_seconds = 2\n[encoder]\ngop_seconds = 4",
     "[recording] segment_seconds = 2: must be at least [encoder] gop_seconds (4)"),
    ("[buffer\npre_event_seconds = 3", "not valid TOML"),
])
def test_bad_values_are_one_line_naming_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as e:
        configmod.load(path)
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text


def test_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[buffer]\npre_event_seconds = 500\n")
    out = bodycam("record", "--config", str(path))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "pre_event_seconds" in out.stderr
    missing = bodycam("record", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "config file not found" in missing.stderr


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "config"
    for path in [root / "sim.toml", root / "device.toml"]:
        cfg = configmod.load(path)
        assert cfg.buffer.pre_event_seconds == 30 and cfg.recording.segment_seconds == 10


def test_keygen_creates_a_0600_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "device" / "key.pem"
    first = bodycam("keygen", "--key", str(key))
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (tmp_path / "device" / "device.pub.pem").exists()
    before = key.read_bytes()
    again = bodycam("keygen", "--key", str(key))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert key.read_bytes() == before
    # the key id printed is what openssl computes from the public key
    kid = [ln.split()[-1] for ln in first.stdout.splitlines() if ln.startswith("key id")][0]
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(tmp_path / "device" / "device.pub.pem"),
                          "-outform", "DER"], capture_output=True, check=True).stdout
    import hashlib
    assert hashlib.sha256(der).hexdigest() == kid


def test_missing_key_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[device]\ndata_dir = '{tmp_path / 'data'}'\n[camera]\nwidth = 160\nheight = 120\n")
    out = bodycam("record", "--config", str(cfg), "--seconds", "1")
    assert out.returncode == 2 and "bodycam keygen" in out.stderr and "Traceback" not in out.stderr


def test_a_broken_command_module_never_stops_another_command(tmp_path: Path, monkeypatch, capsys) -> None:
    from bodycam import cli

    monkeypatch.setitem(cli.COMMANDS, "doctor", "cli_does_not_exist")
    assert cli.main(["keygen", "--key", str(tmp_path / "k.pem")]) == 0
    assert cli.main(["doctor"]) == 2
    assert "not installed" in capsys.readouterr().err
