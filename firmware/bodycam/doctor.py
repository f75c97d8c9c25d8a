"""`bodycam doctor`: one pass over everything a camera needs, each answer saying what to do.

Checks run in dependency order (a camera without its config cannot say much else). Every fact comes
from ``System``: a root prefix for files (``/`` on the camera, a tmp tree in tests), a command runner
(systemctl, rpicam-hello), a clock and an HTTP getter, so each check is testable with fakes.
Status: ``ok``, ``warn`` (works, but look at it), ``FAIL`` (the camera cannot do its job); the exit
status is 1 if anything failed.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import __version__
from . import config as configmod
from .device import CLOCK_PLAUSIBLE_AFTER_NS
from .encode.platform import HARDWARE_CODEC, Platform, choose_codec
from .errors import BodycamError
from .image import firstboot
from .logs import last_error

OK, WARN, FAIL = "ok", "warn", "FAIL"
CONFIG = "/etc/bodycam/device.toml"
CA = "/etc/bodycam/ca.pem"
VENV_BODYCAM = "/opt/bodycam/venv/bin/bodycam"
VENV_PYTHON = "/opt/bodycam/venv/bin/python"
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"
MAX_SKEW_SECONDS = 2.0
JOURNAL_LINES = 60
# What the daemon's gpiozero does first: load its default pin factory (lgpio on a Pi 4/5).
PIN_FACTORY = (
    "import sys; from gpiozero import Device; f = Device._default_pin_factory(); "
    "sys.stdout.write(type(f).__name__); f.close()"
)
NO_PIN_LIBRARY_FIX = (
    "the card lacks lgpio (gpiozero's pin library on a Pi 4/5): rebuild the image with this firmware's "
    "scripts/build-image, which puts it on the card, or on a networked camera "
    "'sudo /opt/bodycam/venv/bin/pip install lgpio'; then 'sudo systemctl restart bodycam'"
)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=15, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(cmd), 127, "", f"{cmd[0]}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"{cmd[0]}: timed out")


def _http_get(url: str, ca: Path | None, timeout: float) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    if ca is not None and ca.exists():
        ctx.load_verify_locations(cafile=str(ca))
    with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:  # noqa: S310 (http/https only)
        return resp.status, resp.read(65536)


@dataclass
class System:
    root: Path = Path("/")
    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] = _run
    now: Callable[[], float] = time.time
    http_get: Callable[[str, Path | None, float], tuple[int, bytes]] = _http_get
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    euid: int = field(default_factory=os.geteuid)
    daemon_status: Callable[[Path], dict[str, Any]] | None = None

    def path(self, device_path: str | Path) -> Path:
        if self.root == Path("/"):
            return Path(device_path)
        return self.root / str(device_path).lstrip("/")


@dataclass
class Context:
    """What earlier checks learned, for later ones."""

    cfg: configmod.Config | None = None
    status: dict[str, Any] | None = None  # the daemon's status reply, if it answered
    service_active: bool = False
    key_public_der: bytes | None = None
    cert_ok: bool = False
    backend_url: str | None = None


def _systemctl_show(sys_: System, unit: str, props: str) -> dict[str, str] | None:
    proc = sys_.run(["systemctl", "show", unit, f"--property={props}"])
    if proc.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def _group_members(sys_: System, group: str) -> list[str] | None:
    try:
        for line in sys_.path("/etc/group").read_text().splitlines():
            p = line.split(":")
            if len(p) >= 4 and p[0] == group:
                return [m for m in p[3].split(",") if m]
    except OSError:
        return None
    return None


def _uid(sys_: System, user: str) -> int | None:
    try:
        for line in sys_.path("/etc/passwd").read_text().splitlines():
            p = line.split(":")
            if len(p) >= 3 and p[0] == user:
                return int(p[2])
    except OSError:
        return None
    return None


# ---- checks ---------------------------------------------------------------------------------------


def check_config(sys_: System, ctx: Context, config_path: str) -> Check:
    path = sys_.path(config_path)
    try:
        cfg = configmod.load(path)
    except BodycamError as e:
        return Check(
            "config", FAIL, str(e), f"fix {config_path} (see config/device.toml in the source) or reflash"
        )
    ctx.cfg = cfg
    serial = cfg.device.serial
    if serial == "auto":
        return Check(
            "config",
            FAIL,
            f'{config_path}: serial is still "auto"',
            "first boot sets it from the board serial: check 'journalctl -u bodycam-firstboot'",
        )
    return Check("config", OK, f"{config_path}: serial {serial}, camera {cfg.camera.source}")


def check_firstboot(sys_: System, ctx: Context) -> Check:
    host = firstboot.Host(root=sys_.root)
    if sys_.path(firstboot.STATE_DIR + "/done").exists():
        return Check("first boot", OK, "complete")
    todo = firstboot.pending(host)
    return Check(
        "first boot",
        FAIL,
        f"not finished; steps left: {', '.join(todo) or 'final stamp'}",
        "see 'journalctl -b -u bodycam-firstboot'; it resumes at every boot, or now with "
        "'sudo systemctl restart bodycam-firstboot'",
    )


def last_failure(sys_: System) -> str | None:
    """Why the daemon last failed, from ``journalctl -u bodycam -b -o cat`` (None if nothing says)."""
    proc = sys_.run(["journalctl", "-u", "bodycam", "-b", "-n", str(JOURNAL_LINES), "-o", "cat", "--no-pager"])
    if proc.returncode != 0:
        return None
    return last_error(proc.stdout.splitlines())


def check_service(sys_: System, ctx: Context) -> Check:
    """Active, and how often systemd restarted it since boot (NRestarts): with Restart=always and no
    start limit, a daemon that keeps failing shows as "activating" for ever, never as "failed"."""
    show = _systemctl_show(sys_, "bodycam.service", "ActiveState,SubState,NRestarts,Result,ExecMainStatus")
    if show is None:
        return Check("service", WARN, "systemctl is not available (not running on the camera?)")
    active, sub = show.get("ActiveState", "?"), show.get("SubState", "?")
    restarts = int(show.get("NRestarts", "0") or 0)
    journal = "full log: 'journalctl -b -u bodycam -n 50'"
    if active == "active":
        ctx.service_active = True
        if restarts:
            why = last_failure(sys_)
            return Check(
                "service",
                WARN,
                f"bodycam.service {active} ({sub}), but restarted {restarts} times since boot"
                + (f"; last failure: {why}" if why else ""),
                f"look for the cause of the restarts: {journal}",
            )
        return Check("service", OK, f"bodycam.service {active} ({sub}), no restarts since boot")
    why = last_failure(sys_)
    because = f"; last start failed: {why}" if why else ""
    if restarts or sub == "auto-restart" or active == "activating":
        return Check(
            "service",
            FAIL,
            f"bodycam.service restarting in a loop: {active} ({sub}), {restarts} restarts since boot{because}",
            f"fix what the failure says, then 'sudo systemctl restart bodycam'; {journal}",
        )
    return Check(
        "service",
        FAIL,
        f"bodycam.service {active} ({sub}), result {show.get('Result', '?')}, "
        f"exit status {show.get('ExecMainStatus', '?')}{because}",
        f"fix the cause, then 'sudo systemctl restart bodycam'; {journal}",
    )


def check_daemon(sys_: System, ctx: Context) -> Check:
    assert ctx.cfg is not None
    from .daemon.control import request, socket_path

    sock = sys_.path(socket_path(ctx.cfg.data_dir))
    try:
        ctx.status = (sys_.daemon_status or (lambda p: request(p, {"cmd": "status"}, timeout=3.0)))(sock)
    except BodycamError as e:
        if "permission denied" in str(e).lower():
            return Check("daemon", WARN, "cannot ask the daemon: permission denied", "run doctor with sudo")
        status = FAIL if ctx.service_active else WARN
        return Check(
            "daemon",
            status,
            f"no answer on {socket_path(ctx.cfg.data_dir)}",
            "start it: 'sudo systemctl start bodycam'",
        )
    s = ctx.status
    fault = s.get("fault")
    detail = (
        f"{s.get('state', '?')}, {s.get('frames_captured', 0)} frames captured, "
        f"{s.get('dropped', 0)} dropped, "
        f"{s.get('pending_uploads', 0)} segments waiting to upload"
    )
    if fault:
        return Check("daemon", FAIL, f"fault: {fault} ({detail})", "read 'journalctl -b -u bodycam'")
    return Check("daemon", OK, detail)


def check_camera(sys_: System, ctx: Context) -> Check:
    assert ctx.cfg is not None
    cam = ctx.cfg.camera
    if cam.source == "synthetic":
        return Check(
            "camera", WARN, "synthetic test pattern (simulation config)", 'set [camera] source = "picamera2"'
        )
    if cam.source == "file":
        ok = sys_.path(cam.file).exists()
        return Check("camera", OK if ok else FAIL, f"video file {cam.file}" + ("" if ok else " is missing"))
    if cam.source == "webcam":
        ok = not cam.device.startswith("/") or sys_.path(cam.device).exists()
        return Check(
            "camera",
            OK if ok else FAIL,
            f"webcam {cam.device}" + ("" if ok else " not present"),
            "" if ok else "plug the camera in; 'v4l2-ctl --list-devices' lists what is there",
        )
    nodes = sorted(p.name for p in sys_.path("/dev").glob("video*")) + sorted(
        p.name for p in sys_.path("/dev").glob("media*")
    )
    if not any(n.startswith("media") for n in nodes):
        return Check(
            "camera",
            FAIL,
            "no /dev/media* device: the kernel found no camera",
            "power off, reseat the ribbon cable (contacts facing the right way), check "
            "camera_auto_detect=1 in /boot/firmware/config.txt",
        )
    if ctx.status and ctx.status.get("frames_captured", 0) > 0:
        return Check(
            "camera", OK, f"delivering frames to the daemon ({ctx.status['frames_captured']} so far)"
        )
    proc = sys_.run(["rpicam-hello", "--list-cameras"])
    if proc.returncode == 127:
        proc = sys_.run(["libcamera-hello", "--list-cameras"])
    if proc.returncode in (0, 1) and proc.stdout:
        models = [
            ln.split(":", 1)[1].split("[")[0].strip()
            for ln in proc.stdout.splitlines()
            if ":" in ln and ln.strip()[:1].isdigit()
        ]
        if models:
            return Check("camera", OK, f"libcamera sees {', '.join(models)}")
        return Check(
            "camera", FAIL, "libcamera sees no camera", "reseat the ribbon cable; check the camera module"
        )
    return Check(
        "camera",
        WARN,
        f"camera devices present ({', '.join(nodes[:4])}) but not confirmed",
        "install rpicam-apps to list cameras, or check the daemon's log",
    )


def check_camera_stack(sys_: System, ctx: Context) -> Check | None:
    """picamera2 and libcamera as the daemon imports them: apt's packages seen through the venv
    (--system-site-packages), next to the venv's own PyAV and NumPy. Only for the Pi camera."""
    assert ctx.cfg is not None
    if ctx.cfg.camera.source != "picamera2":
        return None
    proc = sys_.run([str(sys_.path(VENV_PYTHON)), "-c", "import picamera2, libcamera"])
    if proc.returncode == 0:
        return Check("camera stack", OK, "picamera2 and libcamera import in the firmware's Python")
    lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    return Check(
        "camera stack",
        FAIL,
        f"picamera2/libcamera do not import: {lines[-1] if lines else f'exit status {proc.returncode}'}",
        "first boot did not install the camera stack: see 'journalctl -u bodycam-firstboot'",
    )


# H.264 encoders are named h264_* and libx264 (no "h264" in that one: match "264").
_LIST_H264 = "import av, sys; sys.stdout.write(' '.join(sorted(c for c in av.codecs_available if '264' in c)))"


def check_encoder(sys_: System, ctx: Context) -> Check:
    """The H.264 encoder the daemon will open: the one ``[encoder] codec`` picks on this board, with the
    PyAV build the daemon's own Python imports (PyPI's aarch64 wheels carry h264_v4l2m2m; a build
    without it silently costs a Pi 4 its hardware encoder, so that is a warning)."""
    assert ctx.cfg is not None
    configured = ctx.cfg.encoder.codec
    proc = sys_.run([str(sys_.path(VENV_PYTHON)), "-c", _LIST_H264])
    if proc.returncode != 0:
        return Check("encoder", FAIL, "PyAV does not import in the firmware's Python",
                     "first boot did not finish the venv: see 'journalctl -u bodycam-firstboot'")
    board = Platform(root=sys_.root, codecs=set(proc.stdout.split()))
    device = board.hardware_encoder_device()
    choice = choose_codec(configured, board)
    if configured == HARDWARE_CODEC and device is None:
        return Check("encoder", FAIL, f"[encoder] codec = {HARDWARE_CODEC!r}, but this board has no H.264 "
                     "hardware encoder (a Pi 5 has none)", 'set [encoder] codec = "auto"')
    if choice.codec not in board.codecs:
        return Check("encoder", FAIL, f"this PyAV build has no {choice.codec}",
                     'set [encoder] codec = "auto", or install a PyAV wheel that has it')
    if device is not None and HARDWARE_CODEC not in board.codecs:
        return Check("encoder", WARN, f"{choice.codec} in software: the board's H.264 block ({device}) is "
                     f"unused because this PyAV build has no {HARDWARE_CODEC}",
                     "install PyPI's PyAV wheel (it has V4L2 M2M) for lower CPU and heat")
    if device is not None and not choice.hardware:
        return Check("encoder", WARN, f"{choice.codec} in software although {device} is a hardware encoder",
                     'set [encoder] codec = "auto" to use it')
    return Check("encoder", OK, choice.description)


def check_pins(sys_: System, ctx: Context) -> Check:
    assert ctx.cfg is not None
    b, i = ctx.cfg.buttons, ctx.cfg.indicators
    pins = (
        f"record {b.record_pin}, function {b.function_pin}, dock {b.dock_pin}, LEDs {i.green_led_pin}/"
        f"{i.red_led_pin}, buzzer {i.buzzer_pin}, vibration {i.vibration_pin}"
    )
    if sys_.env.get("GPIOZERO_PIN_FACTORY") == "mock":
        return Check(
            "pins", WARN, f"mock pins (simulation): {pins}", "unset GPIOZERO_PIN_FACTORY on a camera"
        )
    if not list(sys_.path("/dev").glob("gpiochip*")):
        return Check("pins", FAIL, "no /dev/gpiochip*: GPIO is not available", "is this a Raspberry Pi?")
    members = _group_members(sys_, "gpio")
    if members is not None and "bodycam" not in members:
        return Check(
            "pins",
            FAIL,
            "user bodycam is not in the gpio group",
            "sudo usermod -aG gpio bodycam; sudo systemctl restart bodycam",
        )
    proc = sys_.run([str(sys_.path(VENV_PYTHON)), "-c", PIN_FACTORY])
    if proc.returncode != 0:
        text = proc.stderr or proc.stdout or ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        # gpiozero warns why each default factory failed; lgpio's reason is the one that matters on a Pi.
        lgpio = next((ln.split("Falling back from lgpio: ", 1)[1] for ln in lines if "Falling back from lgpio: " in ln),
                     None)
        return Check(
            "pins",
            FAIL,
            "gpiozero loads no pin factory in the firmware's Python: "
            + (lines[-1] if lines else f"exit status {proc.returncode}")
            + (f" (lgpio: {lgpio})" if lgpio else ""),
            NO_PIN_LIBRARY_FIX,
        )
    factory = proc.stdout.strip() or "a pin factory"
    fault = str((ctx.status or {}).get("fault") or "")
    if "pins" in fault:
        return Check("pins", FAIL, f"{factory} loads, but the daemon: {fault}",
                     "check the pin numbers and that no other program holds them; then "
                     "'sudo systemctl restart bodycam'")
    if ctx.status is not None:
        return Check("pins", OK, f"{factory}; claimed by the daemon: {pins}")
    return Check("pins", OK, f"{factory} loads; GPIO present: {pins}")


def check_key(sys_: System, ctx: Context) -> Check:
    assert ctx.cfg is not None
    key = ctx.cfg.key_path
    path = sys_.path(key)
    make = f"sudo -u bodycam {VENV_BODYCAM} provision --config {CONFIG}"
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check("key", FAIL, f"no device key at {key}", f"first boot makes it; or run: {make}")
    except PermissionError:
        return Check("key", WARN, f"cannot look at {key}: permission denied", "run doctor with sudo")
    problems = []
    if st.st_mode & 0o077:
        problems.append(f"mode {st.st_mode & 0o777:04o}, others can read it (chmod 600 {key})")
    uid = _uid(sys_, "bodycam")
    if uid is not None and st.st_uid != uid:
        problems.append(f"owned by uid {st.st_uid}, not bodycam (chown bodycam:bodycam {key})")
    try:
        k = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except PermissionError:
        return Check("key", WARN, f"{key} exists; cannot read it as this user", "run doctor with sudo")
    except ValueError:
        return Check(
            "key",
            FAIL,
            f"{key} is not a PEM private key (damaged)",
            "the camera needs a new identity: re-provision and re-enrol with a new token",
        )
    if not isinstance(k, ec.EllipticCurvePrivateKey) or not isinstance(k.curve, ec.SECP256R1):
        return Check("key", FAIL, f"{key} is not an ECDSA P-256 key", "re-provision the camera")
    ctx.key_public_der = k.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if problems:
        return Check("key", FAIL, f"{key}: " + "; ".join(problems), "fix the permissions as shown")
    from .evidence.signer import key_id_of

    return Check("key", OK, f"ECDSA P-256, key id {key_id_of(k.public_key())[:16]}…, mode 0600")


def check_certificate(sys_: System, ctx: Context) -> Check:
    assert ctx.cfg is not None
    from .provision import cert_path

    cert_file = cert_path(ctx.cfg.key_path)
    path = sys_.path(cert_file)
    if not path.exists():
        return Check(
            "certificate", WARN, f"none yet ({cert_file}): the camera is not enrolled", "see enrolment"
        )
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (ValueError, PermissionError) as e:
        return Check("certificate", FAIL, f"{cert_file} unreadable ({e})", "re-enrol with a new token")
    now = datetime.fromtimestamp(sys_.now(), UTC)
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ctx.key_public_der is not None and der != ctx.key_public_der:
        return Check(
            "certificate",
            FAIL,
            "the certificate is for a different key than the device key",
            "re-enrol with a new token ('bodycam backend enrol-token SERIAL' on the backend)",
        )
    if cert.not_valid_after_utc < now:
        return Check(
            "certificate",
            FAIL,
            f"expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            "re-enrol with a new token",
        )
    ca_path = sys_.path(CA)
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        cert.verify_directly_issued_by(ca)
    except FileNotFoundError:
        return Check(
            "certificate",
            WARN,
            f"no agency CA at {CA} to check the issuer against",
            "rebuild the image with --ca",
        )
    except Exception as e:  # InvalidSignature, an issuer name that does not match, a non-EC CA key
        return Check(
            "certificate",
            FAIL,
            f"not issued by the agency CA in {CA} ({type(e).__name__})",
            "re-enrol against the right backend, or rebuild the image with the right --ca",
        )
    ctx.cert_ok = True
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return Check(
        "certificate",
        OK,
        f"CN={cn[0].value if cn else '?'}, valid until {cert.not_valid_after_utc:%Y-%m-%d}, "
        f"issued by the agency CA",
    )


def _has_enrol() -> bool:
    from .cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if "enrol" in getattr(action, "choices", {}):
            return True
    return False


def check_enrolment(sys_: System, ctx: Context, has_enrol: Callable[[], bool] = _has_enrol) -> Check:
    if ctx.cert_ok:
        return Check("enrolment", OK, "enrolled")
    if not has_enrol():
        return Check(
            "enrolment",
            WARN,
            "not enrolled, and this firmware has no 'bodycam enrol' command",
            "update the firmware; the enrolment timer will then enrol at the next docking",
        )
    show = _systemctl_show(sys_, "bodycam-enrol.service", "ActiveState,Result,ExecMainStatus") or {}
    last = f"last attempt: {show.get('Result', 'none')}" if show else "no attempt recorded"
    return Check(
        "enrolment",
        WARN,
        f"not enrolled yet ({last})",
        "dock the camera: bodycam-enrol.timer retries every 2 minutes; 'journalctl -u bodycam-enrol' "
        "says why the last attempt failed (a used or expired token needs a new one)",
    )


def check_clock(sys_: System, ctx: Context) -> Check:
    now = sys_.now()
    shown = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if now * 1e9 < CLOCK_PLAUSIBLE_AFTER_NS:
        return Check("clock", FAIL, f"not set (reads {shown})", "dock the camera so it can set its clock")
    if sys_.path(TIMESYNC_FLAG).exists():
        return Check("clock", OK, f"{shown}, synchronised")
    return Check(
        "clock", WARN, f"{shown}, not synchronised since boot", "dock the camera (time is set in the dock)"
    )


def _mount_of(sys_: System, mount_point: str) -> tuple[str, str, str] | None:
    """(major:minor, fs type, options) for a mount point, from mountinfo."""
    try:
        text = sys_.path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        f = line.split()
        if len(f) > 6 and f[4] == mount_point:
            rest = f[f.index("-") + 1 :]
            found = (f[2], rest[0] if rest else "?", f[5])
    return found


def check_storage(sys_: System, ctx: Context) -> Check:
    assert ctx.cfg is not None
    data = str(ctx.cfg.data_dir)
    mount = _mount_of(sys_, data)
    if mount is None:
        return Check(
            "storage",
            FAIL,
            f"the evidence partition is not mounted on {data}",
            "'systemctl status var-lib-bodycam.mount'; if partition 3 is gone, reflash the card",
        )
    _, fstype, options = mount
    notes = []
    if fstype != "ext4":
        notes.append(f"file system is {fstype}, expected ext4")
    if "noatime" not in options.split(","):
        notes.append("mounted without noatime")
    try:
        part = firstboot.find_data_partition(firstboot.Host(root=sys_.root))
        if part.last and part.disk_size - (part.start + part.size) > firstboot.GROW_SLACK_SECTORS:
            notes.append(f"{part.device} does not fill the card yet (first boot's datapart step)")
    except (firstboot.StepError, OSError, ValueError):
        pass
    uid = _uid(sys_, "bodycam")
    path = sys_.path(data)
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    reserve = int(ctx.cfg.storage.reserve_megabytes * 1e6)
    detail = f"{data}: {free / 1e9:.1f} GB free of {total / 1e9:.1f} GB ({fstype}, {options})"
    if uid is not None and path.stat().st_uid != uid:
        return Check("storage", FAIL, f"{data} is not owned by bodycam", f"sudo chown bodycam:bodycam {data}")
    if free < reserve:
        return Check(
            "storage",
            FAIL,
            f"full: {detail}; the camera refuses to record below the {reserve / 1e6:.0f} MB reserve",
            "dock the camera so footage uploads",
        )
    if notes:
        return Check("storage", WARN, f"{detail}; " + "; ".join(notes), "see docs/technician.md, 'Storage'")
    return Check("storage", OK, detail)


def backend_url(cfg: configmod.Config | None) -> str | None:
    """The backend URL from whichever config table the uploader defines (offload, backend, ...)."""
    if cfg is None:
        return None
    for table in ("offload", "backend", "upload", "enrol", "dock"):
        section = getattr(cfg, table, None)
        for key in ("url", "backend_url", "base_url", "server"):
            value = getattr(section, key, None) if section is not None else None
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                return value.rstrip("/")
    return None


def check_backend(sys_: System, ctx: Context, url: str | None) -> Check:
    url = url or backend_url(ctx.cfg)
    if not url:
        return Check(
            "backend", WARN, "no backend URL in the config", "add the backend's URL to the device config"
        )
    # TLS is checked against [offload] ca_file if the config names one, else the image's agency CA.
    ca = sys_.path(getattr(getattr(ctx.cfg, "offload", None), "ca_file", "") or CA)
    try:
        status, body = sys_.http_get(f"{url}/healthz", ca, 5.0)
    except (OSError, ssl.SSLError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return Check(
            "backend",
            WARN,
            f"{url} not reachable ({reason})",
            "normal outside the dock; in the dock check its network cable, DHCP and DNS",
        )
    if status != 200:
        return Check("backend", FAIL, f"{url}/healthz answered HTTP {status}", "check the backend")
    version = ""
    try:
        version = json.loads(body).get("version", "")
    except ValueError:
        pass
    try:
        t0 = sys_.now()
        _, tbody = sys_.http_get(f"{url}/v1/time", ca, 5.0)
        t1 = sys_.now()
        server = json.loads(tbody)["utc_ns"] / 1e9
        skew = (t0 + t1) / 2 - server
        if abs(skew) > MAX_SKEW_SECONDS:
            return Check(
                "backend",
                WARN,
                f"{url} reachable (backend {version}), but the clock is {skew:+.1f} s off",
                "let the camera sync its clock in the dock",
            )
    except (OSError, ValueError, KeyError):
        pass
    return Check("backend", OK, f"{url} reachable" + (f" (backend {version})" if version else ""))


@dataclass
class Report:
    checks: list[Check]
    serial: str | None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (check, why): none is left out silently

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def render(self) -> str:
        text = render(self.checks, self.serial)
        reasons: dict[str, list[str]] = {}   # one line per reason: no config skips eleven checks
        for name, why in self.skipped:
            reasons.setdefault(why, []).append(name)
        skipped = []
        for why, names in reasons.items():
            if len(names) == 1:
                skipped.append(f"  {'skip':<5} {names[0]:<12} {why}")
            else:
                skipped.append(f"  {'skip':<5} {len(names)} checks   {why}:")
                skipped += textwrap.wrap(", ".join(names), 100, initial_indent=" " * 21, subsequent_indent=" " * 21)
        head, _, tail = text.rpartition("\n")
        return "\n".join([head, *skipped, tail])

    def to_json(self) -> str:
        doc = json.loads(to_json(self.checks))
        doc["skipped"] = [{"name": name, "why": why} for name, why in self.skipped]
        return json.dumps(doc, indent=2)


def run_checks(
    sys_: System,
    *,
    config_path: str = CONFIG,
    url: str | None = None,
    has_enrol: Callable[[], bool] = _has_enrol,
) -> Report:
    ctx = Context()
    checks = [check_config(sys_, ctx, config_path), check_firstboot(sys_, ctx), check_service(sys_, ctx)]
    later = ("daemon", "camera", "camera stack", "encoder", "pins", "key", "certificate", "enrolment", "clock",
             "storage", "backend")
    if ctx.cfg is None:
        return Report(checks, None, [(name, "needs the device config (fix 'config' first)") for name in later])
    skipped = []
    for fn in (check_daemon, check_camera, check_camera_stack, check_encoder, check_pins, check_key,
               check_certificate):
        if (check := fn(sys_, ctx)) is not None:
            checks.append(check)
        elif fn is check_camera_stack:
            skipped.append(("camera stack", f"[camera] source = {ctx.cfg.camera.source!r}, not the Pi camera"))
    checks.append(check_enrolment(sys_, ctx, has_enrol))
    checks.append(check_clock(sys_, ctx))
    checks.append(check_storage(sys_, ctx))
    checks.append(check_backend(sys_, ctx, url))
    skipped.append(("camera test", "records for real: 'bodycam doctor --camera-test' (stop the service first)"))
    return Report(checks, ctx.cfg.device.serial, skipped)


def render(checks: list[Check], serial: str | None) -> str:
    lines = [f"bodycam doctor: {serial or 'unknown device'}, firmware {__version__}"]
    for c in checks:
        lines.append(f"  {c.status:<5} {c.name:<12} {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"  {'':<5} {'':<12} -> {c.fix}")
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    lines.append(
        "all good"
        if not fails and not warns
        else f"{fails} problem{'s' * (fails != 1)}, {warns} warning{'s' * (warns != 1)}"
    )
    return "\n".join(lines)


def to_json(checks: list[Check]) -> str:
    return json.dumps(
        {
            "firmware_version": __version__,
            "ok": not any(c.status == FAIL for c in checks),
            "checks": [asdict(c) for c in checks],
        },
        indent=2,
    )
