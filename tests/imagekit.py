"""A small synthetic stand-in for Raspberry Pi OS Lite, and readers for checking built images.

The base has the real layout (MBR; 1 FAT32 boot at 4 MiB, 2 ext4 root), the files the build reads or
changes (fstab with PARTUUIDs, passwd/shadow/group with a password hash for `pi`, ssh.service enabled
through the sshd alias, Imager's userconf.txt and ssh flag on the boot partition), and nothing else.
It is built the same way the build works, without mounts, and inspected with independent tools.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"  # sfdisk, debugfs, ...

from bodycam.image.firstboot import TOOLS as FIRSTBOOT_TOOLS

LABEL_ID = "0x5ee0c0de"
TOOL_DIRS = {"rm": "usr/bin", "dpkg": "usr/bin", "dpkg-query": "usr/bin", "apt-get": "usr/bin",
             "runuser": "usr/sbin", "hostname": "usr/bin", "systemctl": "usr/bin"}
PARTUUID = "5ee0c0de"
SECTOR = 512
PI_HASH = "$6$saltsalt$Zq0oJkJx8oW4e6bq6fUqJ0iQ2w0s3bQ9m0yQn9E8xK0pJ8Y9cT7dVf2hL1aB3cD5eF6gH7iJ8kL9mN0oP1qR2s"


def sh(*cmd: str | Path, input: bytes | None = None) -> str:  # noqa: A002
    proc = subprocess.run([str(c) for c in cmd], input=input, capture_output=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode(errors="replace")


def _write(root: Path, rel: str, text: str | bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode() if isinstance(text, str) else text)


BOOKWORM_OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    "VERSION_CODENAME=bookworm\nID=debian\n"
)


def make_base(
    out: Path,
    *,
    boot_mb: int = 64,
    root_mb: int = 256,
    xz: bool = False,
    extra: Mapping[str, str | bytes] | None = None,
    links: Mapping[str, str] | None = None,
    without: Iterable[str] = (),
) -> Path:
    """``extra``: more root files (relative path -> content); ``links``: symlinks (path -> target);
    ``without``: default root files to leave out (e.g. ``usr/sbin/sfdisk``, a base without fdisk).

    Every program first boot runs is there (as a stub: nothing runs them here), with Bookworm's
    os-release and Python 3.11 (``usr/lib/python3.11``), as the build's base checks expect."""
    work = out.parent / (out.name + ".parts")
    work.mkdir(parents=True, exist_ok=True)
    boot, root = work / "boot", work / "root"
    _write(boot, "config.txt", "# synthetic\ncamera_auto_detect=1\narm_64bit=1\n")
    _write(
        boot,
        "cmdline.txt",
        f"console=serial0,115200 console=tty1 root=PARTUUID={PARTUUID}-02 rootfstype=ext4 "
        "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
    )
    _write(boot, "kernel8.img", bytes(range(256)) * 64)
    _write(boot, "overlays/imx708.dtbo", b"\xd0\x0d\xfe\xed" + bytes(60))
    _write(boot, "userconf.txt", f"pi:{PI_HASH}\n")
    _write(boot, "ssh", "")
    _write(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
        "pi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
    )
    _write(root, "etc/group", "root:x:0:\nshadow:x:42:\nvideo:x:44:pi\ngpio:x:997:pi\npi:x:1000:\n")
    _write(
        root,
        "etc/shadow",
        f"root:*:19000:0:99999:7:::\nsshd:!:19000::::::\npi:{PI_HASH}:19000:0:99999:7:::\n",
    )
    _write(
        root,
        "etc/fstab",
        f"proc            /proc           proc    defaults          0       0\n"
        f"PARTUUID={PARTUUID}-01  /boot/firmware  vfat    defaults          0       2\n"
        f"PARTUUID={PARTUUID}-02  /               ext4    defaults,noatime  0       1\n",
    )
    _write(root, "etc/hostname", "raspberrypi\n")
    _write(root, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    _write(
        root,
        "usr/lib/systemd/system/ssh.service",
        "[Unit]\nDescription=OpenBSD Secure Shell server\n"
        "[Service]\nExecStart=/usr/sbin/sshd -D\n"
        "[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
    )
    _write(root, "usr/lib/os-release", BOOKWORM_OS_RELEASE)
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    _write(root, "usr/lib/python3.11/os.py", "")
    _write(root, "usr/bin/python3.11", "#!/bin/sh\n")
    (root / "usr/bin/python3").symlink_to("python3.11")
    for tool in FIRSTBOOT_TOOLS:
        if tool != "python3":
            _write(root, f"{TOOL_DIRS.get(tool, 'usr/sbin')}/{tool}", "#!/bin/sh\n")
    for rel in without:
        (root / rel).unlink()
    for d in (
        "etc/systemd/system/multi-user.target.wants",
        "home/pi",
        "var/lib",
        "boot/firmware",
        "opt",
        "proc",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system/sshd.service").symlink_to("/usr/lib/systemd/system/ssh.service")
    for rel, content in (extra or {}).items():
        _write(root, rel, content)
    for rel, target in (links or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    for tree in (boot, root):
        for p in [*tree.rglob("*"), tree]:
            os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    env = {
        "E2FSPROGS_FAKE_TIME": "1700000000",
        "SOURCE_DATE_EPOCH": "1700000000",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    root_img, boot_img = work / "root.ext4", work / "boot.fat"
    for p in (root_img, boot_img):
        p.unlink(missing_ok=True)
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "rootfs",
            "-U",
            "11111111-2222-4333-8444-555555555555",
            "-E",
            "hash_seed=11111111-2222-4333-8444-666666666666,root_owner=0:0",
            "-d",
            str(root),
            str(root_img),
            f"{root_mb}M",
        ],
        check=True,
        env=env,
    )
    # Owners as in Raspberry Pi OS, set with debugfs so this works without root too.
    fix = (
        "sif /etc/shadow uid 0\nsif /etc/shadow gid 42\nsif /etc/shadow mode 0100640\n"
        "sif /home/pi uid 1000\nsif /home/pi gid 1000\nsif /home/pi mode 040750\n"
    )
    for rel in ("etc/passwd", "etc/group", "etc/fstab", "etc/hostname", "etc/hosts"):
        fix += f"sif /{rel} uid 0\nsif /{rel} gid 0\n"
    subprocess.run(
        ["debugfs", "-w", "-f", "-", str(root_img)],
        input=fix.encode(),
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            "mkfs.vfat",
            "-C",
            "--invariant",
            "-i",
            "5EE0B007",
            "-n",
            "bootfs",
            "-F",
            "32",
            str(boot_img),
            str(boot_mb * 1024),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    for f in sorted(boot.rglob("*")):
        rel = f.relative_to(boot).as_posix()
        if f.is_dir():
            subprocess.run(["mmd", "-i", str(boot_img), f"::/{rel}"], check=True, env=env)
        else:
            subprocess.run(["mcopy", "-m", "-i", str(boot_img), str(f), f"::/{rel}"], check=True, env=env)
    boot_start, boot_size = 8192, boot_mb * 2048
    root_start, root_size = boot_start + boot_size, root_mb * 2048
    img = out if not xz else out.with_suffix("")
    with open(img, "wb") as f:
        f.truncate((root_start + root_size) * SECTOR)
    script = (
        f"label: dos\nlabel-id: {LABEL_ID}\nunit: sectors\n\nstart={boot_start}, size={boot_size}, type=c\n"
        f"start={root_start}, size={root_size}, type=83\n"
    )
    sh("sfdisk", "-q", "--no-reread", "--no-tell-kernel", img, input=script.encode())
    for src, start in ((boot_img, boot_start), (root_img, root_start)):
        subprocess.run(
            [
                "dd",
                f"if={src}",
                f"of={img}",
                "bs=1M",
                f"seek={start * SECTOR}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ],
            check=True,
        )
    if xz:
        sh("xz", "-T2", "-1", "-f", "-k", img)
        img.unlink()
        return img.with_name(img.name + ".xz")
    return img


@dataclass(frozen=True)
class Part:
    number: int
    start: int
    size: int
    type: str

    @property
    def offset(self) -> int:
        return self.start * SECTOR


def partitions(img: Path) -> list[Part]:
    table = json.loads(sh("sfdisk", "--json", img))["partitiontable"]
    return [Part(i, p["start"], p["size"], p["type"]) for i, p in enumerate(table["partitions"], 1)]


class Ext4View:
    """Read an ext4 partition inside an image with debugfs (``img?offset=N``): no mount."""

    def __init__(self, img: Path, part: Part) -> None:
        self.spec = f"{img}?offset={part.offset}"

    def _debugfs(self, request: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["debugfs", "-R", request, self.spec], capture_output=True, check=False)

    def cat(self, path: str) -> bytes:
        proc = self._debugfs(f"cat {path}")
        assert b"not found" not in proc.stderr, f"{path}: {proc.stderr!r}"
        return proc.stdout

    def exists(self, path: str) -> bool:
        return b"not found" not in self._debugfs(f"stat {path}").stderr

    def stat(self, path: str) -> dict[str, str]:
        """mode (octal, with type), uid, gid, and for symlinks the target; from 'ls -p' of the parent."""
        parent, _, name = path.rpartition("/")
        out = self._debugfs(f"ls -p {parent or '/'}").stdout.decode()
        for line in out.splitlines():
            f = line.split("/")
            if len(f) >= 7 and f[5] == name:
                entry = {"mode": f[2], "uid": f[3], "gid": f[4]}
                if f[2].startswith("12"):
                    entry["target"] = (
                        self._debugfs(f"stat {path}")
                        .stdout.decode()
                        .split("Fast link dest: ")[-1]
                        .split('"')[1]
                    )
                return entry
        raise AssertionError(f"{path}: not in {parent}")

    def ls(self, path: str) -> list[str]:
        out = self._debugfs(f"ls -p {path}").stdout.decode()
        return sorted(
            f.split("/")[5]
            for f in out.splitlines()
            if len(f.split("/")) >= 7 and f.split("/")[5] not in (".", "..")
        )

    def fsck(self) -> str:
        proc = subprocess.run(["e2fsck", "-fn", self.spec], capture_output=True, check=False)
        assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
        return proc.stdout.decode()
