"""What the build adds to, changes in and removes from the base root file system, as a list of ops.

Read top to bottom, ``plan()`` is the answer to "what is on a bodycam card besides Raspberry Pi OS":

* /opt/bodycam/wheels       the firmware and every dependency, aarch64 wheels (installed at first boot)
* /opt/bodycam/debs         python3-picamera2 and what it needs beyond the base, a local apt repository
                            (camerastack.py; installed at first boot before the venv)
* /usr/lib/bodycam/firstboot, the systemd units, sysusers.d entry, sshd drop-in (from the repo's
  systemd/ and image/overlay/), the technician guide
* /etc/bodycam               device.toml (per device or fleet; 0640), ca.pem (agency CA), image.json
* /var/lib/bodycam           mount point of the evidence partition (a line in /etc/fstab, noatime)
* /usr/local/bin/bodycam   -> the venv's command, for `sudo bodycam doctor`
* enabled: bodycam-firstboot.service, bodycam.service, bodycam-enrol.timer; masked: sshswitch and
  userconfig (Raspberry Pi OS's "ssh file" switch and its first-boot user wizard)
* /etc/shadow                every password hash replaced by "*": no account has a password
* SSH                        only with --ssh-key: the key for the default user (uid 1000), ssh enabled
Nothing secret is generated here: the device key is made on the camera at first boot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .camerastack import DEBS_DIR
from .datafs import MOUNT_OPTIONS
from .rootfs import Ext4Editor, Mkdir, Op, Remove, Symlink, Write, parents
from .tools import ImageError

UNIT_DIR = "/usr/lib/systemd/system"
WANTS = "/etc/systemd/system/multi-user.target.wants"
TIMER_WANTS = "/etc/systemd/system/timers.target.wants"
ENABLE = {"bodycam-firstboot.service": WANTS, "bodycam.service": WANTS, "bodycam-enrol.timer": TIMER_WANTS}
MASK = ("sshswitch.service", "userconfig.service")
DATA_MOUNT = "/var/lib/bodycam"
LOCKED = {"*", "!", "!*"}


@dataclass(frozen=True)
class Inputs:
    source: Path  # repo checkout: systemd/, image/overlay/, docs/technician.md
    config: Path
    ca: Path
    ssh_key: Path | None
    wheels: list[Path]
    firmware_version: str
    epoch: int
    partuuid_prefix: str
    set_clock: bool = False
    debs: list[Path] = field(default_factory=list)  # the camera stack (camerastack.py), may be empty
    debs_index: list[Path] = field(default_factory=list)  # its Packages, Release and apt source line


def lock_passwords(shadow: str) -> tuple[str, list[str]]:
    """Replace every password hash (and every empty password) with '*'; returns the users changed."""
    out, changed = [], []
    for line in shadow.splitlines():
        parts = line.split(":")
        if len(parts) >= 2 and parts[1] not in LOCKED:
            parts[1] = "*"
            changed.append(parts[0])
        out.append(":".join(parts))
    return "\n".join(out) + "\n", changed


def with_data_mount(fstab: str, partuuid_prefix: str) -> str:
    """fstab with exactly one line mounting partition 3 on /var/lib/bodycam.

    Same PARTUUID style as Raspberry Pi OS's own lines, so its first boot, which gives the card a new
    disk id and rewrites every PARTUUID in fstab and cmdline.txt, keeps ours right too.
    """
    keep = [ln for ln in fstab.splitlines() if not (ln.split()[1:2] == [DATA_MOUNT])]
    keep.append(f"PARTUUID={partuuid_prefix}-03  {DATA_MOUNT}  ext4  {MOUNT_OPTIONS}  0  2")
    return "\n".join(keep) + "\n"


def default_user(passwd: str) -> tuple[str, int, int, str] | None:
    """(name, uid, gid, home) of the first user with uid 1000, Raspberry Pi OS's default account."""
    for line in passwd.splitlines():
        p = line.split(":")
        if len(p) >= 6 and p[2] == "1000":
            return p[0], int(p[2]), int(p[3]), p[5]
    return None


def _staged(stage: Path, name: str, data: bytes) -> Path:
    path = stage / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def plan(editor: Ext4Editor, inp: Inputs, stage: Path) -> tuple[list[Op], list[str]]:
    """The ops for the root file system, and notes for the build log."""
    ops: list[Op] = []
    notes: list[str] = []

    def dirs(*paths: str, mode: int = 0o755) -> None:
        ops.extend(Mkdir(p, mode) for p in paths)

    dirs(
        "/opt",
        "/opt/bodycam",
        "/opt/bodycam/wheels",
        "/usr/lib/bodycam",
        "/usr/lib/sysusers.d",
        "/usr/share/doc/bodycam",
        "/etc/bodycam",
        "/etc/systemd/system",
        WANTS,
        TIMER_WANTS,
        "/var/lib",
    )
    dirs(DATA_MOUNT, mode=0o750)
    ops += [Write(f"/opt/bodycam/wheels/{w.name}", w) for w in inp.wheels]
    if inp.debs:
        dirs(DEBS_DIR)
        ops += [Write(f"{DEBS_DIR}/{p.name}", p) for p in [*inp.debs, *inp.debs_index]]

    firstboot = Path(__file__).with_name("firstboot.py")
    ops.append(
        Write("/usr/lib/bodycam/firstboot", _staged(stage, "firstboot", firstboot.read_bytes()), 0o755)
    )
    units = sorted(u for u in (inp.source / "systemd").glob("bodycam*.*") if u.is_file())
    if not units:
        raise ImageError(f"{inp.source}/systemd: no unit files; pass --source with a bodycam checkout")
    ops += [Write(f"{UNIT_DIR}/{u.name}", _staged(stage, f"units/{u.name}", u.read_bytes())) for u in units]
    if inp.set_clock:  # [offload] set_clock = true: the daemon may step the clock (CAP_SYS_TIME)
        drop_in = inp.source / "systemd" / "dropins" / "bodycam-set-clock.conf"
        ops.append(
            Write(
                f"{UNIT_DIR}/bodycam.service.d/set-clock.conf",
                _staged(stage, "units/set-clock.conf", drop_in.read_bytes()),
            )
        )
        notes.append("[offload] set_clock: bodycam.service may set the clock (CAP_SYS_TIME drop-in)")
    overlay = inp.source / "image" / "overlay"
    for f in sorted(p for p in overlay.rglob("*") if p.is_file()):
        rel = "/" + f.relative_to(overlay).as_posix()
        dirs(*parents([rel]))
        ops.append(Write(rel, _staged(stage, "overlay" + rel, f.read_bytes())))
    guide = inp.source / "docs" / "technician.md"
    if guide.exists():
        ops.append(
            Write("/usr/share/doc/bodycam/technician.md", _staged(stage, "technician.md", guide.read_bytes()))
        )

    # Per-device configuration. The token in device.toml is a secret: 0640, group bodycam at first boot.
    ops.append(
        Write("/etc/bodycam/device.toml", _staged(stage, "etc/device.toml", inp.config.read_bytes()), 0o640)
    )
    ops.append(Write("/etc/bodycam/ca.pem", _staged(stage, "etc/ca.pem", inp.ca.read_bytes())))
    info = {
        "format": "bodycam.image/1",
        "firmware_version": inp.firmware_version,
        "source_date_epoch": inp.epoch,
        "wheels": [{"file": w.name, "sha256": _sha256(w)} for w in inp.wheels],
        "debs": [{"file": d.name, "sha256": _sha256(d)} for d in inp.debs],
    }
    ops.append(
        Write(
            "/etc/bodycam/image.json",
            _staged(stage, "etc/image.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()),
        )
    )

    for unit, wants in ENABLE.items():
        ops.append(Symlink(f"{wants}/{unit}", f"{UNIT_DIR}/{unit}"))
    for unit in MASK:
        ops.append(Symlink(f"/etc/systemd/system/{unit}", "/dev/null"))
    # `sudo bodycam doctor` on the camera; dangling until first boot has made the venv.
    ops.append(Symlink("/usr/local/bin/bodycam", "/opt/bodycam/venv/bin/bodycam"))

    fstab = editor.read("/etc/fstab")
    if fstab is None:
        raise ImageError("base image: no /etc/fstab in the root partition; is it Raspberry Pi OS?")
    fstab_attr = editor.lookup("/etc/fstab")
    assert fstab_attr is not None
    ops.append(
        Write(
            "/etc/fstab",
            _staged(stage, "etc/fstab", with_data_mount(fstab.decode(), inp.partuuid_prefix).encode()),
            fstab_attr.mode & 0o7777,
            fstab_attr.uid,
            fstab_attr.gid,
        )
    )

    shadow = editor.read("/etc/shadow")
    if shadow is None:
        raise ImageError("base image: no /etc/shadow in the root partition; is it Raspberry Pi OS?")
    locked, changed = lock_passwords(shadow.decode())
    attr = editor.lookup("/etc/shadow")
    assert attr is not None
    ops.append(
        Write(
            "/etc/shadow",
            _staged(stage, "etc/shadow", locked.encode()),
            attr.mode & 0o7777,
            attr.uid,
            attr.gid,
        )
    )
    if changed:
        notes.append(f"removed the password of: {', '.join(changed)}")

    ops += ssh_ops(editor, inp, stage, notes)
    return with_parents(ops), notes


def with_parents(ops: list[Op]) -> list[Op]:
    """Every directory first (parents before children; missing parents 0755 root), then the rest in order."""
    dirs = {op.path: op for op in ops if isinstance(op, Mkdir)}
    for p in parents(op.path for op in ops):
        dirs.setdefault(p, Mkdir(p))
    ordered = sorted(dirs.values(), key=lambda d: (d.path.count("/"), d.path))
    return [*ordered, *(op for op in ops if not isinstance(op, Mkdir))]


def ssh_ops(editor: Ext4Editor, inp: Inputs, stage: Path, notes: list[str]) -> list[Op]:
    enable = [f"{WANTS}/ssh.service", "/etc/systemd/system/sshd.service"]
    if inp.ssh_key is None:
        notes.append("SSH is off (no --ssh-key)")
        return [Remove(p) for p in enable]
    unit = next(
        (
            u
            for u in ("/usr/lib/systemd/system/ssh.service", "/lib/systemd/system/ssh.service")
            if editor.lookup(u) is not None
        ),
        None,
    )
    if unit is None:
        raise ImageError("--ssh-key given but the base image has no OpenSSH server (ssh.service)")
    passwd = editor.read("/etc/passwd") or b""
    user = default_user(passwd.decode())
    if user is None:
        raise ImageError("--ssh-key given but the base image has no default user (uid 1000) to log in as")
    name, uid, gid, home = user
    ops: list[Op] = [Symlink(p, unit) for p in enable]
    ops += [
        Mkdir(home, 0o750, uid, gid),
        Mkdir(f"{home}/.ssh", 0o700, uid, gid),
        Write(
            f"{home}/.ssh/authorized_keys",
            _staged(stage, "authorized_keys", inp.ssh_key.read_bytes()),
            0o600,
            uid,
            gid,
        ),
    ]
    notes.append(f"SSH on, key login only, as {name}")
    return ops


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
