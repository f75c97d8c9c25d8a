#!/usr/bin/python3
"""bodycam first boot: run once on the camera by bodycam-firstboot.service, as root.

Installed in the image as /usr/lib/bodycam/firstboot. Standard library only, and no imports from the
rest of bodycam: it runs under the system Python before the venv exists (it creates it).

Steps, in order; each one is safe to run again from any point, because a power cut can stop it
anywhere. A step is skipped only once its stamp ``/var/lib/bodycam-firstboot/<step>.done`` exists;
stamps are written (temp file, fsync, rename, fsync directory) only after the step's effect is on disk.

  users     systemd-sysusers creates the `bodycam` user (groups video, gpio, audio); /etc/bodycam group-readable
  serial    a fleet image's serial "auto" becomes BC-<last 8 hex digits of the board serial>
  datapart  grow the evidence partition to the end of the card (sfdisk, then an online resize2fs,
            which the kernel journals) and give it to `bodycam`
  camera    apt installs python3-picamera2 and libcamera from the image's own repository
            /opt/bodycam/debs (verified at build time), offline; skipped on an image built without it
  venv      /opt/bodycam/venv (--system-site-packages, so picamera2/libcamera from apt are seen),
            installed offline from /opt/bodycam/wheels; removed and redone if a cut left it partial
  key       `bodycam provision` as the bodycam user: device key (on the device, never the build
            machine), public key and CSR, each written atomically
  hostname  the serial becomes the hostname (/etc/hostname, /etc/hosts, and the running kernel)
  enrol     if this firmware has `bodycam enrol`, start bodycam-enrol.service now; its timer keeps
            retrying until the camera is docked and the backend answers

Exit status 0 when every step is done; otherwise 1 with one line saying which step failed and why
(`journalctl -u bodycam-firstboot` has the rest), and the next boot retries from that step.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = "/etc/bodycam/device.toml"
CONFIG_DIR = "/etc/bodycam"
DATA_DIR = "/var/lib/bodycam"
STATE_DIR = "/var/lib/bodycam-firstboot"
VENV = "/opt/bodycam/venv"
WHEELS = "/opt/bodycam/wheels"
DEBS = "/opt/bodycam/debs"
CAMERA_PACKAGES = ("python3-picamera2",)
APT_LISTS = "/var/lib/bodycam-firstboot/apt-lists"
APT_PARTS = "/var/lib/bodycam-firstboot/apt-sources.d"
SYSUSERS = "/usr/lib/sysusers.d/bodycam.conf"
USER = "bodycam"
VENV_MARKER = ".bodycam-complete"
GROW_SLACK_SECTORS = 2048  # a partition within 1 MiB of the end of the card counts as grown

# Every program a step runs, with its Debian package and the steps that run it. The image build checks
# that the base has each one (image/basecheck.py); on the camera a missing one is that step's one-line
# FAILED, never a traceback. Keep this in step with the steps below (tests/test_firstboot.py checks).
TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "systemd-sysusers": ("systemd", ("users",)),
    "sfdisk": ("fdisk", ("datapart",)),
    "partx": ("util-linux", ("datapart",)),
    "resize2fs": ("e2fsprogs", ("datapart",)),
    "dpkg": ("dpkg", ("camera",)),
    "dpkg-query": ("dpkg", ("camera",)),
    "apt-get": ("apt", ("camera",)),
    "python3": ("python3", ("venv",)),
    "rm": ("coreutils", ("venv",)),
    "runuser": ("util-linux", ("key",)),
    "hostname": ("hostname", ("hostname",)),
    "systemctl": ("systemd", ("enrol",)),
}


class StepError(RuntimeError):
    """A step cannot finish; the message says what is wrong and what the technician can do."""


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _run(
    cmd: Sequence[str],
    *,
    input: str | None = None,
    timeout: float | None = None,  # noqa: A002
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Host:
    """The machine the steps act on: a root prefix (``/`` on the camera, a tmp dir in tests),
    a command runner and a chown; everything the steps touch goes through here."""

    root: Path = Path("/")
    run: Runner = _run
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    chown: Callable[[Path, int, int], None] = os.chown

    def path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    def call(
        self,
        cmd: Sequence[str],
        *,
        input: str | None = None,  # noqa: A002
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a program; one that is not on the image is a StepError naming its Debian package."""
        try:
            return self.run(list(cmd), input=input, timeout=timeout)
        except FileNotFoundError:
            raise StepError(missing_tool(cmd[0])) from None

    def check(
        self,
        cmd: Sequence[str],
        what: str,
        *,
        input: str | None = None,  # noqa: A002
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = self.call(cmd, input=input, timeout=timeout)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
            raise StepError(
                f"{what}: {cmd[0]} exited {proc.returncode}: {lines[-1] if lines else ''}".rstrip(": ")
            )
        return proc


def missing_tool(program: str) -> str:
    name = Path(program).name
    pkg = TOOLS.get(name, (None,))[0]
    return (
        f"{name} is not on this image"
        + (f" (Debian package {pkg})" if pkg else "")
        + ": rebuild the image from a base that has it (scripts/build-image checks the base for it)"
    )


# ---- durable writes --------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """The old content or the new one after a power cut, never a torn mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


# ---- small readers ---------------------------------------------------------------------------------


def group_entry(host: Host, name: str) -> tuple[int, list[str]] | None:
    """(gid, members) from the host's /etc/group, or None."""
    try:
        lines = host.path("/etc/group").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == name:
            return int(parts[2]), [m for m in parts[3].split(",") if m]
    return None


def user_ids(host: Host, name: str) -> tuple[int, int] | None:
    try:
        lines = host.path("/etc/passwd").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == name:
            return int(parts[2]), int(parts[3])
    return None


def read_config(host: Host) -> dict:
    try:
        return tomllib.loads(host.path(CONFIG).read_text())
    except FileNotFoundError:
        raise StepError(f"{CONFIG} is missing: rebuild the image with --config") from None
    except tomllib.TOMLDecodeError as e:
        raise StepError(f"{CONFIG} is not valid TOML ({e}); fix it and reboot") from None


def serial_of(host: Host) -> str:
    return str(read_config(host).get("device", {}).get("serial", ""))


def board_serial(host: Host) -> str | None:
    """The SoC serial number, from the device tree (Pi 4/5) or /proc/cpuinfo (older firmware)."""
    for p in ("/proc/device-tree/serial-number", "/sys/firmware/devicetree/base/serial-number"):
        try:
            text = host.path(p).read_bytes().rstrip(b"\0\n").decode().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            continue
        if text:
            return text
    try:
        for line in host.path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("serial"):
                return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return None


def hostname_for(serial: str) -> str:
    """Hostnames allow letters, digits and '-' only (RFC 1123), 63 characters at most."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", serial).strip("-")[:63]
    return name or "bodycam"


# ---- the steps -------------------------------------------------------------------------------------


def protect(host: Host, path: Path, gid: int) -> None:
    """The config holds the one-time enrolment token: root may write it, only the daemon may read it."""
    host.chown(path, 0, gid)
    os.chmod(path, 0o640 if path.suffix == ".toml" else 0o644)


def step_users(host: Host) -> str:
    host.check(["systemd-sysusers", str(host.path(SYSUSERS))], "creating the bodycam user")
    group = group_entry(host, USER)
    if group is None:
        raise StepError(f"systemd-sysusers ran but there is no '{USER}' group in /etc/group")
    for p in sorted(host.path(CONFIG_DIR).glob("*")):
        if p.is_file():
            protect(host, p, group[0])
    return f"user {USER} ready"


def step_serial(host: Host) -> str:
    path = host.path(CONFIG)
    serial = serial_of(host)
    if serial == "auto":
        board = board_serial(host)
        if not board:
            raise StepError(
                '[device] serial is "auto" but the board serial number cannot be read; '
                "set a serial in /etc/bodycam/device.toml and reboot"
            )
        serial = "BC-" + re.sub(r"[^0-9A-Fa-f]", "", board)[-8:].upper()
        text = path.read_text()
        out, n = re.subn(
            r'(?m)^(\s*serial\s*=\s*)["\']auto["\']', lambda m: f'{m.group(1)}"{serial}"', text, count=1
        )
        if n != 1:
            raise StepError('[device] serial = "auto" must be written on one line as serial = "auto"')
        atomic_write(path, out.encode(), 0o600)
        host.log(f"bodycam-firstboot: serial {serial} from the board serial {board}")
    group = group_entry(host, USER)
    protect(host, path, group[0] if group else 0)  # again: a cut may have come between write and chown
    return f"serial {serial}"


@dataclass(frozen=True)
class DataPartition:
    device: str  # /dev/mmcblk0p3
    disk: str  # /dev/mmcblk0
    number: int
    start: int  # sectors
    size: int
    disk_size: int
    last: bool  # no partition starts after this one


def find_data_partition(host: Host) -> DataPartition:
    """From /proc/self/mountinfo and sysfs: which partition is mounted on the data directory."""
    majmin = None
    for line in host.path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == DATA_DIR:
            majmin = fields[2]
    if majmin is None:
        raise StepError(
            f"the evidence partition is not mounted on {DATA_DIR}: check /etc/fstab and "
            "'journalctl -b -u var-lib-bodycam.mount'; reflash the card if partition 3 is gone"
        )
    part_dir = host.path(f"/sys/dev/block/{majmin}").resolve()
    if not (part_dir / "partition").exists():
        raise StepError(
            f"{DATA_DIR} is mounted from a whole disk ({majmin}), not a partition; cannot grow it"
        )
    disk_dir = part_dir.parent
    number = int((part_dir / "partition").read_text())
    start = int((part_dir / "start").read_text())
    size = int((part_dir / "size").read_text())
    disk_size = int((disk_dir / "size").read_text())
    starts = [int((d / "start").read_text()) for d in disk_dir.iterdir() if (d / "partition").exists()]
    return DataPartition(
        device=f"/dev/{part_dir.name}",
        disk=f"/dev/{disk_dir.name}",
        number=number,
        start=start,
        size=size,
        disk_size=disk_size,
        last=max(starts) == start,
    )


def step_datapart(host: Host) -> str:
    part = find_data_partition(host)
    grew = ""
    if part.last and part.disk_size - (part.start + part.size) > GROW_SLACK_SECTORS:
        # One MBR sector is rewritten; the kernel learns the new size through BLKPG (partx), which
        # works while the partition is mounted, the way cloud-init's growpart does it.
        host.check(
            ["sfdisk", "--no-reread", "-N", str(part.number), part.disk],
            "growing the evidence partition",
            input=", +\n",
        )
        host.check(["partx", "-u", "--nr", str(part.number), part.disk], "telling the kernel the new size")
        grew = f"grew {part.device} to the end of the card; "
    # Online resize is journaled by the kernel, so a cut mid-way leaves a consistent file system.
    host.check(["resize2fs", part.device], "growing the evidence file system")
    ids = user_ids(host, USER)
    if ids is None:
        raise StepError(f"no '{USER}' user: the users step did not finish")
    data = host.path(DATA_DIR)
    host.chown(data, *ids)
    os.chmod(data, 0o750)
    return f"{grew}{part.device} fills its partition, owned by {USER}"


def apt_options(host: Host) -> list[str]:
    """apt sees the image's repository and nothing else: no network source, the system's lists untouched."""
    return [
        "-o",
        f"Dir::Etc::SourceList={host.path(DEBS)}/local.list",
        "-o",
        f"Dir::Etc::SourceParts={host.path(APT_PARTS)}",  # empty: not the system's sources.list.d
        "-o",
        f"Dir::State::Lists={host.path(APT_LISTS)}",
    ]


def step_camera(host: Host) -> str:
    """python3-picamera2 and what it needs, from the local repo the build verified (camerastack.py).

    apt-get rather than ``dpkg -i *.deb``: apt orders the unpacking and configuring itself, checks the
    whole graph (Breaks/Conflicts too) against the installed system before it changes anything, and
    marks the dependencies as automatically installed, exactly as ``apt install python3-picamera2``
    would on a networked Pi, so later upgrades from the real archive treat them normally. The one
    source is ``file:``, so nothing can be downloaded. A power cut mid-install leaves dpkg's journal;
    ``dpkg --configure -a`` finishes it first, and installing what is already installed does nothing.
    """
    if not host.path(f"{DEBS}/local.list").exists():
        return "no camera stack on this image (built with --no-camera-stack or for another camera source)"
    # apt refuses to start without these; images trimmed for size may lack the archive cache folder.
    for d in (f"{APT_LISTS}/partial", APT_PARTS, "/var/cache/apt/archives/partial"):
        host.path(d).mkdir(parents=True, exist_ok=True)
    host.check(["dpkg", "--configure", "-a"], "finishing an interrupted package install")
    host.check(["apt-get", *apt_options(host), "update"], f"reading the camera stack's index in {DEBS}")
    host.check(
        ["apt-get", *apt_options(host), "install", "-y", "--no-install-recommends", *CAMERA_PACKAGES],
        f"installing the camera stack from {DEBS}",
    )
    for pkg in CAMERA_PACKAGES:
        proc = host.call(["dpkg-query", "-W", "-f=${Status}", pkg])
        if proc.returncode != 0 or proc.stdout.strip() != "install ok installed":
            raise StepError(
                f"apt-get finished but {pkg} is not installed ({proc.stdout.strip() or 'unknown'})"
            )
    os.sync()
    return f"installed {', '.join(CAMERA_PACKAGES)} from {DEBS}"


def step_venv(host: Host) -> str:
    venv = host.path(VENV)
    if (venv / VENV_MARKER).exists():
        return "venv already installed"
    wheels = host.path(WHEELS)
    pips = sorted(wheels.glob("pip-*.whl"))
    if not pips:
        raise StepError(f"no pip wheel in {WHEELS}: the image is incomplete, rebuild it")
    if venv.exists():  # a power cut left a partial install: start again from nothing
        host.check(["rm", "-rf", "--one-file-system", str(venv)], "removing a partial venv")
    host.check(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        "creating the venv",
    )
    # pip runs from its own wheel, so no ensurepip/python3-venv package is needed on the image.
    host.check(
        [
            str(venv / "bin" / "python"),
            f"{pips[-1]}/pip",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "bodycam",
        ],
        "installing the firmware from the offline wheels",
    )
    os.sync()
    atomic_write(venv / VENV_MARKER, f"installed from {WHEELS}\n".encode())
    return f"installed the firmware into {VENV}"


def step_key(host: Host) -> str:
    proc = host.check(
        [
            "runuser",
            "-u",
            USER,
            "--",
            str(host.path(VENV) / "bin" / "bodycam"),
            "provision",
            "--config",
            CONFIG,
        ],
        "creating the device key and CSR",
    )
    return " ".join(proc.stdout.split()) or "device key and CSR ready"


def step_hostname(host: Host) -> str:
    name = hostname_for(serial_of(host))
    hostname = host.path("/etc/hostname")
    if not hostname.exists() or hostname.read_text().strip() != name:
        atomic_write(hostname, f"{name}\n".encode())
    hosts = host.path("/etc/hosts")
    text = hosts.read_text() if hosts.exists() else "127.0.0.1\tlocalhost\n"
    line = f"127.0.1.1\t{name}"
    new, n = re.subn(r"(?m)^127\.0\.1\.1\s.*$", line, text)
    if n == 0:
        new = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    if new != text:
        atomic_write(hosts, new.encode())
    host.call(["hostname", name])  # the running kernel; /etc/hostname covers every later boot
    return f"hostname {name}"


def enrol_available(host: Host) -> bool:
    bodycam = host.path(VENV) / "bin" / "bodycam"
    return host.call([str(bodycam), "enrol", "--help"]).returncode == 0


def step_enrol(host: Host) -> str:
    if not enrol_available(host):
        return (
            "this firmware has no 'bodycam enrol' yet: enrolment is left to a later firmware "
            "(bodycam-enrol.timer will try once it exists)"
        )
    host.call(["systemctl", "start", "--no-block", "bodycam-enrol.service"])
    return "enrolment started (bodycam-enrol.timer retries until the camera is docked)"


STEPS: list[tuple[str, Callable[[Host], str]]] = [
    ("users", step_users),
    ("serial", step_serial),
    ("datapart", step_datapart),
    ("camera", step_camera),
    ("venv", step_venv),
    ("key", step_key),
    ("hostname", step_hostname),
    ("enrol", step_enrol),
]


def stamp(host: Host, name: str) -> Path:
    return host.path(STATE_DIR) / f"{name}.done"


def pending(host: Host) -> list[str]:
    return [name for name, _ in STEPS if not stamp(host, name).exists()]


def run_all(host: Host) -> int:
    state = host.path(STATE_DIR)
    state.mkdir(parents=True, exist_ok=True)
    for i, (name, step) in enumerate(STEPS, 1):
        prefix = f"bodycam-firstboot [{i}/{len(STEPS)}] {name}:"
        if stamp(host, name).exists():
            host.log(f"{prefix} done earlier")
            continue
        try:
            result = step(host)
        except StepError as e:
            host.log(f"{prefix} FAILED: {e}")
            return 1
        except OSError as e:  # still one line: the journal and the console show nothing else
            host.log(f"{prefix} FAILED: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
            return 1
        host.log(f"{prefix} {result}")
        atomic_write(stamp(host, name), f"{name} done\n".encode())
    atomic_write(host.path(STATE_DIR) / "done", b"first boot complete\n")
    host.log("bodycam-firstboot: complete")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firstboot", description="bodycam first boot (run by systemd)")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and args.root == "/":
        print("firstboot: must run as root (it is started by bodycam-firstboot.service)", file=sys.stderr)
        return 2
    os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")  # no debconf questions on a headless camera
    return run_all(Host(root=Path(args.root)))


if __name__ == "__main__":
    sys.exit(main())
