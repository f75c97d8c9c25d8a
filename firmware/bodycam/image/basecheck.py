"""Can this base image run what we put on it? Checked before anything is fetched or written.

Two things a build cannot see from its own machine, read from the base root (debugfs, through
``Ext4Editor``) so a wrong base stops the build with one line instead of a camera that fails first boot:

* **The programs first boot runs** (``firstboot.TOOLS``: sfdisk, partx, resize2fs, runuser, ...). A base
  without ``fdisk`` would boot, fail the datapart step and leave the camera without its daemon.
* **Its OS and Python**, from ``/etc/os-release`` and the dpkg status (else the ``/usr/bin/python3``
  link, else ``/usr/lib/python3.N``): the wheels are fetched for that CPython and no newer a glibc than
  the base's ``libc6``. Only Python 3.11 (Raspberry Pi OS Bookworm) is accepted: image/constraints.txt
  pins NumPy below 2 for Bookworm's apt picamera2, and a Trixie base (Python 3.13, NumPy 2 in apt)
  needs different pins, so it is refused rather than built into a camera whose venv step fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import firstboot
from .rootfs import Ext4Editor
from .tools import ImageError

BIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
CAMERA_STEPS = ("camera",)
SUPPORTED_PYTHON = {"3.11": "Raspberry Pi OS / Debian 12 Bookworm"}
DEFAULT_GLIBC_MINOR = 36  # Bookworm, when the base has no dpkg status to say
STATUS = "/var/lib/dpkg/status"


@dataclass(frozen=True)
class Target:
    """What the camera's Python wheels must run on."""

    python: str = "3.11"  # "3.11"
    glibc_minor: int = DEFAULT_GLIBC_MINOR  # glibc 2.N
    os_name: str = ""  # PRETTY_NAME from os-release, for the build log

    def describe(self) -> str:
        return f"{self.os_name or 'unknown OS'}, Python {self.python}, glibc 2.{self.glibc_minor}"


def has_program(editor: Ext4Editor, name: str) -> bool:
    return any(editor.lookup(f"{d}/{name}") is not None for d in BIN_DIRS)


def check_tools(editor: Ext4Editor, *, camera_stack: bool) -> None:
    """Every program first boot runs is in the base, or one line naming them and their packages."""
    missing = {
        name: pkg
        for name, (pkg, steps) in sorted(firstboot.TOOLS.items())
        if (camera_stack or set(steps) - set(CAMERA_STEPS)) and not has_program(editor, name)
    }
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise ImageError(
            f"base image: first boot needs {', '.join(missing)}, which the base does not have: "
            f"use a base with the Debian package(s) {pkgs} (apt-get install {pkgs})"
        )


def os_release(editor: Ext4Editor) -> dict[str, str]:
    """/etc/os-release (usually a link to /usr/lib/os-release) as a dict; empty if absent."""
    data = editor.read_followed("/etc/os-release") or editor.read_followed("/usr/lib/os-release") or b""
    out = {}
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip("\"'")
    return out


def dpkg_versions(editor: Ext4Editor, *packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` from /var/lib/dpkg/status (plain parse: no python-debian)."""
    data = editor.read(STATUS)
    out: dict[str, str] = {}
    if data is None:
        return out
    for para in data.decode(errors="replace").split("\n\n"):
        fields = dict(re.findall(r"(?m)^([A-Za-z-]+):\s*(.*)$", para))
        if fields.get("Package") in packages and fields.get("Status", "").endswith(" installed"):
            out[fields["Package"]] = fields.get("Version", "")
    return out


def python_version(editor: Ext4Editor, versions: dict[str, str]) -> str | None:
    """"3.11" from python3's dpkg version ("3.11.2-1+b1"), the python3 link, or /usr/lib/python3.N."""
    m = re.match(r"^(?:\d+:)?(3\.\d+)", versions.get("python3", ""))
    if m:
        return m.group(1)
    link = editor.readlink("/usr/bin/python3") or ""
    m = re.search(r"python(3\.\d+)$", link)
    if m:
        return m.group(1)
    found = sorted(n[6:] for n in (editor.listdir("/usr/lib") or {}) if re.fullmatch(r"python3\.\d+", n))
    return found[-1] if len(found) == 1 else None


def read_target(editor: Ext4Editor) -> Target:
    """The base's OS, Python and glibc; a Python the firmware's wheels are not for stops the build."""
    rel = os_release(editor)
    name = rel.get("PRETTY_NAME") or rel.get("NAME", "")
    versions = dpkg_versions(editor, "python3", "libc6")
    py = python_version(editor, versions)
    if py is None:
        raise ImageError(
            "base image: no Python 3 found (/usr/bin/python3, /usr/lib/python3.N): first boot runs on it; "
            "use Raspberry Pi OS Lite (64-bit) Bookworm"
        )
    if py not in SUPPORTED_PYTHON:
        supported = ", ".join(f"{v} ({what})" for v, what in SUPPORTED_PYTHON.items())
        raise ImageError(
            f"base image: {name or 'this OS'} has Python {py}; this firmware's wheels and pins "
            f"(image/constraints.txt) are for Python {supported}: use a Bookworm base image"
        )
    m = re.match(r"^(?:\d+:)?2\.(\d+)", versions.get("libc6", ""))
    glibc = int(m.group(1)) if m else DEFAULT_GLIBC_MINOR
    return Target(python=py, glibc_minor=glibc, os_name=name)
