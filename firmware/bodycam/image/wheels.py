"""The firmware and its dependencies as aarch64 wheels, so the camera installs offline at first boot.

Two pip runs, so that a build is a function of a local wheel cache:

1. ``refresh`` (skipped with ``--offline``) downloads into the cache, with the user's pip settings
   (index, proxy, certificates): the runtime requirements from pyproject.toml for Raspberry Pi OS
   Bookworm (CPython 3.11, aarch64, glibc 2.36), limited by image/constraints.txt, plus ``pip``
   (first boot runs pip from its wheel) and the build backend (setuptools).
2. ``stage`` resolves the same requirements again with ``--no-index --find-links CACHE`` and pip
   isolated from any configuration, copying exactly the wheels the image needs; the firmware's own
   wheel is built from the source tree, offline, with SOURCE_DATE_EPOCH.

picamera2 and libcamera are not here: they are apt packages (camerastack.py puts them on the card and
first boot installs them), and the venv is created with --system-site-packages to see them. The venv's
own numpy and av wheels come first on its path, so picamera2 runs with them, not apt's: hence numpy<2.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from .progress import Progress
from .tools import ImageError, run

PYTHON_VERSION = "3.11"  # Raspberry Pi OS Bookworm
GLIBC_MINOR = 36  # Bookworm's glibc 2.36: manylinux_2_17 .. manylinux_2_36 all run
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, GLIBC_MINOR + 1)]
BOOTSTRAP = ["pip"]
_WHEEL_TAGS = re.compile(
    r"^(?P<name>.+?)-(?P<ver>[^-]+)(?:-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def platform_args() -> list[str]:
    args = [
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        f"cp{PYTHON_VERSION.replace('.', '')}",
    ]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


def pyproject(source: Path) -> dict:
    try:
        return tomllib.loads((source / "pyproject.toml").read_text())
    except FileNotFoundError:
        raise ImageError(
            f"{source}: no pyproject.toml; pass --source with a bodycam source checkout"
        ) from None


def runtime_requirements(source: Path) -> list[str]:
    return list(pyproject(source)["project"].get("dependencies", [])) + BOOTSTRAP


def build_requirements(source: Path) -> list[str]:
    return list(pyproject(source).get("build-system", {}).get("requires", ["setuptools"]))


def _pip(*args: str | Path) -> list[str | Path]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def _isolated_env(env: Mapping[str, str]) -> dict[str, str]:
    """No pip.conf, no PIP_* variables: a staged build sees nothing but the cache."""
    out = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    out["PIP_CONFIG_FILE"] = os.devnull
    return out


def refresh(source: Path, cache: Path, env: Mapping[str, str], progress: Progress) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    constraints = source / "image" / "constraints.txt"
    progress.info(f"pip download (aarch64, CPython {PYTHON_VERSION}) into {cache}")
    run(
        _pip(
            "download",
            "--quiet",
            "--dest",
            cache,
            "--find-links",
            cache,
            *platform_args(),
            *(["--constraint", constraints] if constraints.exists() else []),
            *runtime_requirements(source),
        ),
        what="downloading aarch64 wheels (--offline with a filled --wheels cache builds without a network)",
        env=env,
    )
    run(
        _pip(
            "download",
            "--quiet",
            "--dest",
            cache,
            "--find-links",
            cache,
            "--only-binary=:all:",
            *build_requirements(source),
        ),
        what="downloading the build backend",
        env=env,
    )


def stage(source: Path, cache: Path, dest: Path, env: Mapping[str, str], progress: Progress) -> list[Path]:
    """Exactly the wheels the image needs, from the cache only; returns them sorted by name."""
    if not cache.is_dir() or not any(cache.glob("*.whl")):
        raise ImageError(f"wheel cache {cache} is empty: run once without --offline (needs PyPI) to fill it")
    dest.mkdir(parents=True, exist_ok=True)
    constraints = source / "image" / "constraints.txt"
    quiet = _isolated_env(env)
    run(
        _pip(
            "--isolated",
            "download",
            "--quiet",
            "--no-index",
            "--find-links",
            cache,
            "--dest",
            dest,
            *platform_args(),
            *(["--constraint", constraints] if constraints.exists() else []),
            *runtime_requirements(source),
        ),
        what=f"resolving the wheels from the cache {cache} (missing ones: run without --offline)",
        env=quiet,
    )
    firmware = build_firmware_wheel(source, cache, dest, quiet)
    wheels = sorted(dest.glob("*.whl"))
    check_platforms(wheels)
    progress.info(f"{len(wheels)} wheels, firmware {firmware.name}")
    return wheels


def build_firmware_wheel(source: Path, cache: Path, dest: Path, env: Mapping[str, str]) -> Path:
    """Build from a clean copy of the package sources, so stray build/ or egg-info never leaks in."""
    meta = pyproject(source)
    where = meta.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("where", ["."])
    tree = dest.parent / "firmware-src"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in ["pyproject.toml", "README.md", "LICENSE", *where]:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, tree / name)
    out = dest.parent / "firmware-wheel"
    shutil.rmtree(out, ignore_errors=True)
    run(
        _pip(
            "--isolated",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--find-links",
            cache,
            "--wheel-dir",
            out,
            tree,
        ),
        what="building the firmware wheel (the build backend must be in the wheel cache: drop --offline)",
        env=env,
    )
    built = sorted(out.glob("*.whl"))
    if len(built) != 1:
        raise ImageError(f"building the firmware wheel produced {len(built)} wheels, expected 1")
    final = dest / built[0].name
    shutil.move(built[0], final)
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return final


def check_platforms(wheels: list[Path]) -> None:
    """Every wheel must run on the camera: pure Python, or CPython 3.11 / abi3 for aarch64."""
    bad = []
    for w in wheels:
        m = _WHEEL_TAGS.match(w.name)
        if not m:
            bad.append(w.name)
            continue
        plats = m.group("plat").split(".")
        if not all(p == "any" or p.endswith("_aarch64") for p in plats):
            bad.append(w.name)
    if bad:
        raise ImageError(f"wheels that cannot run on an aarch64 Pi: {', '.join(bad)}")
