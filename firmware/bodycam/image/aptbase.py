"""What the base image's apt trusts and has: its sources, their keyrings, its dpkg status, its architecture.

Read from the base root file system (debugfs, through ``Ext4Editor``), never from the build machine, so
the camera stack on the card comes from exactly the archives, signed by exactly the keys, that the
base Raspberry Pi OS itself would use for ``apt-get install python3-picamera2``: nothing for us to
ship, pin or keep up to date.

Understood: ``/etc/apt/sources.list`` and ``sources.list.d/*.list`` (one-line ``deb [opts] URI SUITE
COMPONENT...``), ``sources.list.d/*.sources`` (deb822: Types, URIs, Suites, Components, Signed-By,
Architectures, Enabled). Keys: ``signed-by`` files (or an inline deb822 key block), else, as apt does,
``/etc/apt/trusted.gpg`` and every ``/etc/apt/trusted.gpg.d/*.gpg|*.asc``. Not used, with a note:
``deb-src``, flat repositories (``SUITE/``), ``[trusted=yes]`` sources (nothing to verify) and schemes
other than http/https.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from debian import deb822

from .rootfs import Ext4Editor
from .tools import ImageError

STATUS = "/var/lib/dpkg/status"
TRUSTED = "/etc/apt/trusted.gpg"
TRUSTED_D = "/etc/apt/trusted.gpg.d"
SOURCES = "/etc/apt/sources.list"
SOURCES_D = "/etc/apt/sources.list.d"


@dataclass(frozen=True)
class Keyring:
    """One OpenPGP keyring in binary form (gpgv cannot read armored keyrings), and where it came from."""

    origin: str
    data: bytes


@dataclass(frozen=True)
class Source:
    uri: str  # without a trailing slash
    suite: str
    components: tuple[str, ...]
    keyrings: tuple[Keyring, ...]
    origin: str  # the file and line it came from, for messages

    @property
    def name(self) -> str:
        return f"{self.uri} {self.suite}"


@dataclass(frozen=True)
class Installed:
    package: str
    version: str
    architecture: str
    provides: str = ""


@dataclass
class BaseApt:
    architecture: str
    sources: list[Source]
    installed: dict[str, Installed]
    notes: list[str] = field(default_factory=list)


def dearmor(text: bytes, origin: str) -> bytes:
    """An ASCII-armored key block as binary OpenPGP packets (what ``gpg --dearmor`` does)."""
    m = re.search(
        rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", text, re.S
    )
    if not m:
        raise ImageError(f"base image: {origin} is not an OpenPGP key (no armored key block)")
    lines = [ln.strip() for ln in m.group(1).splitlines()]
    if b"" in lines:  # armor headers ("Comment: ...") end at the first blank line
        lines = lines[lines.index(b"") + 1 :]
    body = b"".join(ln for ln in lines if ln and not ln.startswith(b"="))  # "=XXXX" is the CRC-24
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise ImageError(f"base image: {origin}: damaged armored key block") from None


def _keyring(data: bytes, origin: str) -> Keyring:
    return Keyring(origin, dearmor(data, origin) if b"-----BEGIN PGP" in data else data)


def _read_keyring(editor: Ext4Editor, path: str, origin: str) -> Keyring:
    data = editor.read_followed(path)
    if data is None:
        raise ImageError(f"base image: {origin} names the keyring {path}, which is not in the base image")
    return _keyring(data, path)


def default_keyrings(editor: Ext4Editor) -> tuple[Keyring, ...]:
    """apt's keys for sources without signed-by: trusted.gpg, then trusted.gpg.d in name order."""
    out = []
    if editor.lookup(TRUSTED) is not None:
        out.append(_read_keyring(editor, TRUSTED, TRUSTED))
    for name in sorted(editor.listdir(TRUSTED_D) or {}):
        if name.endswith((".gpg", ".asc")):
            out.append(_read_keyring(editor, f"{TRUSTED_D}/{name}", TRUSTED_D))
    return tuple(out)


def architecture(installed: dict[str, Installed]) -> str:
    """``dpkg --print-architecture`` without dpkg: the architecture dpkg itself was installed for."""
    if "dpkg" in installed:
        return installed["dpkg"].architecture
    archs = sorted({p.architecture for p in installed.values() if p.architecture not in ("all", "")})
    if len(archs) != 1:
        raise ImageError(
            f"base image: cannot tell its architecture from {STATUS} ({', '.join(archs) or 'no packages'})"
        )
    return archs[0]


def read_status(editor: Ext4Editor) -> dict[str, Installed]:
    data = editor.read(STATUS)
    if data is None:
        raise ImageError(f"base image: no {STATUS}; is it Raspberry Pi OS?")
    out: dict[str, Installed] = {}
    for para in deb822.Packages.iter_paragraphs(
        data.decode("utf-8", "replace").splitlines(), use_apt_pkg=False
    ):
        words = para.get("Status", "").split()
        if len(words) == 3 and words[2] == "installed" and "Package" in para:
            out[para["Package"]] = Installed(
                para["Package"],
                para.get("Version", ""),
                para.get("Architecture", ""),
                para.get("Provides", ""),
            )
    return out


def _one_line(editor: Ext4Editor, path: str, text: str, arch: str, notes: list[str]) -> Iterable[Source]:
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        origin = f"{path}:{n}"
        options: dict[str, str] = {}
        m = re.match(r"^(\S+)\s+\[([^\]]*)\]\s+(.*)$", line)
        if m:
            kind, opts, rest = m.group(1), m.group(2), m.group(3)
            for opt in opts.split():
                key, _, value = opt.partition("=")
                options[key.lower()] = value
        else:
            kind, _, rest = line.partition(" ")
        words = rest.split()
        if kind != "deb" or len(words) < 2:
            continue
        yield from _sources(
            editor,
            origin,
            uris=[words[0]],
            suites=[words[1]],
            components=words[2:],
            signed_by=options.get("signed-by", ""),
            archs=options.get("arch", ""),
            trusted=options.get("trusted", ""),
            arch=arch,
            notes=notes,
        )


def _deb822(editor: Ext4Editor, path: str, text: str, arch: str, notes: list[str]) -> Iterable[Source]:
    for n, para in enumerate(deb822.Deb822.iter_paragraphs(text.splitlines()), 1):
        if "deb" not in para.get("Types", "").split() or para.get("Enabled", "yes").lower() == "no":
            continue
        yield from _sources(
            editor,
            f"{path} (stanza {n})",
            uris=para.get("URIs", "").split(),
            suites=para.get("Suites", "").split(),
            components=para.get("Components", "").split(),
            signed_by=para.get("Signed-By", ""),
            archs=para.get("Architectures", "").replace(" ", ","),
            trusted=para.get("Trusted", ""),
            arch=arch,
            notes=notes,
        )


def _sources(
    editor: Ext4Editor,
    origin: str,
    *,
    uris: list[str],
    suites: list[str],
    components: list[str],
    signed_by: str,
    archs: str,
    trusted: str,
    arch: str,
    notes: list[str],
) -> Iterable[Source]:
    if archs and arch not in archs.split(","):
        return
    if trusted.lower() == "yes":
        notes.append(f"apt source {origin} not used: trusted=yes means it has no signature to check")
        return
    usable = []
    for uri in uris:
        if not uri.startswith(("http://", "https://")):
            notes.append(f"apt source {origin} not used: only http and https archives are fetched ({uri})")
            continue
        for suite in suites:
            if suite.endswith("/") or not components:
                notes.append(f"apt source {origin} not used: flat repositories are not supported ({suite})")
                continue
            usable.append((uri.rstrip("/"), suite))
    if not usable:
        return
    if "BEGIN PGP PUBLIC KEY BLOCK" in signed_by:  # deb822 allows the key itself in Signed-By
        text = "\n".join("" if ln.strip() == "." else ln.strip() for ln in signed_by.splitlines())
        keyrings: tuple[Keyring, ...] = (_keyring(text.encode(), f"{origin} Signed-By"),)
    elif signed_by:
        paths = [p for p in re.split(r"[,\s]+", signed_by) if p]
        if not all(p.startswith("/") for p in paths):
            notes.append(f"apt source {origin} not used: Signed-By by fingerprint is not supported here")
            return
        keyrings = tuple(_read_keyring(editor, p, origin) for p in paths)
    else:
        keyrings = default_keyrings(editor)
    for uri, suite in usable:
        yield Source(uri, suite, tuple(components), keyrings, origin)


def read(editor: Ext4Editor) -> BaseApt:
    installed = read_status(editor)
    arch = architecture(installed)
    notes: list[str] = []
    sources: list[Source] = []
    main = editor.read(SOURCES)
    if main is not None:
        sources += _one_line(editor, SOURCES, main.decode("utf-8", "replace"), arch, notes)
    for name in sorted(editor.listdir(SOURCES_D) or {}):
        path = f"{SOURCES_D}/{name}"
        if name.endswith(".list"):
            text = (editor.read_followed(path) or b"").decode("utf-8", "replace")
            sources += _one_line(editor, path, text, arch, notes)
        elif name.endswith(".sources"):
            text = (editor.read_followed(path) or b"").decode("utf-8", "replace")
            sources += _deb822(editor, path, text, arch, notes)
    for s in sources:
        if not s.keyrings:
            raise ImageError(
                f"base image: apt source {s.origin} has no signed-by and {TRUSTED_D} holds no keys: "
                "the base trusts nothing to verify it with"
            )
    return BaseApt(arch, sources, installed, notes)
