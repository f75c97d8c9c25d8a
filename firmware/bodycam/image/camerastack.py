"""The camera stack for the card: python3-picamera2 and what it needs that the base lacks, as a local repo.

Raspberry Pi OS Lite has neither python3-picamera2 nor python3-libcamera (pi-gen moved them to the
desktop stage in 2023), and the camera installs offline. So the build does what ``apt-get install
--no-install-recommends python3-picamera2`` would do on the base, with the base's own sources and keys
(``aptbase``), verified like apt (``aptrepo``), resolved against the base's dpkg status
(``debclosure``), and puts the .debs on the card as a flat repository:

  /opt/bodycam/debs/*.deb         the closure, named package_version_arch.deb
  /opt/bodycam/debs/Packages      their index stanzas as published upstream (Filename made local)
  /opt/bodycam/debs/Release       SHA256 of Packages
  /opt/bodycam/debs/local.list    ``deb [trusted=yes] file:/opt/bodycam/debs ./``: first boot's only source

trusted=yes is right for this one source: every .deb was checked at build time against a signature the
base trusts, and whoever could change /opt/bodycam/debs on the card could as well change /usr/bin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from debian import deb822

from ..digest import sha256_file
from . import aptbase
from .aptrepo import Repo, copy_into
from .debclosure import ROOTS, Candidate, closure
from .progress import Progress
from .rootfs import Ext4Editor
from .tools import ImageError, human, require

DEBS_DIR = "/opt/bodycam/debs"
LIST_NAME = "local.list"
ARCH = "arm64"  # the wheels are aarch64: a 32-bit base cannot run them


@dataclass
class Stack:
    debs: list[Path] = field(default_factory=list)  # staged .debs, sorted by name
    index: list[Path] = field(default_factory=list)  # Packages, Release, local.list
    packages: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.debs)


def gather(
    editor: Ext4Editor,
    *,
    cache: Path,
    offline: bool,
    stage: Path,
    epoch: int,
    progress: Progress,
    env: Mapping[str, str] | None = None,
) -> Stack:
    require("gpgv")  # checks the archives' signatures
    base = aptbase.read(editor)
    if base.architecture != ARCH:
        raise ImageError(f"base image is {base.architecture}, not {ARCH}: use Raspberry Pi OS Lite (64-bit)")
    for note in base.notes:
        progress.info(f"note: {note}")
    if not base.sources:
        raise ImageError(
            "the base image has no usable apt source (http/https, signed) to get python3-picamera2 from: "
            "use a Raspberry Pi OS image, or build with --no-camera-stack for a simulation image"
        )
    repo = Repo(cache, stage.parent / "apt-verify", arch=ARCH, offline=offline, progress=progress, env=env)
    candidates: list[Candidate] = []
    for source in base.sources:
        progress.info(
            f"apt source {source.name} ({', '.join(source.components)})" + (" [cache]" if offline else "")
        )
        candidates += repo.packages(source)
    chosen = closure(candidates, base.installed, ROOTS)
    upgrades = [c.package for c in chosen if c.package in base.installed]
    progress.info(
        f"{len(chosen)} packages not in the base: {', '.join(c.package for c in chosen)}"
        + (f" (upgrading {', '.join(upgrades)})" if upgrades else "")
    )
    stage.mkdir(parents=True, exist_ok=True)
    debs = []
    for c in chosen:
        staged = stage / c.deb_name
        copy_into(repo.deb(c), staged)
        if sha256_file(staged) != c.sha256:  # the cache could change under us; the card gets what we checked
            raise ImageError(f"{staged}: changed while being staged; run the build again")
        debs.append(staged)
    stack = Stack(debs=debs, index=write_index(stage, chosen, epoch), packages=chosen)
    stack.notes.append(f"camera stack: {len(chosen)} .debs, {human(stack.size)}, in {DEBS_DIR}")
    return stack


def write_index(stage: Path, chosen: list[Candidate], epoch: int) -> list[Path]:
    """Packages, Release and the apt source line, byte-for-byte a function of ``chosen`` and ``epoch``."""
    stanzas = []
    for c in chosen:
        para = deb822.Packages(c.stanza)
        para["Filename"] = f"./{c.deb_name}"
        stanzas.append(para.dump().rstrip("\n") + "\n")
    packages = stage / "Packages"
    packages.write_text("\n".join(stanzas))
    release = stage / "Release"
    release.write_text(
        "Origin: bodycam\nLabel: bodycam camera stack\nSuite: bodycam\nCodename: bodycam\n"
        f"Date: {formatdate(epoch, usegmt=True)}\nArchitectures: {ARCH} all\n"
        f"SHA256:\n {sha256_file(packages)} {packages.stat().st_size} Packages\n"
    )
    source = stage / LIST_NAME
    source.write_text(f"deb [trusted=yes] file:{DEBS_DIR} ./\n")
    return [packages, release, source]
