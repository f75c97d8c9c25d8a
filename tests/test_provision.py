"""`bodycam provision`: the device key is made once and never replaced; public key and CSR are filled in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bodycam import cli, provision
from bodycam import config as configmod
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _cfg(tmp_path: Path, serial: str = "BC-0007") -> Path:
    path = tmp_path / "device.toml"
    path.write_text(f'[device]\nserial = "{serial}"\ndata_dir = "{tmp_path / "data"}"\n')
    return path


def test_creates_key_public_key_and_csr(tmp_path: Path) -> None:
    cfg = configmod.load(_cfg(tmp_path))
    r = provision.ensure(cfg)
    assert r.created_key and r.key == tmp_path / "data/device/key.pem"
    assert os.stat(r.key).st_mode & 0o777 == 0o600
    csr = x509.load_pem_x509_csr(r.csr.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "BC-0007"
    pub = serialization.load_pem_public_key(r.public_key.read_bytes())
    assert pub.public_numbers() == csr.public_key().public_numbers()
    # openssl accepts it as well (what a third party would use).
    proc = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-in", str(r.csr)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_second_run_keeps_the_key_and_repairs_the_rest(tmp_path: Path) -> None:
    cfg = configmod.load(_cfg(tmp_path))
    first = provision.ensure(cfg)
    key_bytes = first.key.read_bytes()
    first.public_key.unlink()
    first.csr.write_text("torn")
    second = provision.ensure(cfg)
    assert not second.created_key and second.key.read_bytes() == key_bytes and second.key_id == first.key_id
    assert x509.load_pem_x509_csr(second.csr.read_bytes()).is_signature_valid
    assert second.public_key.exists()
    assert not list(first.key.parent.glob(".*.tmp"))


def test_csr_follows_a_serial_change(tmp_path: Path) -> None:
    provision.ensure(configmod.load(_cfg(tmp_path, "BC-0001")))
    r = provision.ensure(configmod.load(_cfg(tmp_path, "BC-0002")))
    cn = x509.load_pem_x509_csr(r.csr.read_bytes()).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert cn[0].value == "BC-0002"


def test_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["provision", "--config", str(_cfg(tmp_path))]) == 0
    assert "created" in capsys.readouterr().out
    assert cli.main(["provision", "--config", str(_cfg(tmp_path))]) == 0
    assert "kept" in capsys.readouterr().out
