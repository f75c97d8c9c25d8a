"""`bodycam image build`: base Raspberry Pi OS Lite image + device config + agency CA -> flashable .img.

Unprivileged and without loop devices or mounts (see the package docstring for the stages). The output
is a function of the inputs: the base image, the config, the CA, the SSH key, the wheel cache, the .deb
cache (the camera stack), the source tree and SOURCE_DATE_EPOCH (default 2025-01-01). Same inputs, same
bytes: tests build twice and compare SHA-256.

Output layout (MBR, the base's disk id, so Raspberry Pi OS's PARTUUIDs stay valid):
  1  FAT   the base's boot partition, same start and size, rebuilt
  2  ext4  the base's root, grown to hold the wheels, the camera stack's .debs, and what first boot
           installs from them
  3  ext4  evidence (``bodycam-data``), small here; first boot grows it to the end of the card
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from .. import __version__
from .. import config as configmod
from . import aptrepo, basecheck, bootfs, camerastack, datafs, disk, overlay, rootfs, wheels
from .progress import Progress
from .tools import BUILD_TOOLS, ImageError, epoch_env, human, require

DEFAULT_EPOCH = 1_735_689_600  # 2025-01-01T00:00:00Z
DEFAULT_DATA_SIZE = 64 << 20
IMAGE_DATA_DIR = "/var/lib/bodycam"
ROOT_HEADROOM = 256 << 20
STEPS = 9
DEBS_UNPACKED = 3  # root space for the camera stack: its .debs and, after first boot, their files


@dataclass
class BuildOptions:
    base: Path
    config: Path
    ca: Path
    output: Path
    ssh_key: Path | None = None
    wheels: Path | None = None  # wheel cache; default ~/.cache/bodycam/wheels
    offline: bool = False
    debs: Path | None = None  # verified .deb and apt index cache; default ~/.cache/bodycam/debs
    camera_stack: bool = True  # False: --no-camera-stack, for simulation images
    data_size: int = DEFAULT_DATA_SIZE
    root_grow: int | None = None  # None: 4 x the wheels + 3 x the .debs + 256 MiB (both get unpacked)
    epoch: int | None = None
    source: Path | None = None
    keep_workdir: bool = False


@dataclass
class BuildResult:
    output: Path
    sha256: str
    size: int
    notes: list[str] = field(default_factory=list)


def default_source() -> Path:
    """The checkout this package runs from (editable install); the image needs systemd/ and image/."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "systemd" / "bodycam.service").exists():
        raise ImageError("not running from a bodycam source checkout: pass --source DIR")
    return root


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bodycam" / "wheels"


def default_epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        return DEFAULT_EPOCH
    try:
        return int(raw)
    except ValueError:
        raise ImageError(f"SOURCE_DATE_EPOCH={raw!r}: must be whole seconds since 1970") from None


def check_config(path: Path) -> configmod.Config:
    cfg = configmod.load(path)
    if str(cfg.data_dir) != IMAGE_DATA_DIR:
        raise ImageError(
            f"{path}: [device] data_dir = {cfg.device.data_dir!r}: an image mounts the evidence "
            f"partition on {IMAGE_DATA_DIR}, so data_dir must be that"
        )
    if cfg.device.key_file and not Path(cfg.device.key_file).is_relative_to(IMAGE_DATA_DIR):
        raise ImageError(
            f"{path}: [device] key_file must be under {IMAGE_DATA_DIR} (or unset): the rest "
            "of the card is read-only to the daemon"
        )
    return cfg


def config_notes(cfg: configmod.Config, fleet: bool) -> list[str]:
    """Things that are legal but probably not what the technician wants on a camera."""
    notes = []
    off = getattr(cfg, "offload", None)
    if off is not None:
        if not getattr(off, "backend_url", ""):
            notes.append("no [offload] backend_url: this camera will neither enrol nor upload")
        elif not getattr(off, "enrol_token", "") and not fleet:
            notes.append(
                "no [offload] enrol_token: enrol it later with 'bodycam enrol --config ... --token ...'"
            )
    if cfg.camera.source != "picamera2":
        notes.append(f"[camera] source = {cfg.camera.source!r}: not the Pi camera")
    return notes


def set_clock(cfg: configmod.Config) -> bool:
    return bool(getattr(getattr(cfg, "offload", None), "set_clock", False))


def check_ca(path: Path) -> None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ImageError(f"CA certificate {path}: not found") from None
    except ValueError:
        raise ImageError(
            f"CA certificate {path}: not a PEM X.509 certificate (GET /v1/backend gives ca_certificate_pem)"
        ) from None
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if not bc.ca:
        raise ImageError(
            f"CA certificate {path}: is not a CA certificate (BasicConstraints CA:FALSE); "
            "give the agency CA, not a device or server certificate"
        )


KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-")


def check_ssh_key(path: Path) -> None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ImageError(f"SSH public key {path}: not found") from None
    except (UnicodeDecodeError, OSError):
        raise ImageError(f"SSH public key {path}: not a text file") from None
    if "PRIVATE KEY" in text:
        raise ImageError(f"SSH public key {path}: this is a private key; give the .pub file")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines or not all(ln.startswith(KEY_TYPES) and len(ln.split()) >= 2 for ln in lines):
        raise ImageError(
            f"SSH public key {path}: expected OpenSSH public key lines like 'ssh-ed25519 AAAA... name'"
        )


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise ImageError(f"{what} {path}: not found")
    if not path.is_file():
        raise ImageError(f"{what} {path}: not a file")


def build(opts: BuildOptions, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress(STEPS)
    progress.total = STEPS
    epoch = opts.epoch if opts.epoch is not None else default_epoch()
    env = epoch_env(epoch)
    source = (opts.source or default_source()).resolve()

    progress.step("checking inputs")
    require(*BUILD_TOOLS)
    _check_file(opts.base, "base image")
    _check_file(opts.config, "config")
    cfg = check_config(opts.config)
    check_ca(opts.ca)
    if opts.ssh_key is not None:
        check_ssh_key(opts.ssh_key)
    out = opts.output.resolve()
    if not out.parent.is_dir():
        raise ImageError(f"output {opts.output}: folder {out.parent} does not exist")
    if out == opts.base.resolve():
        raise ImageError("output would overwrite the base image; choose another --output")
    if opts.data_size < 16 << 20:
        raise ImageError(f"--data-size {human(opts.data_size)}: at least 16 MiB (first boot grows it anyway)")
    fleet = cfg.device.serial == "auto"
    progress.info(
        f"device {'fleet image (serial from the board at first boot)' if fleet else cfg.device.serial}, "
        f"firmware {__version__}, SOURCE_DATE_EPOCH {epoch}"
    )
    for note in config_notes(cfg, fleet):
        progress.info(f"note: {note}")
    camera_stack = opts.camera_stack and cfg.camera.source == "picamera2"
    if cfg.camera.source == "picamera2" and not opts.camera_stack:
        progress.info("note: --no-camera-stack: this camera needs picamera2 installed some other way")

    work = Path(tempfile.mkdtemp(prefix=".bodycam-image-", dir=out.parent))
    try:
        return _build(
            opts, progress, env, epoch, source, out, work, set_clock=set_clock(cfg), camera_stack=camera_stack
        )
    finally:
        if not opts.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)


def _build(
    opts: BuildOptions,
    progress: Progress,
    env: dict[str, str],
    epoch: int,
    source: Path,
    out: Path,
    work: Path,
    *,
    set_clock: bool,
    camera_stack: bool,
) -> BuildResult:
    notes: list[str] = []
    progress.step(f"reading the base image {opts.base.name}")
    base = disk.open_base(opts.base, work, progress)
    layout = disk.read_layout(base, what="base image")
    boot_part, root_part = disk.check_base_layout(layout, opts.base)
    progress.info(
        f"disk id {layout.label_id}: boot {human(boot_part.length)}, root {human(root_part.length)}"
    )
    boot_img, root_img = work / "boot.fat", work / "root.ext4"
    disk.extract(base, boot_part, boot_img)
    disk.extract(base, root_part, root_img)
    if base != opts.base:
        base.unlink()
    info = bootfs.read_info(boot_img)
    rootfs.fsck(root_img, env, "base image root file system")
    base_root = rootfs.Ext4Editor(root_img, env)
    target = basecheck.read_target(base_root)
    basecheck.check_tools(base_root, camera_stack=camera_stack)
    progress.info(f"base: {target.describe()}; has every program first boot runs")

    stack = camerastack.Stack()
    if camera_stack:
        progress.step(
            "camera stack: python3-picamera2 from the base's own apt sources, verified"
            + (" (offline)" if opts.offline else "")
        )
        stack = camerastack.gather(
            rootfs.Ext4Editor(root_img, env),
            cache=(opts.debs or aptrepo.default_cache()).resolve(),
            offline=opts.offline,
            stage=work / "debs",
            epoch=epoch,
            progress=progress,
            env=env,
        )
        notes += stack.notes
    else:
        progress.step("camera stack: not included (--no-camera-stack, or [camera] source is not picamera2)")

    cache = (opts.wheels or default_cache()).resolve()
    progress.step("gathering aarch64 wheels" + (" (offline)" if opts.offline else ""))
    if not opts.offline:
        wheels.refresh(source, cache, env, progress, python=target.python, glibc_minor=target.glibc_minor)
    wheel_files = wheels.stage(
        source, cache, work / "wheels", env, progress, python=target.python, glibc_minor=target.glibc_minor
    )
    wheel_bytes = sum(w.stat().st_size for w in wheel_files)

    progress.step("boot partition: copying out, cleaning, rebuilding (mtools, mkfs.vfat)")
    boot_stage = work / "boot"
    bootfs.extract(boot_img, boot_stage, env)
    removed = bootfs.clean(boot_stage)
    if removed:
        notes.append(f"boot partition: removed {', '.join(removed)}")
    bootfs.rebuild(boot_stage, boot_img, boot_part.length, info, epoch, env)

    grow = (
        opts.root_grow
        if opts.root_grow is not None
        else 4 * wheel_bytes + DEBS_UNPACKED * stack.size + ROOT_HEADROOM
    )
    root_sectors = disk.align_up(root_part.end + grow // disk.SECTOR) - root_part.start
    new_root = disk.Partition(2, root_part.start, root_sectors, disk.LINUX_TYPE)
    progress.step(f"root partition: growing to {human(new_root.length)} and adding bodycam (debugfs)")
    rootfs.grow(root_img, new_root.length, env)
    editor = rootfs.Ext4Editor(root_img, env)
    inputs = overlay.Inputs(
        source=source,
        config=opts.config,
        ca=opts.ca,
        ssh_key=opts.ssh_key,
        wheels=wheel_files,
        firmware_version=__version__,
        epoch=epoch,
        partuuid_prefix=layout.partuuid_prefix,
        set_clock=set_clock,
        debs=stack.debs,
        debs_index=stack.index,
    )
    ops, plan_notes = overlay.plan(editor, inputs, work / "root")
    notes += plan_notes
    editor.apply(ops, work)  # debugfs runs in ``work``: every file it copies is named relative to it
    rootfs.fsck(root_img, env, "root file system after editing")

    data_part = disk.Partition(
        3, disk.align_up(new_root.end), disk.align_up(opts.data_size // disk.SECTOR), disk.LINUX_TYPE
    )
    progress.step(f"evidence partition: {human(data_part.length)} ext4 (mkfs.ext4 -d), grown at first boot")
    data_img = work / "data.ext4"
    datafs.make(data_img, data_part.length, work / "data", label_id=layout.label_id, env=env)
    rootfs.fsck(data_img, env, "evidence file system")

    progress.step(f"writing {out.name} (sfdisk on the image file)")
    new_layout = disk.Layout(layout.label_id, (boot_part, new_root, data_part))
    partial = out.with_name(out.name + ".partial")
    try:
        disk.assemble(partial, new_layout, {1: boot_img, 2: root_img, 3: data_img}, progress)
        os.replace(partial, out)  # a failed or interrupted build never leaves a half image under OUT
    finally:
        partial.unlink(missing_ok=True)

    progress.step("checksum")
    digest = sha256_file(out, progress)
    for n in notes:
        progress.info(n)
    progress.info(f"{out}  {human(out.stat().st_size)}  sha256 {digest}")
    return BuildResult(output=out, sha256=digest, size=out.stat().st_size, notes=notes)


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if progress is None:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        else:
            with progress.bytes("sha256", size) as c:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
                    c.add(len(chunk))
    return h.hexdigest()
