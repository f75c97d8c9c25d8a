"""scripts/boot-test: the image as built, booted in an emulated arm64 machine, checked from its console.

What a technician would do without a Pi, automated and opt-in (not part of ./scripts/test: it takes
about half an hour and needs root for mmdebstrap):

1. base      a Debian bookworm arm64 root (mmdebstrap minbase + systemd, python3, fdisk, e2fsprogs,
             util-linux, linux-image-arm64), cached as a directory in the cache folder
2. layout    that root put into the Raspberry Pi OS image layout the build accepts (MBR; 1 FAT32
             boot, 2 ext4 root; fstab by PARTUUID), as tests/imagekit.make_base does for its stand-in
3. build     ``scripts/build-image`` on it, config with the synthetic camera (no camera stack)
4. test copy the boot-test's own additions, on a copy only: a drop-in ``GPIOZERO_PIN_FACTORY=mock``
             (emulation only: QEMU's virt machine has no Raspberry Pi GPIO header) and bodycam-boottest.service
             (tests/boottest-guest.sh), which prints one line per check to the serial console
5. boot      ``qemu-system-aarch64 -M virt`` with Debian's kernel and initrd from the root, no
             network, twice: first boot (checks, then power off), then a later boot

Every check prints one ``pass``/``fail`` line; the exit status is 1 if any failed or is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware"))

from bodycam.image import overlay, rootfs  # noqa: E402
from bodycam.image.tools import epoch_env  # noqa: E402

PACKAGES = (
    "systemd,systemd-sysv,udev,dbus,python3,python3-venv,fdisk,e2fsprogs,util-linux,kmod,procps,"
    "initramfs-tools,linux-image-arm64"
)
MIRROR = "http://deb.debian.org/debian"
LABEL_ID = "0xb0071e57"
SECTOR = 512
BOOT_MB = 256
CARD_BYTES = 6 << 30  # the "SD card": first boot grows the evidence partition to fill it
CHECKS = {1: ("firstboot", "device-key", "service", "watchdog", "record-verify"),
          2: ("firstboot-skipped", "service-after-reboot")}
BOOT_TIMEOUT = 30 * 60

CONFIG = """\
# boot-test: the synthetic camera at a size an emulated CPU can encode in real time.
[device]
serial = "BC-BOOTTEST"
officer_id = "PC-0000"
data_dir = "/var/lib/bodycam"

[camera]
source = "synthetic"
width = 320
height = 240
fps = 10

[encoder]
codec = "libx264"
bitrate_kbps = 400
gop_seconds = 1.0

[buffer]
pre_event_seconds = 2

[recording]
segment_seconds = 2
fragment_seconds = 0.5

[storage]
reserve_megabytes = 16
"""

MOCK_PINS = """\
# scripts/boot-test only: QEMU's virt machine has no Raspberry Pi GPIO header. Never on a real camera.
[Service]
Environment=GPIOZERO_PIN_FACTORY=mock
"""

GUEST_UNIT = """\
[Unit]
Description=bodycam boot-test checks (scripts/boot-test; emulation only)
After=bodycam-firstboot.service bodycam.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bodycam-boottest
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
"""


def say(msg: str) -> None:
    print(f"boot-test: {msg}", flush=True)


def sh(*cmd: str | Path, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---- 1. base ---------------------------------------------------------------------------------------


def base_root(cache: Path) -> Path:
    """The mmdebstrap root, made once: a directory renamed into place only when complete."""
    done = cache / "bookworm-arm64"
    if (done / "usr/bin/python3").exists():
        say(f"base: reusing {done}")
        return done
    partial = cache / "bookworm-arm64.partial"
    shutil.rmtree(partial, ignore_errors=True)
    say(f"base: mmdebstrap bookworm arm64 minbase + {PACKAGES} (about 20 minutes on 2 cores)")
    t0 = time.monotonic()
    sh("mmdebstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", "bookworm", partial, MIRROR)
    partial.rename(done)
    say(f"base: done in {time.monotonic() - t0:.0f} s")
    return done


def kernel_files(root: Path) -> tuple[Path, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise SystemExit(f"boot-test: no kernel/initrd in {root}/boot: is linux-image-arm64 installed?")
    return kernels[-1], initrds[-1]


# ---- 2. layout -------------------------------------------------------------------------------------


def partuuid(n: int) -> str:
    return f"{LABEL_ID[2:]}-{n:02d}"


def layout_base(root: Path, out: Path, work: Path) -> Path:
    """The Debian root in Raspberry Pi OS's layout: 1 FAT32 boot (4 MiB in), 2 ext4 root."""
    say("layout: Raspberry Pi OS layout (FAT32 boot + ext4 root, PARTUUID fstab)")
    work.mkdir(parents=True, exist_ok=True)
    tree = work / "root"
    shutil.rmtree(tree, ignore_errors=True)
    sh("cp", "-a", root, tree)
    (tree / "etc/fstab").write_text(
        "proc            /proc           proc    defaults          0       0\n"
        f"PARTUUID={partuuid(1)}  /boot/firmware  vfat    defaults          0       2\n"
        f"PARTUUID={partuuid(2)}  /               ext4    defaults,noatime  0       1\n"
    )
    (tree / "etc/hostname").write_text("raspberrypi\n")
    (tree / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    (tree / "boot/firmware").mkdir(parents=True, exist_ok=True)
    kernel, initrd = kernel_files(tree)
    boot = work / "boot"
    shutil.rmtree(boot, ignore_errors=True)
    boot.mkdir()
    (boot / "config.txt").write_text("arm_64bit=1\ncamera_auto_detect=1\n")
    (boot / "cmdline.txt").write_text(f"console=serial0,115200 root=PARTUUID={partuuid(2)} rootwait\n")
    shutil.copy(kernel, boot / "kernel8.img")
    shutil.copy(initrd, boot / "initramfs8")
    used = int(subprocess.run(["du", "-sm", tree], capture_output=True, text=True, check=True).stdout.split()[0])
    root_mb = used + 512
    root_img, boot_img = work / "root.ext4", work / "boot.fat"
    for p in (root_img, boot_img, out):
        p.unlink(missing_ok=True)
    sh("mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", tree, root_img, f"{root_mb}M")
    sh("mkfs.vfat", "-C", "-n", "bootfs", "-F", "32", boot_img, str(BOOT_MB * 1024), stdout=subprocess.DEVNULL)
    for f in sorted(boot.iterdir()):
        sh("mcopy", "-i", boot_img, f, f"::/{f.name}")
    boot_start, boot_size = 8192, BOOT_MB * 2048
    root_start, root_size = boot_start + boot_size, root_mb * 2048
    with open(out, "wb") as f:
        f.truncate((root_start + root_size) * SECTOR)
    table = (
        f"label: dos\nlabel-id: {LABEL_ID}\nunit: sectors\n\n"
        f"start={boot_start}, size={boot_size}, type=c\nstart={root_start}, size={root_size}, type=83\n"
    )
    sh("sfdisk", "-q", "--no-reread", "--no-tell-kernel", out, input=table.encode(), stdout=subprocess.DEVNULL)
    for src, start in ((boot_img, boot_start), (root_img, root_start)):
        sh("dd", f"if={src}", f"of={out}", "bs=4M", f"seek={start * SECTOR}", "oflag=seek_bytes",
           "conv=notrunc,sparse", "status=none")
    shutil.rmtree(tree)
    return out


# ---- 3. build --------------------------------------------------------------------------------------


def make_ca(path: Path) -> None:
    """A throwaway agency CA: the build checks it is one; nothing in the boot test enrols."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "boot-test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def build(base: Path, work: Path, offline: bool) -> Path:
    config, ca, out = work / "boottest.toml", work / "ca.pem", work / "bodycam.img"
    config.write_text(CONFIG)
    make_ca(ca)
    say("build: scripts/build-image (synthetic camera, no camera stack)")
    t0 = time.monotonic()
    sh(REPO / "scripts/build-image", base, "--config", config, "--ca", ca, "-o", out,
       *(["--offline"] if offline else []))
    say(f"build: done in {time.monotonic() - t0:.0f} s")
    return out


# ---- 4. the boot test's own copy -------------------------------------------------------------------


def root_offset(img: Path) -> int:
    out = subprocess.run(["sfdisk", "-d", str(img)], capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith(f"{img}2 ")][0]
    return int(line.split("start=")[1].split(",")[0]) * SECTOR


def add_checks(img: Path, work: Path) -> None:
    """The checks unit, the mock-pin drop-in and a bigger "card", on the test copy only (debugfs)."""
    say("test copy: adding bodycam-boottest.service and the mock-pin drop-in (emulation only)")
    stage = work / "guest"
    stage.mkdir(exist_ok=True)
    (stage / "unit").write_text(GUEST_UNIT)
    (stage / "mock.conf").write_text(MOCK_PINS)
    shutil.copy(REPO / "tests/boottest-guest.sh", stage / "script")
    editor = rootfs.Ext4Editor(Path(f"{img}?offset={root_offset(img)}"), epoch_env(1_735_689_600))
    ops: list[rootfs.Op] = [
        rootfs.Mkdir("/etc/systemd/system/bodycam.service.d"),
        rootfs.Write("/etc/systemd/system/bodycam.service.d/boottest-mock-pins.conf", stage / "mock.conf"),
        rootfs.Write("/etc/systemd/system/bodycam-boottest.service", stage / "unit"),
        rootfs.Symlink("/etc/systemd/system/multi-user.target.wants/bodycam-boottest.service",
                       "/etc/systemd/system/bodycam-boottest.service"),
        rootfs.Mkdir("/usr/local/sbin"),
        rootfs.Write("/usr/local/sbin/bodycam-boottest", stage / "script", mode=0o755),
    ]
    editor.apply(overlay.with_parents(ops), stage)
    with open(img, "r+b") as f:
        f.truncate(max(CARD_BYTES, img.stat().st_size))


# ---- 5. boot ---------------------------------------------------------------------------------------


def boot(n: int, img: Path, kernel: Path, initrd: Path, log: Path) -> dict[str, str]:
    """One power-on; returns check name -> 'pass ...'/'fail ...' from the console."""
    cmd = [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
        "-nographic", "-no-reboot", "-nic", "none",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", f"console=ttyAMA0 root=PARTUUID={partuuid(2)} rootfstype=ext4 rootwait rw",
        "-drive", f"file={img},format=raw,if=virtio,cache=unsafe",
    ]
    say(f"boot {n}: qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 (console log {log})")
    results: dict[str, str] = {}
    t0 = time.monotonic()
    with open(log, "wb") as out, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT) as qemu:
        assert qemu.stdout is not None
        # A guest that hangs prints nothing, so the deadline cannot wait for the next line.
        timer = threading.Timer(BOOT_TIMEOUT, qemu.kill)
        timer.start()
        for raw in qemu.stdout:
            out.write(raw)
            line = raw.decode(errors="replace").rstrip()
            at = f"[{time.monotonic() - t0:5.0f} s]"
            if "BOOTTEST " in line:
                body = line.split("BOOTTEST ", 1)[1]
                kind, _, rest = body.partition(" ")
                if kind in ("pass", "fail"):
                    results[rest.split(" ", 1)[0]] = body
                    print(f"  {at} {'PASS' if kind == 'pass' else 'FAIL'} {rest}", flush=True)
                elif kind == "info":
                    print(f"  {at} {rest}", flush=True)
            elif m := re.search(r"bodycam-firstboot( \[\d/\d\].*| *: .*)$", line):
                print(f"  {at} bodycam-firstboot{m.group(1)}", flush=True)
            elif "Reached target" in line and "Multi-User" in line:
                print(f"  {at} multi-user.target reached", flush=True)
        qemu.wait()
        if not timer.is_alive():
            say(f"boot {n}: no power-off after {BOOT_TIMEOUT} s; QEMU stopped")
        timer.cancel()
    say(f"boot {n}: powered off after {time.monotonic() - t0:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="boot-test", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache/bodycam/boot-test",
                   help="the mmdebstrap root and the laid-out base are kept here")
    p.add_argument("--offline", action="store_true", help="build-image --offline (wheel cache already filled)")
    p.add_argument("--rebuild-base", action="store_true", help="run mmdebstrap again")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    cache = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    if args.rebuild_base:
        shutil.rmtree(cache / "bookworm-arm64", ignore_errors=True)
        (cache / "base.img").unlink(missing_ok=True)
    root = base_root(cache)
    base = cache / "base.img"
    if not base.exists() or base.stat().st_mtime < root.stat().st_mtime:
        layout_base(root, cache / "base.img.partial", cache / "layout")
        (cache / "base.img.partial").rename(base)
    else:
        say(f"layout: reusing {base}")
    work = cache / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    img = build(base, work, args.offline)
    add_checks(img, work)
    kernel, initrd = kernel_files(root)
    results: dict[str, str] = {}
    for n in (1, 2):
        got = boot(n, img, kernel, initrd, work / f"console-{n}.log")
        results.update(got)
        if n == 1 and not got:
            say("boot 1 printed no checks; not booting again")
            break
    failed = 0
    say("results:")
    for n, names in CHECKS.items():
        for name in names:
            line = results.get(name, f"fail {name} (no result: see {work}/console-{n}.log)")
            ok = line.startswith("pass")
            failed += not ok
            print(f"  {'PASS' if ok else 'FAIL'} {line.split(' ', 1)[1]}", flush=True)
    say(f"{'all checks passed' if not failed else f'{failed} check(s) failed'} "
        f"in {(time.monotonic() - t0) / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
