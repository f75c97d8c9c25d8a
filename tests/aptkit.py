"""A real, signed, tiny apt archive on 127.0.0.1, and a dpkg status for a fake Raspberry Pi OS Lite base.

Real .debs (``dpkg-deb --build``), ``Packages`` + ``Packages.xz``, a ``Release`` clear-signed into
``InRelease`` with a throwaway gpg key, served by http.server in a thread. The package graph exercises
what the resolver must get right, like the real python3-picamera2:

  python3-picamera2 (all)  Depends: python3:any (>= 3.11)           met by the base
                                    python3-libcamera (>= 0.2)      two versions: the highest is taken
                                    python3-av | python3-pyav       first alternative, Pre-Depends inside
                                    python3-bar | python3-foo       python3-foo is installed: nothing added
                                    python3-jpeg-backend            virtual, Provided by python3-simplejpeg
  python3-libcamera 0.3.2  Depends: libcamera0.3 (>= 0.3.2)         base has 0.3.0: upgraded
"""

from __future__ import annotations

import hashlib
import http.server
import lzma
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

SUITE = "bookworm"
ARCH = "arm64"

# (name, version, arch, extra control fields)
PACKAGES: list[tuple[str, str, str, dict[str, str]]] = [
    (
        "python3-picamera2",
        "0.3.19-1",
        "all",
        {
            "Depends": "python3:any (>= 3.11), python3-libcamera (>= 0.2), python3-av | python3-pyav, "
            "python3-bar | python3-foo, python3-jpeg-backend"
        },
    ),
    ("python3-libcamera", "0.1.0-1", ARCH, {"Depends": "libcamera0.1"}),
    ("python3-libcamera", "0.3.2-1", ARCH, {"Depends": "libcamera0.3 (>= 0.3.2), python3 (>= 3.11~)"}),
    ("libcamera0.3", "0.3.2-1", ARCH, {"Depends": "libc6 (>= 2.34)"}),
    ("python3-av", "10.0.0-1", ARCH, {"Pre-Depends": "libavtiny59"}),
    ("libavtiny59", "5.1.6-1", ARCH, {}),
    ("python3-pyav", "1.0-1", ARCH, {}),
    ("python3-bar", "2.0-1", "all", {}),
    ("python3-simplejpeg", "1.6.6-1", ARCH, {"Provides": "python3-jpeg-backend"}),
    ("python3-unrelated", "1.0-1", ARCH, {}),
]
CLOSURE = [
    "libavtiny59",
    "libcamera0.3",
    "python3-av",
    "python3-libcamera",
    "python3-picamera2",
    "python3-simplejpeg",
]

# The fake base's /var/lib/dpkg/status: what Lite has that the graph above touches.
INSTALLED = [
    ("dpkg", "1.21.22", ARCH),
    ("libc6", "2.36-9+rpt2+deb12u4", ARCH),
    ("python3", "3.11.2-1+b1", ARCH),
    ("python3-foo", "1.0-1", "all"),
    ("libcamera0.3", "0.3.0-1", ARCH),
]


def status_file() -> str:
    stanzas = []
    for name, version, arch in INSTALLED:
        multi = "Multi-Arch: allowed\n" if name == "python3" else ""  # as Debian's: python3:any works
        stanzas.append(
            f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\n{multi}"
            f"Maintainer: Test <t@example.org>\nArchitecture: {arch}\nVersion: {version}\n"
            f"Description: {name} (fake)\n"
        )
    stanzas.append(  # removed but config files remain: not installed
        f"Package: python3-av\nStatus: deinstall ok config-files\nArchitecture: {ARCH}\nVersion: 9.0-1\n"
        "Maintainer: Test <t@example.org>\nDescription: gone\n"
    )
    return "\n".join(stanzas)


def sh(*cmd: str | Path, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, env=env, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


def make_deb(out_dir: Path, name: str, version: str, arch: str, fields: dict[str, str]) -> Path:
    tree = out_dir / f"{name}-{version}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    doc = tree / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "README").write_text(f"{name} {version}: a test package for bodycam's image build\n")
    control = (
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: Test Archive <archive@example.org>\nSection: python\nPriority: optional\n"
    )
    control += "".join(f"{k}: {v}\n" for k, v in fields.items())
    control += f"Description: {name} for tests\n"
    (tree / "DEBIAN/control").write_text(control)
    deb = out_dir / f"{name}_{version}_{arch}.deb"
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    sh("dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, deb, env=env)
    shutil.rmtree(tree)
    return deb


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Archive:
    root: Path  # served directory
    gnupg: Path  # GNUPGHOME with the archive key
    key: bytes  # the archive's public key, binary (what /etc/apt/trusted.gpg.d/*.gpg holds)
    key_asc: bytes  # the same, armored
    url: str = ""

    @property
    def packages_path(self) -> Path:
        return self.root / "dists" / SUITE / "main" / f"binary-{ARCH}"

    def write_indexes(self) -> None:
        """Packages, Packages.xz, Release and InRelease from what is in pool/."""
        stanzas = []
        for deb in sorted((self.root / "pool/main").glob("*.deb")):
            control = sh("dpkg-deb", "-f", deb).decode().rstrip("\n")
            data = deb.read_bytes()
            stanzas.append(
                f"{control}\nFilename: pool/main/{deb.name}\nSize: {len(data)}\nSHA256: {_sha256(data)}\n"
            )
        self.packages_path.mkdir(parents=True, exist_ok=True)
        packages = "\n".join(stanzas).encode()
        (self.packages_path / "Packages").write_bytes(packages)
        (self.packages_path / "Packages.xz").write_bytes(lzma.compress(packages))
        self.sign_release()

    def sign_release(self, gnupg: Path | None = None, *, codename: str = SUITE, extra: str = "") -> None:
        dists = self.root / "dists" / SUITE
        lines = []
        for f in sorted(self.packages_path.iterdir()):
            data = f.read_bytes()
            lines.append(f" {_sha256(data)} {len(data):>8} {f.relative_to(dists).as_posix()}")
        release = (
            f"Origin: Test\nLabel: Test\nSuite: stable\nCodename: {codename}\n"
            f"Date: Tue, 14 Nov 2023 22:13:20 UTC\n{extra}"
            f"Architectures: {ARCH}\nComponents: main\nSHA256:\n" + "\n".join(lines) + "\n"
        )
        (dists / "Release").write_text(release)
        (dists / "InRelease").unlink(missing_ok=True)
        gpg(
            gnupg or self.gnupg,
            "--digest-algo",
            "SHA256",
            "--clearsign",
            "-o",
            dists / "InRelease",
            dists / "Release",
        )


def gpg(home: Path, *args: str | Path) -> bytes:
    return sh(
        "gpg",
        "--homedir",
        home,
        "--batch",
        "--quiet",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        *args,
    )


HOMES: list[Path] = []  # every GNUPGHOME made here: each has a gpg-agent to stop when the tests end


def make_key(home: Path, uid: str) -> None:
    home.mkdir(parents=True, mode=0o700)
    HOMES.append(home)
    gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")


def stop_agents() -> None:
    """gpg starts an agent per home that outlives it; a test run must not leave processes behind."""
    while HOMES:
        subprocess.run(["gpgconf", "--homedir", str(HOMES.pop()), "--kill", "gpg-agent"],
                       capture_output=True, check=False)


def make_archive(root: Path, gnupg: Path) -> Archive:
    make_key(gnupg, "Test Archive <archive@example.org>")
    pool = root / "pool/main"
    pool.mkdir(parents=True)
    work = root.parent / "deb-build"
    work.mkdir(exist_ok=True)
    for name, version, arch, fields in PACKAGES:
        shutil.move(make_deb(work, name, version, arch, fields), pool)
    archive = Archive(root, gnupg, gpg(gnupg, "--export"), gpg(gnupg, "--armor", "--export"))
    archive.write_indexes()
    return archive


class Server:
    """http.server on 127.0.0.1 in a thread, serving a directory."""

    def __init__(self, directory: Path) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Quiet, directory=str(directory))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def base_files(url: str, key: bytes, *, key_style: str = "trusted.gpg.d") -> dict[str, bytes | str]:
    """Files for the fake base's root: the dpkg status, an apt source for ``url``, its key.

    key_style: "trusted.gpg.d" (Raspberry Pi OS's way: no signed-by), "signed-by" (a keyring in
    /usr/share/keyrings named by the source, deb822 .sources), or "none" (no apt source at all).
    """
    files: dict[str, bytes | str] = {"var/lib/dpkg/status": status_file()}
    if key_style == "trusted.gpg.d":
        files["etc/apt/sources.list"] = (
            f"# the Debian line is left out of the test\ndeb {url}/ {SUITE} main\n"
        )
        files["etc/apt/trusted.gpg.d/test-archive.gpg"] = key
    elif key_style == "signed-by":
        files["usr/share/keyrings/test-archive.gpg"] = key
        files["etc/apt/sources.list.d/test.sources"] = (
            f"Types: deb\nURIs: {url}\nSuites: {SUITE}\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/test-archive.gpg\n"
        )
    return files
