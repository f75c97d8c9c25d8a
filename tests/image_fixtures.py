"""Session fixtures shared by the image tests (tests/test_image.py, tests/test_camera_stack.py): the
source snapshot, the real aarch64 wheel cache and the build inputs. A plugin (loaded by conftest.py),
so each is made once per session, however many test modules use it.

The aarch64 wheels are gathered for real once per session (pip download --platform ..., into the
pytest cache, so later sessions only re-check the index); builds then run --offline from that cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bodycam.image import wheels
from bodycam.image.progress import Progress
from bodycam.image.tools import epoch_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from imagekit import make_base

REPO = Path(__file__).resolve().parents[1]
ROOT_GROW = 160 << 20  # enough for the wheels; keeps test images small
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk4pYbSxbm5Wc2ZsO6TzB0cAqUaX3QnA2iG1pYqzM0F tech@depot\n"


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the source tree, so both builds of a pair see the same firmware."""
    snap = tmp_path_factory.mktemp("source")
    meta = wheels.pyproject(REPO)
    where = meta["tool"]["setuptools"]["packages"]["find"]["where"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copy(REPO / "pyproject.toml", snap)
    for name in [*where, "systemd", "image", "docs"]:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, snap / name, ignore=ignore)
    return snap


@pytest.fixture(scope="session")
def wheel_cache(
    request: pytest.FixtureRequest, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The real gathering step, once per session: pip download for aarch64 / CPython 3.11."""
    pytest_cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = Path(pytest_cache.mkdir("bodycam-wheels")) if pytest_cache else tmp_path_factory.mktemp("wheels")
    wheels.refresh(source, cache, epoch_env(1_735_689_600), Progress(quiet=True))
    return cache


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Test Agency CA")])
    import datetime as dt

    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(t0)
        .not_valid_after(t0 + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    config = (REPO / "config/device.toml").read_text().replace('serial = "BC-0001"', 'serial = "BC-0417"')
    (d / "device.toml").write_text(config)
    (d / "enrolled.toml").write_text(
        config + '\n[offload]\nbackend_url = "https://evidence.example"\n'
        'enrol_token = "bce_test"\nset_clock = true\nca_file = "/etc/bodycam/ca.pem"\n'
    )
    (d / "tech.pub").write_text(SSH_KEY)
    (d / "base.img").parent.mkdir(exist_ok=True)
    make_base(d / "base.img")
    return {
        "base": d / "base.img",
        "ca": d / "ca.pem",
        "config": d / "device.toml",
        "ssh": d / "tech.pub",
        "enrolled": d / "enrolled.toml",
    }
