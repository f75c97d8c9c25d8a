"""The camera stack on the card: python3-picamera2's closure fetched from the base's own apt sources,
verified with the base's own keys, cached for --offline, installed by first boot's apt.

Real all the way: .debs made with dpkg-deb, an archive clear-signed with a throwaway gpg key and served
on 127.0.0.1, a base image whose root carries the key and a sources.list naming that URL, gpgv for the
signature, debugfs to look inside the built image, and apt-get --simulate on a throwaway root to show
the card's local repository resolves with real apt.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import aptkit
import pytest
from aptkit import CLOSURE, Archive, Server, base_files
from bodycam import cli
from bodycam.image import aptbase, aptrepo, debclosure, firstboot
from bodycam.image.aptbase import Installed, Keyring, Source
from bodycam.image.build import BuildOptions, build
from bodycam.image.progress import Progress
from bodycam.image.rootfs import Ext4Editor
from bodycam.image.tools import ImageError, require
from image_fixtures import ROOT_GROW
from imagekit import Ext4View, make_base, partitions, sh

# One pytest-xdist worker runs every image test: they share the session's wheel cache (image_fixtures.py).
pytestmark = pytest.mark.xdist_group("sd-image")


def test_tools_are_installed() -> None:
    """Fail loudly (scripts/_bootstrap.sh installs them): a skipped archive test proves nothing."""
    require("gpg", "gpgv", "dpkg-deb", "apt-get")


@pytest.fixture(scope="module", autouse=True)
def _no_gpg_agents_left() -> Iterator[None]:
    yield
    aptkit.stop_agents()


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    d = tmp_path_factory.mktemp("archive")
    return aptkit.make_archive(d / "repo", d / "gnupg")


@pytest.fixture
def serve(archive: Archive, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """serve(mutate=None): a copy of the archive (changed by ``mutate(copy)``) on its own port."""
    servers: list[Server] = []

    def start(mutate: Callable[[Archive], None] | None = None) -> Server:
        root = tmp_path / f"served-{len(servers)}"
        shutil.copytree(archive.root, root)
        copy = Archive(root, archive.gnupg, archive.key, archive.key_asc)
        if mutate:
            mutate(copy)
        servers.append(Server(root))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _base(tmp_path: Path, url: str, key: bytes, name: str = "base", **kw: str) -> Path:
    return make_base(tmp_path / f"{name}.img", extra=base_files(url, key, **kw))


def _build(
    inputs: dict[str, Path],
    wheel_cache: Path,
    source: Path,
    base: Path,
    out: Path,
    debs: Path,
    *,
    offline: bool = False,
    log: io.StringIO | None = None,
) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    build(
        BuildOptions(
            base=base,
            config=inputs["config"],
            ca=inputs["ca"],
            output=out,
            wheels=wheel_cache,
            debs=debs,
            offline=offline,
            root_grow=ROOT_GROW,
            source=source,
        ),
        Progress(stream=log or io.StringIO()),
    )
    return out


def _wheels_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """An online camera-stack build must not re-download wheels here: the wheel cache is the session's."""
    from bodycam.image import wheels

    monkeypatch.setattr(wheels, "refresh", lambda *a, **kw: None)


# ---- resolution (no I/O) --------------------------------------------------------------------------


def _candidates(archive: Archive) -> list[debclosure.Candidate]:
    return aptrepo.parse_packages((archive.packages_path / "Packages").read_bytes(), "http://x", "arm64")


def _installed() -> dict[str, Installed]:
    return {n: Installed(n, v, a) for n, v, a in aptkit.INSTALLED}


def test_closure_follows_apt_rules(archive: Archive) -> None:
    chosen = debclosure.closure(_candidates(archive), _installed())
    assert [c.package for c in chosen] == CLOSURE
    versions = {c.package: c.version for c in chosen}
    assert versions["python3-libcamera"] == "0.3.2-1", "the highest version meeting >= 0.2"
    assert versions["libcamera0.3"] == "0.3.2-1", "the base's 0.3.0 does not meet >= 0.3.2: upgraded"
    assert "python3-bar" not in versions, "python3-foo, the installed alternative, wins"
    assert "python3-pyav" not in versions and "python3-unrelated" not in versions


def test_closure_is_empty_when_the_base_has_everything(archive: Archive) -> None:
    installed = _installed()
    for c in debclosure.closure(_candidates(archive), installed):
        installed[c.package] = Installed(c.package, c.version, c.architecture, c.provides)
    assert debclosure.closure(_candidates(archive), installed) == []


def test_unmet_and_conflicting_relations_say_which_chain(archive: Archive) -> None:
    cands = [c for c in _candidates(archive) if c.package != "libavtiny59"]
    with pytest.raises(ImageError, match=r"python3-picamera2 -> python3-av needs libavtiny59, which no apt"):
        debclosure.closure(cands, _installed())
    with pytest.raises(ImageError, match="no apt source of the base image offers python3-picamera2"):
        debclosure.closure([c for c in cands if c.package != "python3-picamera2"], _installed())
    # libcamera0.3 must be >= 0.3.2 for python3-libcamera and << 0.3.1 for a second root: one version only.
    pinned = debclosure.Candidate(
        "python3-pinned", "1", "all", "libcamera0.3 (<< 0.3.1)", "", "x.deb", 1, "0" * 64, "http://x", ""
    )
    with pytest.raises(ImageError, match=r"cannot install python3-(libcamera|pinned)"):
        debclosure.closure(
            [*_candidates(archive), pinned], _installed(), ["python3-picamera2", "python3-pinned"]
        )


# ---- what the base trusts ---------------------------------------------------------------------------


def test_base_apt_config_is_read_from_the_image(tmp_path: Path, archive: Archive) -> None:
    """deb822 .sources with Signed-By, a keyring reached through a symlink, an armored .asc key."""
    files = base_files("http://127.0.0.1:9/", archive.key, key_style="signed-by")
    files["usr/share/keyrings/other.asc"] = archive.key_asc
    make_base(
        tmp_path / "b.img",
        extra=files,
        links={"etc/apt/trusted.gpg.d/other.asc": "../../../usr/share/keyrings/other.asc"},
    )
    editor = Ext4Editor(tmp_path / "b.img.parts/root.ext4", {})
    base = aptbase.read(editor)
    assert base.architecture == "arm64"
    assert set(base.installed) == {n for n, _, _ in aptkit.INSTALLED}, "config-files only is not installed"
    [src] = base.sources
    assert (src.uri, src.suite, src.components) == ("http://127.0.0.1:9", "bookworm", ("main",))
    assert [k.data for k in src.keyrings] == [archive.key]
    assert [k.data for k in aptbase.default_keyrings(editor)] == [archive.key], "the .asc, dearmored"


def test_inline_signed_by_and_skipped_sources(archive: Archive) -> None:
    """deb822 may carry the key itself in Signed-By ("." lines are blank lines); one-line sources for
    another architecture, deb-src, trusted=yes and non-http schemes are not used (the last two with a note)."""
    armored = archive.key_asc.decode().strip().splitlines()
    inline = "\n".join(" " + (ln if ln else ".") for ln in armored)
    text = "Types: deb deb-src\nURIs: https://archive.example/debian/\nSuites: bookworm\nComponents: main\n"
    notes: list[str] = []
    [src] = aptbase._deb822(None, "t.sources", text + f"Signed-By:\n{inline}\n", "arm64", notes)  # type: ignore[arg-type]
    assert src.uri == "https://archive.example/debian" and [k.data for k in src.keyrings] == [archive.key]
    lines = (
        "deb [arch=armhf] http://a.example/ bookworm main\n"
        "deb-src http://a.example/ bookworm main\n"
        "deb [trusted=yes] http://b.example/ bookworm main\n"
        "deb cdrom:[Debian]/ bookworm main\n"
    )
    assert list(aptbase._one_line(None, "sources.list", lines, "arm64", notes)) == []  # type: ignore[arg-type]
    assert len(notes) == 2 and "trusted=yes" in notes[0] and "only http and https" in notes[1]


# ---- fetching and verifying ---------------------------------------------------------------------------


def _repo(tmp_path: Path, offline: bool = False) -> aptrepo.Repo:
    return aptrepo.Repo(
        tmp_path / "cache", tmp_path / "work", arch="arm64", offline=offline, progress=Progress(quiet=True)
    )


def _source(url: str, key: bytes) -> Source:
    return Source(url, "bookworm", ("main",), (Keyring("test", key),), "test sources.list:1")


def test_repo_verifies_and_caches(serve: Callable[..., Server], archive: Archive, tmp_path: Path) -> None:
    server = serve()
    src = _source(server.url, archive.key)
    online = _repo(tmp_path).packages(src)
    server.close()
    assert online == _repo(tmp_path, offline=True).packages(src), "offline: the same, from the cache"
    assert (tmp_path / f"cache/lists/127.0.0.1_{server.url.rsplit(':', 1)[1]}_bookworm/InRelease").exists()
    # A cached index that no longer matches the cached InRelease is refused offline.
    cached = next((tmp_path / "cache/lists").rglob("Packages.xz"))
    cached.write_bytes(cached.read_bytes()[:-1] + b"\0")
    with pytest.raises(
        ImageError, match="--offline: the cache .* has no verified main/binary-arm64/Packages.xz"
    ):
        _repo(tmp_path, offline=True).packages(src)


def test_foreign_or_altered_signatures_are_refused(
    serve: Callable[..., Server], archive: Archive, tmp_path: Path
) -> None:
    other = tmp_path / "other-gnupg"
    aptkit.make_key(other, "Mallory <m@example.org>")
    server = serve(lambda a: a.sign_release(other))
    with pytest.raises(ImageError, match="InRelease: signed by a key the base image does not trust"):
        _repo(tmp_path).packages(_source(server.url, archive.key))

    def alter(a: Archive) -> None:  # a signed hash line changed after signing
        p = a.root / "dists/bookworm/InRelease"
        p.write_text(p.read_text().replace("main/binary-arm64/Packages.xz", "main/binary-arm64/Packages.gz"))

    server = serve(alter)
    with pytest.raises(ImageError, match=r"InRelease: BAD signature \(the file was altered\)"):
        _repo(tmp_path).packages(_source(server.url, archive.key))
    assert not list((tmp_path / "cache").rglob("InRelease")), "nothing unverified enters the cache"


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda a: a.sign_release(extra="Valid-Until: Wed, 01 Jan 2020 00:00:00 UTC\n"), "expired"),
        (lambda a: a.sign_release(codename="trixie"), "signed for suite 'stable' / codename 'trixie'"),
    ],
)
def test_stale_or_wrong_release_is_refused(
    mutate: Callable[[Archive], None],
    expect: str,
    serve: Callable[..., Server],
    archive: Archive,
    tmp_path: Path,
) -> None:
    server = serve(mutate)
    with pytest.raises(ImageError, match=expect):
        _repo(tmp_path).packages(_source(server.url, archive.key))
    assert not list((tmp_path / "cache").rglob("*InRelease*")), "nothing unverified enters the cache"


# ---- whole builds ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack_build(
    archive: Archive,
    inputs: dict[str, Path],
    wheel_cache: Path,
    source: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, object]:
    """An online build against the archive on 127.0.0.1, whose server is gone afterwards."""
    d = tmp_path_factory.mktemp("stack")
    server = Server(archive.root)
    try:
        base = _base(d, server.url, archive.key)
        log = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            _wheels_offline(mp)
            img = _build(inputs, wheel_cache, source, base, d / "out/a.img", d / "debs", log=log)
    finally:
        server.close()
    return {"img": img, "base": base, "debs": d / "debs", "log": log.getvalue(), "dir": d}


def test_image_carries_exactly_the_closure(stack_build: dict[str, object], archive: Archive) -> None:
    img = stack_build["img"]
    assert isinstance(img, Path)
    root = Ext4View(img, partitions(img)[1])
    debs = root.ls("/opt/bodycam/debs")
    names = sorted(d.split("_")[0] for d in debs if d.endswith(".deb"))
    assert names == CLOSURE
    assert set(debs) - {d for d in debs if d.endswith(".deb")} == {"Packages", "Release", "local.list"}
    for d in debs:
        if d.endswith(".deb"):
            assert root.cat(f"/opt/bodycam/debs/{d}") == (archive.root / "pool/main" / d).read_bytes()
    packages = root.cat("/opt/bodycam/debs/Packages").decode()
    assert "Filename: ./python3-libcamera_0.3.2-1_arm64.deb" in packages and "0.1.0-1" not in packages
    assert root.cat("/opt/bodycam/debs/local.list") == b"deb [trusted=yes] file:/opt/bodycam/debs ./\n"
    info = json.loads(root.cat("/etc/bodycam/image.json"))
    assert sorted(e["file"].split("_")[0] for e in info["debs"]) == CLOSURE
    log = stack_build["log"]
    assert isinstance(log, str)
    assert (
        "[3/9] camera stack" in log
        and "6 packages not in the base" in log
        and "upgrading libcamera0.3" in log
    )
    assert "python3-av_10.0.0-1_arm64.deb: 100%" in log  # download progress
    root.fsck()


def test_offline_rebuild_from_the_cache_is_byte_identical(
    stack_build: dict[str, object],
    inputs: dict[str, Path],
    wheel_cache: Path,
    source: Path,
    tmp_path: Path,
) -> None:
    """The archive's server is gone: only the cache, re-verified, can give the same bytes."""
    base, debs, img = stack_build["base"], stack_build["debs"], stack_build["img"]
    assert isinstance(base, Path) and isinstance(debs, Path) and isinstance(img, Path)
    again = _build(inputs, wheel_cache, source, base, tmp_path / "b.img", debs, offline=True)
    assert sh("sha256sum", again).split()[0] == sh("sha256sum", img).split()[0]


def _throwaway_root(img: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A root with the base's dpkg status and the card's /opt/bodycam/debs, and an environment in which
    apt and dpkg see that root only (APT_CONFIG is read before, and instead of, the host's apt.conf.d).
    dpkg here is the build machine's (amd64): --force-architecture lets it unpack the arm64 test .debs, and
    --force-depends lets it configure them, because to an amd64 dpkg an Architecture: all package's
    dependencies on arm64 packages are unmet (apt has resolved the graph as arm64 before dpkg runs)."""
    p2 = partitions(img)[1]
    root = tmp_path / "root"
    for d in (
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/apt/lists/partial",
        "var/log",
        "opt/bodycam",
    ):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(aptkit.status_file())
    sh("debugfs", "-R", f"rdump /opt/bodycam/debs {root / 'opt/bodycam'}", f"{img}?offset={p2.offset}")
    # The card's list names file:/opt/bodycam/debs; here that folder is under the throwaway root.
    (root / "opt/bodycam/debs/local.list").write_text(f"deb [trusted=yes] file:{root}/opt/bodycam/debs ./\n")
    empty = root / "empty.d"
    empty.mkdir()
    conf = tmp_path / "apt.conf"
    conf.write_text(
        f'Dir "{root}/";\nDir::State::status "{root}/var/lib/dpkg/status";\n'
        f'Dir::Etc::SourceList "{root}/opt/bodycam/debs/local.list";\nDir::Etc::SourceParts "{empty}";\n'
        f'Dir::Etc::Parts "{empty}";\nDir::Etc::PreferencesParts "{empty}";\n'
        'APT::Architecture "arm64";\nAPT::Architectures { "arm64"; };\nAPT::Sandbox::User "root";\n'
        f'Debug::NoLocking "true";\nDPkg::Options {{ "--root={root}"; "--log={root}/var/log/dpkg.log";\n'
        '  "--force-architecture"; "--force-depends"; };\n'
    )
    return root, dict(os.environ, APT_CONFIG=str(conf), LC_ALL="C")


def test_card_repo_resolves_with_real_apt(stack_build: dict[str, object], tmp_path: Path) -> None:
    """apt-get, pointed at a throwaway root with the base's dpkg status and the card's repository only,
    installs python3-picamera2 (simulated) with exactly the packages the build put on the card."""
    img = stack_build["img"]
    assert isinstance(img, Path)
    root, env = _throwaway_root(img, tmp_path)
    run = lambda *a: subprocess.run(["apt-get", *a], capture_output=True, text=True, env=env)  # noqa: E731
    update = run("update")
    out = update.stdout + update.stderr
    assert update.returncode == 0 and "E:" not in out and "W:" not in out, out
    sim = run("install", "--simulate", "--no-install-recommends", "python3-picamera2")
    assert sim.returncode == 0, sim.stdout + sim.stderr
    inst = sorted(ln.split()[1] for ln in sim.stdout.splitlines() if ln.startswith("Inst "))
    assert inst == CLOSURE, sim.stdout
    assert "Inst libcamera0.3 [0.3.0-1] (0.3.2-1" in sim.stdout, "an upgrade of the base's version"


def test_first_boot_step_installs_the_card_repo_with_real_apt_and_dpkg(
    stack_build: dict[str, object], tmp_path: Path
) -> None:
    """firstboot.step_camera's own commands, run for real by apt-get and dpkg on a throwaway root (dpkg
    --root, its database there too), twice: the second run changes nothing."""
    img = stack_build["img"]
    assert isinstance(img, Path)
    root, env = _throwaway_root(img, tmp_path)
    admindir = f"--admindir={root}/var/lib/dpkg"
    ran: list[str] = []

    def run(cmd: list[str], *, input: str | None = None, timeout: float | None = None):  # type: ignore[no-untyped-def]  # noqa: A002
        ran.append(cmd[0])
        extra = {"dpkg": [f"--root={root}"], "dpkg-query": [admindir], "apt-get": []}[cmd[0]]
        return subprocess.run([cmd[0], *extra, *cmd[1:]], capture_output=True, text=True, env=env)

    host = firstboot.Host(root=root, run=run, log=lambda _: None)
    assert firstboot.step_camera(host) == "installed python3-picamera2 from /opt/bodycam/debs"
    assert ran == ["dpkg", "apt-get", "apt-get", "dpkg-query"]
    status = sh("dpkg-query", admindir, "-W", "-f=${Package} ${Version} ${Status}\n")
    installed = {ln.split()[0]: ln.split()[1] for ln in status.splitlines() if ln.endswith("ok installed")}
    assert set(CLOSURE) <= set(installed) and installed["libcamera0.3"] == "0.3.2-1"
    assert "python3-bar" not in installed and "python3-pyav" not in installed
    assert (root / "usr/share/doc/python3-picamera2/README").exists()
    auto = (root / "var/lib/apt/extended_states").read_text()
    assert "Package: python3-libcamera\nArchitecture: arm64\nAuto-Installed: 1" in auto
    before = (root / "var/lib/dpkg/status").read_bytes()
    assert firstboot.step_camera(host).startswith("installed python3-picamera2")
    assert (root / "var/lib/dpkg/status").read_bytes() == before


# ---- failures: one line, no image ----------------------------------------------------------------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["image", "build", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _tamper_packages(a: Archive) -> None:
    for name in ("Packages", "Packages.xz"):
        p = a.packages_path / name
        data = p.read_bytes()
        p.write_bytes(
            data.replace(b"Version: 10.0.0-1", b"Version: 10.0.0-2") if name == "Packages" else data[:-4]
        )


def _tamper_deb(a: Archive) -> None:
    deb = a.root / "pool/main/python3-av_10.0.0-1_arm64.deb"
    deb.write_bytes(deb.read_bytes()[:-1] + b"X")


def _foreign_signature(a: Archive) -> None:
    other = a.root.parent / "mallory-gnupg"
    aptkit.make_key(other, "Mallory <m@example.org>")
    a.sign_release(other)


@pytest.mark.parametrize(
    "case, expect",
    [
        ("packages", "Packages.xz: SHA-256 .* does not match the signed index"),
        ("deb", "python3-av_10.0.0-1_arm64.deb: SHA-256 .* does not match the signed index"),
        ("signature", "InRelease: signed by a key the base image does not trust"),
        ("no_source", "no usable apt source .* build with --no-camera-stack"),
        (
            "offline_empty",
            "--offline: no cached InRelease for http://127.0.0.1:.* bookworm in .*: build once",
        ),
    ],
)
def test_bad_archive_or_cache_gets_one_line_and_no_image(
    case: str,
    expect: str,
    serve: Callable[..., Server],
    archive: Archive,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mutate = {"packages": _tamper_packages, "deb": _tamper_deb, "signature": _foreign_signature}.get(case)
    server = serve(mutate)
    base = _base(
        tmp_path, server.url, archive.key, key_style="none" if case == "no_source" else "trusted.gpg.d"
    )
    out = tmp_path / "out" / "o.img"
    out.parent.mkdir()
    args = [str(base), "--config", str(inputs["config"]), "--ca", str(inputs["ca"]), "-o", str(out)]
    args += ["--debs", str(tmp_path / "debs"), "--wheels", str(tmp_path / "no-wheels")]
    if case == "offline_empty":
        args.append("--offline")
    import re

    err = _cli(args, capsys)
    assert re.search(expect, err), err
    assert not out.exists() and not list(out.parent.iterdir())
    cached = list((tmp_path / "debs").rglob("*.deb")) if (tmp_path / "debs").exists() else []
    assert not any(p.name.startswith("python3-av") for p in cached), "a bad .deb never enters the cache"


def test_no_camera_stack_flag_and_other_sources_skip_the_fetch(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--no-camera-stack builds (the simulation images of test_image.py) never touch apt."""
    base = make_base(tmp_path / "bare.img")  # no apt config, no dpkg status at all
    out = tmp_path / "o.img"
    args = [str(base), "--config", str(inputs["config"]), "--ca", str(inputs["ca"]), "-o", str(out)]
    err = _cli([*args, "--offline", "--wheels", str(tmp_path / "none")], capsys)
    assert "no /var/lib/dpkg/status" in err
    err = _cli([*args, "--offline", "--wheels", str(tmp_path / "none"), "--no-camera-stack"], capsys)
    assert "wheel cache" in err, "got past the camera stack to the wheels"
