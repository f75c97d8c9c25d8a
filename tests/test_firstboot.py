"""First boot: every step on a fake camera (a tmp root, fake sysfs, fake system commands), and a power
cut before or after every single effect followed by a reboot ends in exactly the state of a run that
was never interrupted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bodycam.image import firstboot
from bodycam.image.firstboot import Host

DISK_SECTORS = 62_333_952  # a 32 GB card
P3_START, P3_SIZE = 1_875_968, 131_072


class PowerCut(BaseException):
    """Not an Exception: nothing in the code under test may catch it, as with a real power cut."""


class FakeCamera:
    """A root tree that looks enough like a fresh card on a Pi, and the system commands acting on it."""

    def __init__(
        self,
        root: Path,
        *,
        serial: str = "BC-0042",
        enrol: bool = False,
        mounted: bool = True,
        camera_stack: bool = True,
    ) -> None:
        self.root = root
        self.enrol = enrol
        self.apt: list[str] = []
        self.hostname_set: str | None = None
        self.started: set[str] = set()
        w = self.write
        w(
            "etc/bodycam/device.toml",
            f'[device]\nserial = "{serial}"\nofficer_id = "x"\ndata_dir = "/var/lib/bodycam"\n',
        )
        w("etc/bodycam/ca.pem", "-----BEGIN CERTIFICATE-----\n")
        w("etc/passwd", "root:x:0:0::/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
        w("etc/group", "root:x:0:\nvideo:x:44:pi\ngpio:x:997:pi\npi:x:1000:\n")
        w("etc/hostname", "raspberrypi\n")
        w("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
        w("usr/lib/sysusers.d/bodycam.conf", "u bodycam -\n")
        w("opt/bodycam/wheels/pip-26.3-py3-none-any.whl", "zip")
        w("opt/bodycam/wheels/bodycam-0.1.0-py3-none-any.whl", "zip")
        w("proc/device-tree/serial-number", "10000000abcdef12\0")
        if camera_stack:
            w("opt/bodycam/debs/local.list", "deb [trusted=yes] file:/opt/bodycam/debs ./\n")
            w("opt/bodycam/debs/Packages", "Package: python3-picamera2\n")
        (root / "var/lib/bodycam").mkdir(parents=True)
        if mounted:
            w(
                "proc/self/mountinfo",
                "22 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw\n"
                "30 22 179:3 / /var/lib/bodycam rw,nodev,noatime - ext4 /dev/mmcblk0p3 rw\n",
            )
        else:
            w("proc/self/mountinfo", "22 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw\n")
        disk = root / "sys/block/mmcblk0"
        w("sys/block/mmcblk0/size", f"{DISK_SECTORS}\n")
        for n, (start, size) in enumerate([(8192, 131072), (139264, 1736704), (P3_START, P3_SIZE)], 1):
            w(f"sys/block/mmcblk0/mmcblk0p{n}/partition", f"{n}\n")
            w(f"sys/block/mmcblk0/mmcblk0p{n}/start", f"{start}\n")
            w(f"sys/block/mmcblk0/mmcblk0p{n}/size", f"{size}\n")
            link = root / f"sys/dev/block/179:{n}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(disk / f"mmcblk0p{n}")
        w("fake/fs_size", f"{P3_SIZE}\n")
        self.chowns: dict[str, tuple[int, int]] = {}

    def write(self, rel: str, text: str) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    # -- the commands first boot runs --------------------------------------------------------------

    def run(
        self,
        cmd: list[str],
        *,
        input: str | None = None,
        timeout: float | None = None,  # noqa: A002
    ) -> subprocess.CompletedProcess[str]:
        def ok(out: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(cmd, 0, out, "")

        name = Path(cmd[0]).name
        if name == "systemd-sysusers":
            if "bodycam:" not in self.read("etc/passwd"):
                self.write(
                    "etc/passwd",
                    self.read("etc/passwd") + "bodycam:x:999:999::/var/lib/bodycam:/usr/sbin/nologin\n",
                )
                group = self.read("etc/group").replace("video:x:44:pi", "video:x:44:pi,bodycam")
                group = group.replace("gpio:x:997:pi", "gpio:x:997:pi,bodycam")
                self.write("etc/group", group + "bodycam:x:999:\n")
            return ok()
        if name == "sfdisk":
            assert cmd[1:] == ["--no-reread", "-N", "3", "/dev/mmcblk0"] and input == ", +\n"
            self.write("sys/block/mmcblk0/mmcblk0p3/size", f"{DISK_SECTORS - P3_START}\n")
            return ok()
        if name == "partx":
            return ok()
        if name == "resize2fs":
            assert cmd[1] == "/dev/mmcblk0p3"
            self.write("fake/fs_size", self.read("sys/block/mmcblk0/mmcblk0p3/size"))
            return ok()
        if name == "dpkg":
            assert cmd[1:] == ["--configure", "-a"]
            return ok()
        if name == "apt-get":
            assert f"Dir::Etc::SourceList={self.root}/opt/bodycam/debs/local.list" in cmd
            assert (
                f"Dir::Etc::SourceParts={self.root}/var/lib/bodycam-firstboot/apt-sources.d" in cmd
                and (self.root / "var/lib/bodycam-firstboot/apt-lists").is_dir()
            )
            self.apt.append(cmd[7])
            if cmd[7] == "install":
                assert cmd[8:] == ["-y", "--no-install-recommends", "python3-picamera2"]
                self.write("fake/dpkg-installed", "python3-picamera2\n")
            return ok()
        if name == "dpkg-query":
            installed = (self.root / "fake/dpkg-installed").exists()
            return subprocess.CompletedProcess(cmd, 0, "install ok installed" if installed else "", "")
        if name == "rm":
            shutil.rmtree(cmd[-1])
            return ok()
        if cmd[1:3] == ["-m", "venv"]:
            venv = Path(cmd[-1])
            assert "--system-site-packages" in cmd
            (venv / "bin").mkdir(parents=True)
            (venv / "bin/python").write_text("python")
            return ok()
        if name == "python" and "install" in cmd:
            assert "--no-index" in cmd and cmd[1].endswith("pip-26.3-py3-none-any.whl/pip")
            (Path(cmd[0]).parent / "bodycam").write_text("bodycam")
            return ok()
        if name == "runuser":
            assert cmd[1:4] == ["-u", "bodycam", "--"] and cmd[5] == "provision"
            key = self.root / "var/lib/bodycam/device/key.pem"
            if not key.exists():
                key.parent.mkdir(parents=True, exist_ok=True)
                key.write_text("KEY")
            (key.parent / "device.csr.pem").write_text("CSR")
            return ok("device key: created")
        if name == "bodycam" and cmd[1:] == ["enrol", "--help"]:
            return subprocess.CompletedProcess(cmd, 0 if self.enrol else 2, "", "")
        if name == "systemctl":
            self.started.add(cmd[-1])
            return ok()
        if name == "hostname":
            self.hostname_set = cmd[1]
            return ok()
        raise AssertionError(f"unexpected command {cmd}")

    def chown(self, path: Path, uid: int, gid: int) -> None:
        self.chowns[str(path.relative_to(self.root))] = (uid, gid)

    def host(self, log: list[str] | None = None) -> Host:
        return Host(
            root=self.root,
            run=self.run,
            log=(log.append if log is not None else lambda _: None),
            chown=self.chown,
        )

    def snapshot(self) -> dict[str, object]:
        files = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.is_symlink():
                files[str(p.relative_to(self.root))] = p.read_bytes()
        return {
            "files": files,
            "hostname": self.hostname_set,
            "started": sorted(self.started),
            "chowns": dict(sorted(self.chowns.items())),
            "modes": {
                k: os.stat(self.root / k).st_mode for k in ("etc/bodycam/device.toml", "var/lib/bodycam")
            },
        }


def test_a_full_first_boot(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path)
    log: list[str] = []
    assert firstboot.run_all(cam.host(log)) == 0
    assert cam.read("sys/block/mmcblk0/mmcblk0p3/size").strip() == str(DISK_SECTORS - P3_START)
    assert cam.read("fake/fs_size").strip() == str(DISK_SECTORS - P3_START)
    assert (tmp_path / "opt/bodycam/venv/.bodycam-complete").exists()
    assert cam.read("var/lib/bodycam/device/key.pem") == "KEY"
    assert cam.read("etc/hostname") == "BC-0042\n" and "127.0.1.1\tBC-0042" in cam.read("etc/hosts")
    assert cam.hostname_set == "BC-0042"
    assert cam.chowns["var/lib/bodycam"] == (999, 999) and cam.chowns["etc/bodycam/device.toml"] == (0, 999)
    assert os.stat(tmp_path / "etc/bodycam/device.toml").st_mode & 0o777 == 0o640
    assert (tmp_path / "var/lib/bodycam-firstboot/done").exists()
    assert firstboot.pending(cam.host()) == []
    assert "no 'bodycam enrol' yet" in log[-2]
    assert cam.started == set()
    # Running again does nothing new.
    before = cam.snapshot()
    assert firstboot.run_all(cam.host()) == 0
    assert cam.snapshot() == before


def test_enrol_starts_the_unit_when_the_firmware_has_the_command(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path, enrol=True)
    assert firstboot.run_all(cam.host()) == 0
    assert cam.started == {"bodycam-enrol.service"}


def test_fleet_serial_comes_from_the_board(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path, serial="auto")
    assert firstboot.run_all(cam.host()) == 0
    assert 'serial = "BC-ABCDEF12"' in cam.read("etc/bodycam/device.toml")
    assert cam.read("etc/hostname") == "BC-ABCDEF12\n"


def test_unmounted_data_partition_stops_with_one_line(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path, mounted=False)
    log: list[str] = []
    assert firstboot.run_all(cam.host(log)) == 1
    assert "datapart: FAILED: the evidence partition is not mounted on /var/lib/bodycam" in log[-1]
    assert firstboot.pending(cam.host())[0] == "datapart"
    assert not (tmp_path / "opt/bodycam/venv").exists()


def test_hostname_is_a_valid_hostname() -> None:
    assert firstboot.hostname_for("BC_0001") == "BC-0001"
    assert firstboot.hostname_for("___") == "bodycam"


def _effects(cam: FakeCamera, monkeypatch: pytest.MonkeyPatch, cut_at: int | None, after: bool) -> int:
    """Run first boot, counting every command and durable write; die at effect ``cut_at``."""
    count = 0
    real_run, real_write = cam.run, firstboot.atomic_write

    def effect(do):  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        if count == cut_at and not after:
            raise PowerCut
        result = do()
        if count == cut_at and after:
            raise PowerCut
        return result

    monkeypatch.setattr(cam, "run", lambda cmd, **kw: effect(lambda: real_run(cmd, **kw)))
    monkeypatch.setattr(firstboot, "atomic_write", lambda *a, **kw: effect(lambda: real_write(*a, **kw)))
    try:
        firstboot.run_all(cam.host())
    finally:
        monkeypatch.setattr(firstboot, "atomic_write", real_write)
        monkeypatch.setattr(cam, "run", real_run)
    return count


def test_power_cut_at_every_effect_then_reboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = FakeCamera(tmp_path / "ref", serial="auto", enrol=True)
    total = _effects(reference, monkeypatch, None, False)
    expected = reference.snapshot()
    assert total > 15
    for cut in range(1, total + 1):
        for after in (False, True):
            root = tmp_path / f"cut-{cut}-{'after' if after else 'before'}"
            cam = FakeCamera(root, serial="auto", enrol=True)
            with pytest.raises(PowerCut):
                _effects(cam, monkeypatch, cut, after)
            assert firstboot.run_all(cam.host()) == 0, f"reboot after a cut at effect {cut}"
            got = cam.snapshot()
            assert got == expected, (
                f"cut {'after' if after else 'before'} effect {cut} left a different state"
            )


def test_the_script_runs_on_a_bare_system_python(tmp_path: Path) -> None:
    """On the camera it runs before the venv exists: the standard library must be enough."""
    script = Path(firstboot.__file__)
    proc = subprocess.run(
        ["python3", "-I", "-S", str(script), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0 and "bodycam first boot" in proc.stdout, proc.stderr
    assert script.read_text().startswith("#!/usr/bin/python3\n")
    assert "from bodycam" not in script.read_text() and "from ." not in script.read_text()


def test_camera_stack_is_installed_from_the_image_before_the_venv(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path)
    log: list[str] = []
    assert firstboot.run_all(cam.host(log)) == 0
    assert cam.apt == ["update", "install"]
    assert cam.read("fake/dpkg-installed") == "python3-picamera2\n"
    names = [name for name, _ in firstboot.STEPS]
    assert names.index("camera") < names.index("venv")
    assert any("camera: installed python3-picamera2 from /opt/bodycam/debs" in line for line in log)


def test_no_camera_stack_on_the_image_is_skipped(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path, camera_stack=False)
    log: list[str] = []
    assert firstboot.run_all(cam.host(log)) == 0
    assert cam.apt == [] and any("camera: no camera stack on this image" in line for line in log)


def test_camera_stack_not_installed_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cam = FakeCamera(tmp_path)
    real = cam.run

    def apt_fails(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if Path(cmd[0]).name == "apt-get" and "install" in cmd:
            return subprocess.CompletedProcess(
                cmd, 100, "", "E: Unable to correct problems, you have held broken packages."
            )
        return real(cmd, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cam, "run", apt_fails)
    log: list[str] = []
    assert firstboot.run_all(cam.host(log)) == 1
    assert log[-1].endswith(
        "camera: FAILED: installing the camera stack from /opt/bodycam/debs: apt-get exited 100: "
        "E: Unable to correct problems, you have held broken packages."
    )
    assert firstboot.pending(cam.host())[0] == "camera" and not (tmp_path / "opt/bodycam/venv").exists()


def test_a_tool_missing_from_the_image_is_one_failed_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base without fdisk: subprocess raises FileNotFoundError for sfdisk; first boot says so in one line."""
    cam = FakeCamera(tmp_path)
    real = cam.run

    def no_sfdisk(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if Path(cmd[0]).name == "sfdisk":  # the real call, on a path where there is no sfdisk
            return firstboot._run([str(tmp_path / "usr/sbin/sfdisk"), *cmd[1:]], input=", +\n")
        return real(cmd, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cam, "run", no_sfdisk)
    log: list[str] = []
    assert firstboot.run_all(cam.host(log)) == 1
    assert log[-1] == (
        "bodycam-firstboot [3/8] datapart: FAILED: sfdisk is not on this image (Debian package fdisk): "
        "rebuild the image from a base that has it (scripts/build-image checks the base for it)"
    )
    assert firstboot.pending(cam.host())[0] == "datapart"


def test_the_script_fails_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    """The real script as a process, its tools absent (empty PATH): one FAILED line, exit 1."""
    cam = FakeCamera(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-I", firstboot.__file__, "--root", str(tmp_path)],
        capture_output=True, text=True, env={"PATH": str(tmp_path / "empty")},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        "bodycam-firstboot [1/8] users: FAILED: systemd-sysusers is not on this image (Debian package "
        "systemd): rebuild the image from a base that has it (scripts/build-image checks the base for it)"
    )
    assert cam.read("etc/hostname") == "raspberrypi\n"


def test_every_program_first_boot_runs_is_listed_for_the_build_check(tmp_path: Path) -> None:
    cam = FakeCamera(tmp_path, enrol=True)
    seen: set[str] = set()
    real = cam.run

    def record(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.add(Path(cmd[0]).name)
        return real(cmd, **kw)  # type: ignore[arg-type]

    cam.run = record  # type: ignore[method-assign]
    assert firstboot.run_all(cam.host()) == 0
    ours = {"python", "bodycam", Path(sys.executable).name}  # the venv's, created by first boot itself
    assert seen - ours <= set(firstboot.TOOLS), seen - ours - set(firstboot.TOOLS)
    assert {"sfdisk", "partx", "resize2fs", "runuser", "systemd-sysusers"} <= seen
