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

The pin library: gpiozero needs a pin factory, and on a Pi 4/5 that is ``lgpio`` (a C extension).
pyproject.toml asks for it only on Linux/aarch64, and ``pip download --platform`` judges environment
markers by the build machine, not the target, so the image asks for it here explicitly
(``IMAGE_EXTRA``). ``check_pin_library`` then opens the staged wheel and checks it holds an aarch64
extension for the target CPython: PyPI also has an empty ``lgpio 0.0.0.2`` pure-Python wheel that a
resolver would happily pick, and which would leave gpiozero with no pin factory on the camera.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path

from .progress import Progress
from .tools import ImageError, run

PYTHON_VERSION = "3.11"  # Raspberry Pi OS Bookworm
GLIBC_MINOR = 36  # Bookworm's glibc 2.36: manylinux_2_17 .. manylinux_2_36 all run
BOOTSTRAP = ["pip"]
PIN_LIBRARY = "lgpio"
IMAGE_EXTRA = [f"{PIN_LIBRARY}>=0.2"]  # see the module docstring: markers are not judged for the target
EM_AARCH64 = 183
_WHEEL_TAGS = re.compile(
    r"^(?P<name>.+?)-(?P<ver>[^-]+)(?:-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def platforms(glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """pip does not widen an explicit --platform to older manylinux versions: list each one.
    (lgpio's wheels are manylinux_2_34: asking for manylinux_2_17 alone finds none.)"""
    return ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, glibc_minor + 1)]


PLATFORMS = platforms()


def platform_args(python: str = PYTHON_VERSION, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """pip options selecting wheels for the camera: CPython ``python`` on aarch64, glibc 2.``glibc_minor``."""
    args = [
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python.replace('.', '')}",
    ]
    for p in platforms(glibc_minor):
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
    return list(pyproject(source)["project"].get("dependencies", [])) + BOOTSTRAP + IMAGE_EXTRA


def build_requirements(source: Path) -> list[str]:
    return list(pyproject(source).get("build-system", {}).get("requires", ["setuptools"]))


def _pip(*args: str | Path) -> list[str | Path]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def _isolated_env(env: Mapping[str, str]) -> dict[str, str]:
    """No pip.conf, no PIP_* variables: a staged build sees nothing but the cache."""
    out = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    out["PIP_CONFIG_FILE"] = os.devnull
    return out


def refresh(
    source: Path,
    cache: Path,
    env: Mapping[str, str],
    progress: Progress,
    *,
    python: str = PYTHON_VERSION,
    glibc_minor: int = GLIBC_MINOR,
) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    constraints = source / "image" / "constraints.txt"
    progress.info(f"pip download (aarch64, CPython {python}, glibc 2.{glibc_minor}) into {cache}")
    run(
        _pip(
            "download",
            "--quiet",
            "--dest",
            cache,
            "--find-links",
            cache,
            *platform_args(python, glibc_minor),
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


def stage(
    source: Path,
    cache: Path,
    dest: Path,
    env: Mapping[str, str],
    progress: Progress,
    *,
    python: str = PYTHON_VERSION,
    glibc_minor: int = GLIBC_MINOR,
) -> list[Path]:
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
            *platform_args(python, glibc_minor),
            *(["--constraint", constraints] if constraints.exists() else []),
            *runtime_requirements(source),
        ),
        what=f"resolving the wheels from the cache {cache} (missing ones: run without --offline)",
        env=quiet,
    )
    firmware = build_firmware_wheel(source, cache, dest, quiet)
    wheels = sorted(dest.glob("*.whl"))
    check_platforms(wheels)
    pins = check_pin_library(wheels, python)
    progress.info(f"pin library {pins}")
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


def _elf_machine(header: bytes) -> int | None:
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def check_pin_library(wheels: list[Path], python: str = PYTHON_VERSION) -> str:
    """The staged wheels hold lgpio with an aarch64 extension for CPython ``python``: gpiozero on the
    camera will find its pin factory. Returns a line for the build log."""
    tag = f"cp{python.replace('.', '')}"
    found = [w for w in wheels if (m := _WHEEL_TAGS.match(w.name)) and m.group("name").lower() == PIN_LIBRARY]
    fix = (
        f"gpiozero on the camera would find no pin factory; build without --offline to fetch "
        f"'{IMAGE_EXTRA[0]}' for CPython {python} aarch64 (PyPI has manylinux_2_34 wheels)"
    )
    if not found:
        raise ImageError(f"no {PIN_LIBRARY} wheel among the image's wheels: {fix}")
    wheel = found[0]
    m = _WHEEL_TAGS.match(wheel.name)
    assert m is not None
    if m.group("abi") not in (tag, "abi3"):
        raise ImageError(f"{wheel.name}: not a compiled wheel for CPython {python}: {fix}")
    try:
        with zipfile.ZipFile(wheel) as z:
            libs = [n for n in z.namelist() if re.search(r"(^|/)_?lgpio[^/]*\.so(\.\d+)*$", n)]
            machines = {_elf_machine(z.open(n).read(64)) for n in libs}
    except (OSError, zipfile.BadZipFile) as e:
        raise ImageError(f"{wheel.name}: cannot read the wheel ({e}): delete it from the wheel cache") from None
    if not libs or machines != {EM_AARCH64}:
        raise ImageError(f"{wheel.name}: holds no aarch64 lgpio extension module: {fix}")
    return f"{wheel.name} (aarch64 extension {', '.join(sorted(Path(n).name for n in libs))})"
