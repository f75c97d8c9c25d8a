"""Fetch and verify apt indexes and .debs the way apt does, into a cache that offline builds reuse.

Chain of trust, checked on every build, online or not (an offline build re-verifies the cached files):
  base keyrings --gpgv--> dists/SUITE/InRelease --SHA256 + size--> COMPONENT/binary-ARCH/Packages(.xz|.gz)
  --SHA256 + size--> each .deb
Only the text gpgv says was signed is parsed (``gpgv --output``), never the clear-signed file itself;
signatures made with MD5/SHA-1/RIPEMD-160 are refused, as apt refuses them. Online, an InRelease past
its Valid-Until is refused (a stale or replayed mirror); offline, the cached one is accepted as it was
when it was fetched, so the same cache rebuilds the same image.

Cache (default ~/.cache/bodycam/debs):
  lists/<host_path_suite>/InRelease and the Packages files as named in it
  pool/<package>_<version>_<arch>.deb
Files enter the cache only after they verified (written to a temporary name, then renamed).
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests
from debian import deb822

from ..digest import sha256_file
from .aptbase import Source
from .debclosure import Candidate
from .progress import Progress
from .tools import ImageError, human, run

WEAK_HASHES = {"1": "MD5", "2": "SHA-1", "3": "RIPEMD-160"}  # OpenPGP hash algorithm ids
TIMEOUT = 60


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bodycam" / "debs"




@dataclass(frozen=True)
class IndexFile:
    path: str  # relative to dists/SUITE/
    sha256: str
    size: int


class Repo:
    """Indexes and .debs of the base's sources, verified; ``offline`` uses the cache alone."""

    def __init__(
        self,
        cache: Path,
        work: Path,
        *,
        arch: str,
        offline: bool,
        progress: Progress,
        env: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.cache, self.work, self.arch, self.offline = cache, work, arch, offline
        self.progress, self.env = progress, env
        self.http = session or requests.Session()
        self.work.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------------

    def lists_dir(self, source: Source) -> Path:
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", re.sub(r"^\w+://", "", source.uri) + "_" + source.suite)
        return self.cache / "lists" / slug.strip("_")

    def pool_path(self, c: Candidate) -> Path:
        return self.cache / "pool" / c.deb_name

    # -- fetching ---------------------------------------------------------------------------------

    def _download(self, url: str, dest: Path, *, size: int | None = None, label: str | None = None) -> Path:
        """``url`` into a temporary file beside ``dest``; the caller verifies, then renames."""
        if self.offline:
            raise AssertionError("no downloads offline")
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.http.get(url, stream=True, timeout=TIMEOUT) as resp:
                if resp.status_code != 200:
                    raise ImageError(
                        f"fetching {url}: HTTP {resp.status_code}; is the base image's apt source right and "
                        "reachable? (or build with --offline from a filled --debs cache)"
                    )
                with open(tmp, "wb") as f:
                    if label:
                        with self.progress.bytes(
                            label, size or int(resp.headers.get("content-length", 0))
                        ) as c:
                            for chunk in resp.iter_content(1 << 16):
                                f.write(chunk)
                                c.add(len(chunk))
                    else:
                        for chunk in resp.iter_content(1 << 16):
                            f.write(chunk)
        except requests.RequestException as e:
            tmp.unlink(missing_ok=True)
            reason = type(e).__name__ if not str(e) else str(e).splitlines()[0][:160]
            raise ImageError(
                f"fetching {url}: {reason}; check the network, or build with --offline from a filled --debs cache"
            ) from None
        return tmp

    def _verified(self, tmp: Path, dest: Path, sha256: str, size: int, what: str) -> Path:
        got_size = tmp.stat().st_size
        got = sha256_file(tmp)
        if got != sha256 or got_size != size:
            tmp.unlink(missing_ok=True)
            raise ImageError(
                f"{what}: SHA-256 {got[:16]}… ({got_size} bytes) does not match the signed index "
                f"({sha256[:16]}…, {size} bytes): altered by a mirror or proxy; try again, or delete it from the cache"
            )
        os.replace(tmp, dest)
        return dest

    # -- InRelease --------------------------------------------------------------------------------

    def release(self, source: Source) -> deb822.Release:
        """The signed part of the source's InRelease, verified against the keyrings the base trusts."""
        cached = self.lists_dir(source) / "InRelease"
        url = f"{source.uri}/dists/{source.suite}/InRelease"
        if self.offline:
            if not cached.exists():
                raise ImageError(
                    f"--offline: no cached InRelease for {source.name} in {self.cache}: "
                    "build once without --offline to fill the cache"
                )
            path = cached
        else:
            path = self._download(url, cached)
        try:
            rel = self._check_release(self.verify_signature(path, source, url), source, url)
            if path != cached:
                os.replace(path, cached)  # only now: a verified InRelease
        finally:
            if path != cached:
                path.unlink(missing_ok=True)
        return rel

    def _check_release(self, signed: str, source: Source, url: str) -> deb822.Release:
        rel = deb822.Release(signed)
        if source.suite not in (rel.get("Suite"), rel.get("Codename")):
            raise ImageError(
                f"{url}: signed for suite {rel.get('Suite')!r} / codename {rel.get('Codename')!r}, not "
                f"{source.suite!r}: the mirror serves the wrong release; check {source.origin}"
            )
        until = rel.get("Valid-Until")
        if until and not self.offline:  # offline, the cache is taken as it was when it was verified
            try:
                expired = parsedate_to_datetime(until) < datetime.now(UTC)
            except (TypeError, ValueError):
                raise ImageError(f"{url}: unreadable Valid-Until {until!r}") from None
            if expired:
                raise ImageError(f"{url}: expired (Valid-Until {until}): the mirror is stale; try another")
        return rel

    def verify_signature(self, path: Path, source: Source, url: str) -> str:
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            home = Path(tmp)
            home.chmod(0o700)
            cmd: list[str | Path] = [
                "gpgv",
                "--homedir",
                home,
                "--status-fd",
                "1",
                "--output",
                home / "signed",
            ]
            for n, k in enumerate(source.keyrings):
                (home / f"k{n}.gpg").write_bytes(k.data)
                cmd += ["--keyring", home / f"k{n}.gpg"]
            proc = run([*cmd, path], what=f"verifying {url}", env=self.env, ok_codes=(0, 1, 2))
            status = proc.stdout.decode(errors="replace")
            keys = ", ".join(sorted({k.origin for k in source.keyrings}))
            # As apt: good if some trusted key made a good signature and no signature is bad; another
            # signature by a key the base does not have (archives sign with two) does not matter.
            strong = [
                f.split()
                for f in re.findall(r"^\[GNUPG:\] VALIDSIG (.*)$", status, re.M)
                if len(f.split()) > 7 and f.split()[7] not in WEAK_HASHES
            ]
            signed = home / "signed"
            if "[GNUPG:] GOODSIG" not in status or "[GNUPG:] BADSIG" in status or not signed.exists():
                if "[GNUPG:] BADSIG" in status:
                    why = "BAD signature (the file was altered)"
                elif "EXPKEYSIG" in status or "REVKEYSIG" in status:
                    why = "signed by an expired or revoked key"
                elif "NO_PUBKEY" in status:
                    why = "signed by a key the base image does not trust"
                else:
                    why = "not a valid clear-signed InRelease"
                raise ImageError(f"{url}: {why} (keys from {keys}); check {source.origin} and its signed-by")
            if not strong:
                raise ImageError(f"{url}: signed only with MD5/SHA-1/RIPEMD-160, which apt no longer accepts")
            return signed.read_text(errors="replace")

    # -- Packages ---------------------------------------------------------------------------------

    def index_files(self, source: Source, rel: deb822.Release) -> Iterator[IndexFile]:
        listed = {e["name"]: IndexFile(e["name"], e["sha256"], int(e["size"])) for e in rel.get("SHA256", [])}
        if not listed:
            raise ImageError(f"{source.uri}/dists/{source.suite}/InRelease lists no SHA256 sums")
        for comp in source.components:
            stem = f"{comp}/binary-{self.arch}/Packages"
            found = next((listed[stem + ext] for ext in (".xz", ".gz", "") if stem + ext in listed), None)
            if found is None:
                self.progress.info(f"note: {source.name} has no {stem} index")
                continue
            yield found

    def packages(self, source: Source) -> list[Candidate]:
        """Every package in the source's indexes for this architecture, verified."""
        rel = self.release(source)
        out: list[Candidate] = []
        for entry in self.index_files(source, rel):
            local = self.lists_dir(source) / entry.path
            url = f"{source.uri}/dists/{source.suite}/{entry.path}"
            if not (
                local.exists() and local.stat().st_size == entry.size and sha256_file(local) == entry.sha256
            ):
                if self.offline:
                    raise ImageError(
                        f"--offline: the cache {self.cache} has no verified {entry.path} for {source.name} "
                        "(or not the one its cached InRelease names): build once without --offline"
                    )
                self.progress.info(f"fetching {url} ({human(entry.size)})")
                self._verified(self._download(url, local), local, entry.sha256, entry.size, url)
            out += parse_packages(_decompress(local), source.uri, self.arch)
        return out

    # -- .debs ------------------------------------------------------------------------------------

    def deb(self, c: Candidate) -> Path:
        """The verified .deb in the cache."""
        dest = self.pool_path(c)
        if dest.exists() and dest.stat().st_size == c.size and sha256_file(dest) == c.sha256:
            return dest
        url = f"{c.base_uri}/{c.filename}"
        if self.offline:
            raise ImageError(
                f"--offline: {c.deb_name} is not in the cache {self.cache / 'pool'} (or does not match its "
                "index): build once without --offline"
            )
        tmp = self._download(url, dest, size=c.size, label=c.deb_name)
        return self._verified(tmp, dest, c.sha256, c.size, url)


def _decompress(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        if path.name.endswith(".xz"):
            return lzma.decompress(data)
        if path.name.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as e:
        raise ImageError(f"{path}: cannot decompress ({e}); delete it from the cache") from None
    return data


def parse_packages(data: bytes, base_uri: str, arch: str) -> list[Candidate]:
    out = []
    for p in deb822.Packages.iter_paragraphs(data.decode("utf-8", "replace").splitlines(), use_apt_pkg=False):
        if p.get("Architecture") not in (arch, "all") or not all(
            k in p for k in ("Package", "Filename", "SHA256")
        ):
            continue
        depends = ", ".join(x for x in (p.get("Pre-Depends", ""), p.get("Depends", "")) if x.strip())
        out.append(
            Candidate(
                package=p["Package"],
                version=p["Version"],
                architecture=p["Architecture"],
                depends=depends,
                provides=p.get("Provides", ""),
                filename=p["Filename"],
                size=int(p.get("Size", "0")),
                sha256=p["SHA256"],
                base_uri=base_uri,
                stanza=p.dump(),
            )
        )
    return out


def copy_into(src: Path, dest: Path) -> None:
    """A hard link when the cache and the work folder share a file system, else a copy."""
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
