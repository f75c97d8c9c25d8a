"""`bodycam image build` on a synthetic Raspberry Pi OS Lite image, checked with independent tools:
sfdisk -d (partitions), fsck.vfat -n and e2fsck -fn (clean file systems), mtools and debugfs (files,
owners, modes, enabled units, passwords, no device key), and SHA-256 (same inputs, same bytes).

The aarch64 wheels are gathered for real once per session (pip download --platform ..., into the
pytest cache, so later sessions only re-check the index); builds then run --offline from that cache.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bodycam import cli
from bodycam.image import basecheck, wheels
from bodycam.image.build import BuildOptions, build
from bodycam.image.progress import Progress
from bodycam.image.tools import BUILD_TOOLS, ImageError, epoch_env, require
from image_fixtures import REPO, ROOT_GROW, SSH_KEY
from imagekit import BOOKWORM_OS_RELEASE, LABEL_ID, PARTUUID, Ext4View, make_base, partitions, sh

# One pytest-xdist worker runs every image test: they share the session's wheel cache (image_fixtures.py).
pytestmark = pytest.mark.xdist_group("sd-image")


def test_tools_are_installed() -> None:
    """Fail loudly (scripts/_bootstrap.sh installs them as root): a skipped image test proves nothing."""
    require(*BUILD_TOOLS, "fsck.vfat", "xz")


def _build(
    inputs: dict[str, Path],
    wheel_cache: Path,
    source: Path,
    out: Path,
    *,
    ssh: bool,
    base: Path | None = None,
    stream: io.StringIO | None = None,
    config: str = "config",
) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    build(
        BuildOptions(
            base=base or inputs["base"],
            config=inputs[config],
            ca=inputs["ca"],
            output=out,
            ssh_key=inputs["ssh"] if ssh else None,
            wheels=wheel_cache,
            offline=True,
            root_grow=ROOT_GROW,
            source=source,
            camera_stack=False,  # tests/test_camera_stack.py builds with it, from a signed test archive
        ),
        Progress(stream=stream or io.StringIO()),
    )
    return out


@pytest.fixture(scope="session")
def built(
    inputs: dict[str, Path], wheel_cache: Path, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """One image with an SSH key and a config that enrols and sets the clock, and the build's output."""
    log = io.StringIO()
    out = _build(
        inputs,
        wheel_cache,
        source,
        tmp_path_factory.mktemp("built") / "bodycam.img",
        ssh=True,
        stream=log,
        config="enrolled",
    )
    return out, log.getvalue()


@pytest.fixture(scope="session")
def built_plain(
    inputs: dict[str, Path], wheel_cache: Path, source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return _build(inputs, wheel_cache, source, tmp_path_factory.mktemp("plain-a") / "bodycam.img", ssh=False)


@pytest.fixture(scope="session")
def root_fs(built: tuple[Path, str]) -> Ext4View:
    return Ext4View(built[0], partitions(built[0])[1])


# ---- wheels -----------------------------------------------------------------------------------------


def test_wheel_gathering_is_real_and_for_aarch64(wheel_cache: Path, source: Path, tmp_path: Path) -> None:
    staged = wheels.stage(source, wheel_cache, tmp_path / "w", epoch_env(1_735_689_600), Progress(quiet=True))
    names = {re.split(r"-\d", w.name, maxsplit=1)[0].lower().replace("_", "-") for w in staged}
    assert {
        "av",
        "numpy",
        "opencv-python-headless",
        "cryptography",
        "gpiozero",
        "rich",
        "psutil",
        "pip",
        "bodycam",
    } <= names
    binary = [w.name for w in staged if not w.name.endswith("-none-any.whl")]
    assert binary and all(n.endswith("aarch64.whl") and ("cp311" in n or "abi3" in n) for n in binary), binary
    numpy = next(w.name for w in staged if w.name.startswith("numpy-"))
    assert numpy.startswith("numpy-1."), "picamera2's apt simplejpeg needs NumPy 1.x (image/constraints.txt)"
    assert "--platform" in wheels.platform_args() and "manylinux2014_aarch64" in wheels.platform_args()


# ---- layout and file systems -------------------------------------------------------------------------


def test_partitions(built: tuple[Path, str], inputs: dict[str, Path]) -> None:
    img = built[0]
    dump = sh("sfdisk", "-d", img)
    assert f"label-id: {LABEL_ID}" in dump and "label: dos" in dump
    base, out = partitions(inputs["base"]), partitions(img)
    assert len(out) == 3
    assert (out[0].start, out[0].size, out[0].type) == (base[0].start, base[0].size, "c")
    assert (
        out[1].start == base[1].start
        and out[1].size >= base[1].size + ROOT_GROW // 512
        and out[1].type == "83"
    )
    assert out[2].type == "83" and out[2].start >= out[1].start + out[1].size and out[2].start % 8192 == 0
    assert img.stat().st_size == (out[2].start + out[2].size) * 512


def test_file_systems_are_clean(built: tuple[Path, str], tmp_path: Path) -> None:
    img = built[0]
    p1, p2, p3 = partitions(img)
    boot = tmp_path / "boot.fat"
    subprocess.run(
        ["dd", f"if={img}", f"of={boot}", "bs=512", f"skip={p1.start}", f"count={p1.size}", "status=none"],
        check=True,
    )
    proc = subprocess.run(["fsck.vfat", "-n", str(boot)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    Ext4View(img, p2).fsck()
    Ext4View(img, p3).fsck()


def test_boot_partition(built: tuple[Path, str], inputs: dict[str, Path], tmp_path: Path) -> None:
    img = built[0]
    spec = f"{img}@@{partitions(img)[0].offset}"
    listing = sh("mdir", "-b", "-i", spec, "::/")
    names = {Path(line.strip()).name for line in listing.splitlines()}
    assert {"config.txt", "cmdline.txt", "kernel8.img", "overlays"} <= names
    assert not names & {"userconf.txt", "ssh", "ssh.txt"}, "Imager's password and ssh switch must be gone"
    assert "imx708.dtbo" in sh("mdir", "-b", "-i", spec, "::/overlays")
    sh("mcopy", "-i", spec, "::/cmdline.txt", tmp_path / "cmdline.txt")
    assert f"root=PARTUUID={PARTUUID}-02" in (tmp_path / "cmdline.txt").read_text()
    assert "Volume Serial Number is 5EE0-B007" in sh("mdir", "-i", spec, "::/")


# ---- root file system ------------------------------------------------------------------------------


def test_firmware_wheels_and_scripts(root_fs: Ext4View) -> None:
    names = root_fs.ls("/opt/bodycam/wheels")
    assert any(n.startswith("bodycam-0.1.0-py3-none-any") for n in names)
    assert any(n.startswith("pip-") for n in names) and any(n.startswith("av-") for n in names)
    fb = root_fs.stat("/usr/lib/bodycam/firstboot")
    assert fb == {"mode": "100755", "uid": "0", "gid": "0"}
    assert (
        root_fs.cat("/usr/lib/bodycam/firstboot")
        == (REPO / "firmware/bodycam/image/firstboot.py").read_bytes()
    )
    for unit in (
        "bodycam.service",
        "bodycam-firstboot.service",
        "bodycam-enrol.service",
        "bodycam-enrol.timer",
    ):
        assert root_fs.stat(f"/usr/lib/systemd/system/{unit}")["mode"] == "100644"
        assert root_fs.cat(f"/usr/lib/systemd/system/{unit}") == (REPO / "systemd" / unit).read_bytes()
    assert b"m bodycam gpio" in root_fs.cat("/usr/lib/sysusers.d/bodycam.conf")
    assert b"PasswordAuthentication no" in root_fs.cat("/etc/ssh/sshd_config.d/10-bodycam.conf")


def test_config_and_ca(root_fs: Ext4View, inputs: dict[str, Path]) -> None:
    assert root_fs.stat("/etc/bodycam/device.toml") == {"mode": "100640", "uid": "0", "gid": "0"}
    assert root_fs.cat("/etc/bodycam/device.toml") == inputs["enrolled"].read_bytes()
    assert root_fs.cat("/etc/bodycam/ca.pem") == inputs["ca"].read_bytes()
    assert b'"format": "bodycam.image/1"' in root_fs.cat("/etc/bodycam/image.json")


def test_units_enabled_and_wizards_masked(root_fs: Ext4View) -> None:
    wants = "/etc/systemd/system/multi-user.target.wants"
    assert root_fs.stat(f"{wants}/bodycam.service")["target"] == "/usr/lib/systemd/system/bodycam.service"
    assert root_fs.stat(f"{wants}/bodycam-firstboot.service")["target"].endswith("/bodycam-firstboot.service")
    assert root_fs.stat("/etc/systemd/system/timers.target.wants/bodycam-enrol.timer")["target"].endswith(
        ".timer"
    )
    assert root_fs.stat("/usr/local/bin/bodycam")["target"] == "/opt/bodycam/venv/bin/bodycam"
    for masked in ("sshswitch.service", "userconfig.service"):
        assert root_fs.stat(f"/etc/systemd/system/{masked}")["target"] == "/dev/null"


def test_set_clock_drop_in_only_when_asked(root_fs: Ext4View, built_plain: Path) -> None:
    drop_in = "/usr/lib/systemd/system/bodycam.service.d/set-clock.conf"
    assert root_fs.cat(drop_in) == (REPO / "systemd/dropins/bodycam-set-clock.conf").read_bytes()
    assert not Ext4View(built_plain, partitions(built_plain)[1]).exists(drop_in)


def test_no_password_hash(root_fs: Ext4View) -> None:
    shadow = root_fs.cat("/etc/shadow").decode()
    fields = {line.split(":")[0]: line.split(":")[1] for line in shadow.splitlines()}
    assert fields["pi"] == "*" and all(v in ("*", "!", "!*") for v in fields.values()), fields
    assert "$6$" not in shadow
    assert root_fs.stat("/etc/shadow") == {"mode": "100640", "uid": "0", "gid": "42"}


def test_evidence_partition_in_fstab(root_fs: Ext4View) -> None:
    fstab = root_fs.cat("/etc/fstab").decode()
    line = next(ln for ln in fstab.splitlines() if "/var/lib/bodycam" in ln).split()
    assert line[0] == f"PARTUUID={PARTUUID}-03" and line[2] == "ext4" and "noatime" in line[3].split(",")
    assert f"PARTUUID={PARTUUID}-02  /" in fstab  # the base's own lines are kept
    assert root_fs.stat("/var/lib/bodycam")["mode"] == "040750"


def test_data_partition(built: tuple[Path, str]) -> None:
    img = built[0]
    p3 = partitions(img)[2]
    header = sh("dumpe2fs", "-h", f"{img}?offset={p3.offset}")
    assert re.search(r"Filesystem volume name:\s+bodycam-data", header)
    assert re.search(r"Block size:\s+4096", header) and "has_journal" in header
    assert Ext4View(img, p3).ls("/") == ["lost+found"]


def test_no_device_key_in_the_image(built: tuple[Path, str], root_fs: Ext4View) -> None:
    """The key is made on the camera at first boot; nothing private may be on the card."""
    assert root_fs.ls("/var/lib/bodycam") == []
    needles = (b"PRIVATE KEY-----", b"BEGIN EC PRIVATE", b"BEGIN OPENSSH PRIVATE")
    with open(built[0], "rb") as f:
        tail = b""
        while chunk := f.read(8 << 20):
            block = tail + chunk
            assert not any(n in block for n in needles)
            tail = block[-64:]


def test_ssh_on_with_a_key(root_fs: Ext4View) -> None:
    assert (
        root_fs.stat("/etc/systemd/system/multi-user.target.wants/ssh.service")["target"]
        == "/usr/lib/systemd/system/ssh.service"
    )
    assert root_fs.cat("/home/pi/.ssh/authorized_keys").decode() == SSH_KEY
    assert root_fs.stat("/home/pi/.ssh/authorized_keys") == {"mode": "100600", "uid": "1000", "gid": "1000"}
    assert root_fs.stat("/home/pi/.ssh") == {"mode": "040700", "uid": "1000", "gid": "1000"}


def test_ssh_off_without_a_key(built_plain: Path) -> None:
    root = Ext4View(built_plain, partitions(built_plain)[1])
    assert not root.exists("/etc/systemd/system/multi-user.target.wants/ssh.service")
    assert not root.exists("/etc/systemd/system/sshd.service"), "the base's ssh enablement must be removed"
    assert not root.exists("/home/pi/.ssh/authorized_keys")


def test_progress_is_shown(built: tuple[Path, str]) -> None:
    log = built[1]
    assert "[1/9] checking inputs" in log and "[9/9] checksum" in log
    assert "camera stack: not included" in log
    assert "writing image: 100%" in log and "removed the password of: pi" in log


# ---- reproducibility --------------------------------------------------------------------------------


def test_same_inputs_same_bytes(
    inputs: dict[str, Path], wheel_cache: Path, source: Path, built_plain: Path, tmp_path: Path
) -> None:
    """A second build (another folder, another time, from the .xz of the base) gives the same bytes."""
    xz_base = tmp_path / "base.img.xz"
    with open(xz_base, "wb") as f:
        subprocess.run(["xz", "-T2", "-1", "-c", str(inputs["base"])], stdout=f, check=True)
    again = _build(
        inputs, wheel_cache, source, tmp_path / "elsewhere" / "second.img", ssh=False, base=xz_base
    )
    assert sh("sha256sum", again).split()[0] == sh("sha256sum", built_plain).split()[0]


# ---- bad input: one clear line ---------------------------------------------------------------------


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["image", "build", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_base", "not found"),
        ("not_an_image", "no partition table"),
        ("bad_config", "unknown key"),
        ("wrong_data_dir", "data_dir must be"),
        ("ca_not_pem", "not a PEM X.509 certificate"),
        ("private_ssh_key", "private key; give the .pub file"),
        ("one_partition", "expected 2 partitions"),
    ],
)
def test_bad_input_gets_one_line(
    case: str, expect: str, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, config, ca = inputs["base"], inputs["config"], inputs["ca"]
    extra: list[str] = []
    if case == "missing_base":
        base = tmp_path / "nope.img"
    elif case == "not_an_image":
        base = tmp_path / "junk.img"
        base.write_bytes(b"\x01" * 4096)
    elif case == "bad_config":
        config = tmp_path / "bad.toml"
        config.write_text("[device]\nserail = 'x'\n")
    elif case == "wrong_data_dir":
        config = tmp_path / "dd.toml"
        config.write_text("[device]\ndata_dir = '/home/pi/data'\n")
    elif case == "ca_not_pem":
        ca = tmp_path / "ca.pem"
        ca.write_text("hello")
    elif case == "private_ssh_key":
        key = tmp_path / "id_ed25519"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
        extra = ["--ssh-key", str(key)]
    elif case == "one_partition":
        base = tmp_path / "one.img"
        with open(base, "wb") as f:
            f.truncate(16 << 20)
        sh("sfdisk", "-q", base, input=b"label: dos\nstart=2048, type=83\n")
    err = _cli_error(
        [
            str(base),
            "--config",
            str(config),
            "--ca",
            str(ca),
            "-o",
            str(tmp_path / "o.img"),
            "--offline",
            "--wheels",
            str(tmp_path / "no-cache"),
            *extra,
        ],
        capsys,
    )
    assert expect in err
    assert not (tmp_path / "o.img").exists() and not list(tmp_path.glob(".bodycam-image-*"))


def test_build_image_script_help() -> None:
    proc = subprocess.run([str(REPO / "scripts/build-image"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--config" in proc.stdout and "--ssh-key" in proc.stdout


# ---- the base can run what the image puts on it (issue 12) ---------------------------------------


def _build_error(base: Path, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    args = [str(base), "--config", str(inputs["config"]), "--ca", str(inputs["ca"]), "-o", str(tmp_path / "o.img"),
            "--offline", "--wheels", str(tmp_path / "no-cache"), "--no-camera-stack"]
    err = _cli_error(args, capsys)
    assert not (tmp_path / "o.img").exists()
    return err.strip()


def test_a_base_without_fdisk_is_refused_naming_the_tool_and_package(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """First boot would crash at datapart on the camera; the build says so before doing anything."""
    base = make_base(tmp_path / "nofdisk.img", without=["usr/sbin/sfdisk", "usr/sbin/runuser"])
    err = _build_error(base, inputs, tmp_path, capsys)
    assert err == (
        "bodycam: base image: first boot needs runuser, sfdisk, which the base does not have: use a base with "
        "the Debian package(s) fdisk util-linux (apt-get install fdisk util-linux)"
    )


def test_a_trixie_base_with_python_3_13_is_refused(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trixie = BOOKWORM_OS_RELEASE.replace("12 (bookworm)", "13 (trixie)").replace("bookworm", "trixie")
    base = make_base(
        tmp_path / "trixie.img",
        without=["usr/lib/os-release", "usr/lib/python3.11/os.py", "usr/bin/python3", "usr/bin/python3.11"],
        extra={"usr/lib/os-release": trixie, "usr/lib/python3.13/os.py": "", "usr/bin/python3.13": "#!/bin/sh\n",
               "var/lib/dpkg/status": "Package: python3\nStatus: install ok installed\nArchitecture: arm64\n"
               "Version: 3.13.5-1\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.41-12\n"},
        links={"usr/bin/python3": "python3.13"},
    )
    err = _build_error(base, inputs, tmp_path, capsys)
    assert err.startswith("bodycam: base image: Debian GNU/Linux 13 (trixie) has Python 3.13; this firmware's")
    assert "use a Bookworm base image" in err


def test_the_base_target_is_read_from_its_root(inputs: dict[str, Path], tmp_path: Path) -> None:
    from bodycam.image import disk
    from bodycam.image.rootfs import Ext4Editor

    layout = disk.read_layout(inputs["base"])
    root = tmp_path / "root.ext4"
    disk.extract(inputs["base"], layout.partitions[1], root)
    target = basecheck.read_target(Ext4Editor(root, epoch_env(0)))
    assert (target.python, target.glibc_minor, target.os_name) == ("3.11", 36, "Debian GNU/Linux 12 (bookworm)")


def test_the_pin_library_is_on_the_image_for_aarch64(root_fs: Ext4View, built: tuple[Path, str]) -> None:
    """gpiozero needs lgpio on a Pi 4/5; the build checks the wheel holds an aarch64 extension."""
    lgpio = [n for n in root_fs.ls("/opt/bodycam/wheels") if n.startswith("lgpio-")]
    assert len(lgpio) == 1 and "cp311-cp311-manylinux" in lgpio[0] and lgpio[0].endswith("_aarch64.whl"), lgpio
    assert "pin library lgpio-" in built[1] and "aarch64 extension _lgpio" in built[1]


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_a_pin_library_that_would_not_import_is_refused(wheel_cache: Path, tmp_path: Path) -> None:
    elf = b"\x7fELF\x02\x01\x01" + bytes(11)
    empty = _wheel(tmp_path / "lgpio-0.0.0.2-py3-none-any.whl", {"lgpio.py": b""})  # on PyPI, and empty
    x86 = _wheel(tmp_path / "lgpio-0.2.2.0-cp311-cp311-manylinux_2_34_aarch64.whl",
                 {"_lgpio.cpython-311-x86_64-linux-gnu.so": elf + (62).to_bytes(2, "little") + bytes(44)})
    with pytest.raises(ImageError, match="not a compiled wheel for CPython 3.11.*no pin factory"):
        wheels.check_pin_library([empty])
    with pytest.raises(ImageError, match="holds no aarch64 lgpio extension module"):
        wheels.check_pin_library([x86])
    with pytest.raises(ImageError, match="no lgpio wheel among the image's wheels"):
        wheels.check_pin_library([])
    real = sorted(wheel_cache.glob("lgpio-*cp311*aarch64.whl"))
    assert real and "aarch64 extension _lgpio" in wheels.check_pin_library(real[-1:])


def test_boot_test_kit_agrees_with_its_guest_script() -> None:
    """scripts/boot-test is opt-in and slow; here only: its guest script parses, and every check the
    host waits for is one the guest reports (a renamed check would otherwise fail only in the emulator)."""
    import bootkit

    guest = REPO / "tests/boottest-guest.sh"
    subprocess.run(["bash", "-n", str(guest)], check=True)
    text = guest.read_text()
    reported = set(re.findall(r"(?m)^\s*check ([a-z-]+) \"", text))
    reported |= set(re.findall(r'say "(?:pass|fail) ([a-z-]+)', text))
    expected = {name for names in bootkit.CHECKS.values() for name in names}
    assert reported == expected, reported ^ expected
    proc = subprocess.run([sys.executable, str(REPO / "tests/bootkit.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--offline" in proc.stdout, proc.stderr
