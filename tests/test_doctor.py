"""`bodycam doctor` on a fake camera: a healthy one passes every check, and each fault a technician
meets gives FAIL or warn with a line saying what to do."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bodycam import cli, doctor, logs, provision
from bodycam import config as configmod
from bodycam.doctor import FAIL, OK, WARN, System
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
URL = "https://evidence.example"


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    public_key: Any,
    serial: str,
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
) -> bytes:
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, serial)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[1].subject)
        .public_key(public_key)
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .sign(ca[0], hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class FakeCamera:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.now = NOW.timestamp()
        self.services = {
            "bodycam.service": "ActiveState=active\nSubState=running\nNRestarts=0\nResult=success\n"
            "ExecMainStatus=0\n",
            "bodycam-enrol.service": "ActiveState=inactive\nResult=exit-code\nExecMainStatus=1\n",
        }
        self.cameras = (
            "Available cameras\n-----------------\n0 : imx708_wide [4608x2592 10-bit RGGB] (/base/soc)\n"
        )
        self.backend: dict[str, Any] = {"/healthz": {"ok": True, "version": "0.1.0"}, "/v1/time": "now"}
        self.status: dict[str, Any] | None = {
            "state": "buffering",
            "frames_captured": 300,
            "dropped": 0,
            "pending_uploads": 2,
            "fault": None,
        }
        self.enrol_command = True
        self.pin_factory = subprocess.CompletedProcess([], 0, "LGPIOFactory", "")
        self.journal = ""  # journalctl -u bodycam -b -o cat
        self.camera_stack = subprocess.CompletedProcess([], 0, "", "")
        self.pyav_h264 = "h264 h264_v4l2m2m libx264"  # PyPI's aarch64 PyAV wheel
        w = self.write
        w("sys/class/video4linux/video11/name", "bcm2835-codec-encode\n")  # a Pi 4's H.264 block
        uid = os.getuid()
        w(
            "etc/bodycam/device.toml",
            '[device]\nserial = "BC-0417"\ndata_dir = "/var/lib/bodycam"\n'
            '[camera]\nsource = "picamera2"\n[storage]\nreserve_megabytes = 1\n',
        )
        w(
            "etc/passwd",
            f"root:x:0:0::/root:/bin/bash\nbodycam:x:{uid}:{uid}::/var/lib/bodycam:/usr/sbin/nologin\n",
        )
        w("etc/group", f"video:x:44:bodycam\ngpio:x:997:bodycam\nbodycam:x:{uid}:\n")
        for dev in (
            "dev/video0",
            "dev/media0",
            "dev/gpiochip0",
            "run/systemd/timesync/synchronized",
            "var/lib/bodycam-firstboot/done",
        ):
            w(dev, "")
        w(
            "proc/self/mountinfo",
            "22 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw\n"
            "30 22 179:3 / /var/lib/bodycam rw,nosuid,nodev,noexec,noatime - ext4 /dev/mmcblk0p3 rw\n",
        )
        disk = root / "sys/block/mmcblk0"
        w("sys/block/mmcblk0/size", "62333952\n")
        for n, (start, size) in enumerate(
            [(8192, 131072), (139264, 1736704), (1875968, 62333952 - 1875968)], 1
        ):
            w(f"sys/block/mmcblk0/mmcblk0p{n}/partition", f"{n}\n")
            w(f"sys/block/mmcblk0/mmcblk0p{n}/start", f"{start}\n")
            w(f"sys/block/mmcblk0/mmcblk0p{n}/size", f"{size}\n")
            link = root / f"sys/dev/block/179:{n}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(disk / f"mmcblk0p{n}")
        self.ca = _ca("Agency CA")
        w("etc/bodycam/ca.pem", self.ca[1].public_bytes(serialization.Encoding.PEM).decode())
        local = configmod.from_dict(
            {"device": {"serial": "BC-0417", "data_dir": str(root / "var/lib/bodycam")}}
        )
        self.provisioned = provision.ensure(local)
        pub = serialization.load_pem_public_key(self.provisioned.public_key.read_bytes())
        self.cert_path = provision.cert_path(self.provisioned.key)
        self.cert_path.write_bytes(_issue(self.ca, pub, "BC-0417"))

    def write(self, rel: str, text: str) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def run(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if cmd[0] == "systemctl":
            out = self.services.get(cmd[2])
            return subprocess.CompletedProcess(list(cmd), 0 if out else 1, out or "", "")
        if cmd[0] == str(self.root / "opt/bodycam/venv/bin/python"):
            if cmd[2] == doctor._LIST_H264:
                return subprocess.CompletedProcess(list(cmd), 0, self.pyav_h264, "")
            if cmd[2] == doctor.PIN_FACTORY:
                return self.pin_factory
            assert cmd[1:] == ["-c", "import picamera2, libcamera"]
            return self.camera_stack
        if cmd[0] == "journalctl":
            assert cmd[1:5] == ["-u", "bodycam", "-b", "-n"] and cmd[6:8] == ["-o", "cat"], cmd
            return subprocess.CompletedProcess(list(cmd), 0, self.journal, "")
        if cmd[0] == "rpicam-hello":
            return subprocess.CompletedProcess(list(cmd), 0, self.cameras, "")
        return subprocess.CompletedProcess(list(cmd), 127, "", "not found")

    def http_get(self, url: str, ca: Path | None, timeout: float) -> tuple[int, bytes]:
        assert ca == self.root / "etc/bodycam/ca.pem"
        path = url.removeprefix(URL)
        if self.backend is None or path not in self.backend:
            raise OSError("[Errno 101] Network is unreachable")
        body = self.backend[path]
        if body == "now":
            body = {"utc_ns": int(NOW.timestamp() * 1e9)}
        return 200, json.dumps(body).encode()

    def daemon_status(self, sock: Path) -> dict[str, Any]:
        from bodycam.daemon.control import ControlError

        assert sock == self.root / "var/lib/bodycam/run/control.sock"
        if self.status is None:
            raise ControlError(f"no daemon at {sock}: start it with 'bodycam run --config FILE'")
        return self.status

    def system(self) -> System:
        return System(
            root=self.root,
            run=self.run,
            now=lambda: self.now,
            http_get=self.http_get,
            env={},
            daemon_status=self.daemon_status,
        )

    def report(self) -> doctor.Report:
        return doctor.run_checks(self.system(), url=URL, has_enrol=lambda: self.enrol_command)

    def check(self, name: str) -> doctor.Check:
        return next(c for c in self.report().checks if c.name == name)


@pytest.fixture
def cam(tmp_path: Path) -> FakeCamera:
    return FakeCamera(tmp_path)


def test_a_healthy_camera(cam: FakeCamera) -> None:
    report = cam.report()
    assert [(c.name, c.status) for c in report.checks if c.status != OK] == []
    assert [c.name for c in report.checks] == [
        "config",
        "first boot",
        "service",
        "daemon",
        "camera",
        "camera stack",
        "encoder",
        "pins",
        "key",
        "certificate",
        "enrolment",
        "clock",
        "storage",
        "backend",
    ]
    text = report.render()
    assert text.startswith("bodycam doctor: BC-0417") and text.endswith("all good")
    assert "delivering frames to the daemon (300 so far)" in text and "reachable (backend 0.1.0)" in text
    assert json.loads(report.to_json())["ok"] is True
    cam.status = None  # daemon not answering: the camera is listed through libcamera instead
    assert cam.check("camera").detail == "libcamera sees imx708_wide"


def test_missing_config_stops_early(cam: FakeCamera) -> None:
    (cam.root / "etc/bodycam/device.toml").unlink()
    report = cam.report()
    assert report.checks[0].status == FAIL and "config file not found" in report.checks[0].detail
    assert len(report.checks) == 3 and not report.ok


def test_first_boot_unfinished(cam: FakeCamera) -> None:
    (cam.root / "var/lib/bodycam-firstboot/done").unlink()
    c = cam.check("first boot")
    assert c.status == FAIL and "users, serial, datapart" in c.detail and "journalctl" in c.fix


def test_service_down_and_crash_looping(cam: FakeCamera) -> None:
    cam.services["bodycam.service"] = "ActiveState=failed\nSubState=failed\nNRestarts=0\nResult=exit-code\n"
    cam.status = None
    c = cam.check("service")
    assert c.status == FAIL and "journalctl -b -u bodycam" in c.fix
    cam.services["bodycam.service"] = "ActiveState=active\nSubState=running\nNRestarts=7\n"
    assert cam.check("service").status == WARN and "restarted 7 times" in cam.check("service").detail


def test_daemon_fault(cam: FakeCamera) -> None:
    assert cam.status is not None
    cam.status["fault"] = "storage full"
    assert cam.check("daemon").status == FAIL and "storage full" in cam.check("daemon").detail


def test_camera_missing(cam: FakeCamera) -> None:
    (cam.root / "dev/media0").unlink()
    c = cam.check("camera")
    assert c.status == FAIL and "reseat the ribbon cable" in c.fix
    cam.write("dev/media0", "")
    cam.status = None
    cam.cameras = "No cameras available!\n"
    assert cam.check("camera").status == FAIL


def test_camera_stack(cam: FakeCamera) -> None:
    assert cam.check("camera stack").status == OK
    cam.camera_stack = subprocess.CompletedProcess(
        [], 1, "", "Traceback (most recent call last):\nModuleNotFoundError: No module named 'picamera2'\n"
    )
    c = cam.check("camera stack")
    assert c.status == FAIL and c.detail.endswith("No module named 'picamera2'")
    assert c.fix == "first boot did not install the camera stack: see 'journalctl -u bodycam-firstboot'"
    cam.write("etc/bodycam/device.toml", '[device]\nserial = "BC-0417"\n[camera]\nsource = "synthetic"\n')
    assert "camera stack" not in [c.name for c in cam.report().checks], "only for the Pi camera"


def test_encoder(cam: FakeCamera) -> None:
    c = cam.check("encoder")
    assert c.status == OK and c.detail == "h264_v4l2m2m (hardware: bcm2835-codec at /dev/video11)"
    cam.pyav_h264 = "h264 libx264"  # a PyAV build without V4L2 M2M
    c = cam.check("encoder")
    assert c.status == WARN and "/dev/video11) is unused because this PyAV build has no h264_v4l2m2m" in c.detail
    (cam.root / "sys/class/video4linux/video11/name").unlink()  # a Pi 5: no H.264 block
    c = cam.check("encoder")
    assert c.status == OK and c.detail.startswith("libx264 (software: no bcm2835-codec")
    cam.write("etc/bodycam/device.toml", '[device]\nserial = "BC-0417"\n[camera]\nsource = "picamera2"\n'
              '[encoder]\ncodec = "h264_v4l2m2m"\n')
    c = cam.check("encoder")
    assert c.status == FAIL and "no H.264 hardware encoder" in c.detail and c.fix == 'set [encoder] codec = "auto"'


def test_encoder_with_the_real_pyav_listing(cam: FakeCamera) -> None:
    """Found by scripts/boot-test: the listing once kept only names with "h264", which drops libx264,
    so every software-encoding camera (any Pi 5) got "FAIL encoder: this PyAV build has no libx264"."""
    import sys

    proc = subprocess.run([sys.executable, "-c", doctor._LIST_H264], capture_output=True, text=True)
    assert proc.returncode == 0 and "libx264" in proc.stdout.split(), proc.stdout
    cam.pyav_h264 = proc.stdout
    (cam.root / "sys/class/video4linux/video11/name").unlink()  # a Pi 5: no H.264 block
    c = cam.check("encoder")
    assert c.status == OK and c.detail.startswith("libx264 (software"), c


def test_pins(cam: FakeCamera) -> None:
    cam.write("etc/group", f"video:x:44:bodycam\ngpio:x:997:pi\nbodycam:x:{os.getuid()}:\n")
    c = cam.check("pins")
    assert c.status == FAIL and "usermod -aG gpio bodycam" in c.fix
    (cam.root / "dev/gpiochip0").unlink()
    assert cam.check("pins").status == FAIL


def test_key_problems(cam: FakeCamera) -> None:
    os.chmod(cam.provisioned.key, 0o644)
    c = cam.check("key")
    assert c.status == FAIL and "chmod 600" in c.detail
    cam.provisioned.key.unlink()
    c = cam.check("key")
    assert c.status == FAIL and "bodycam provision" in c.fix


def test_certificate_problems(cam: FakeCamera) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    cam.cert_path.write_bytes(_issue(cam.ca, other, "BC-0417"))
    assert "different key" in cam.check("certificate").detail
    pub = serialization.load_pem_public_key(cam.provisioned.public_key.read_bytes())
    cam.cert_path.write_bytes(_issue(cam.ca, pub, "BC-0417", not_after=NOW - dt.timedelta(days=1)))
    assert "expired" in cam.check("certificate").detail
    cam.cert_path.write_bytes(_issue(_ca("Someone else"), pub, "BC-0417"))
    c = cam.check("certificate")
    assert c.status == FAIL and "not issued by the agency CA" in c.detail
    cam.cert_path.unlink()
    assert cam.check("certificate").status == WARN
    enrol = cam.check("enrolment")
    assert enrol.status == WARN and "dock the camera" in enrol.fix and "exit-code" in enrol.detail
    cam.enrol_command = False
    assert "no 'bodycam enrol' command" in cam.check("enrolment").detail


def test_clock(cam: FakeCamera) -> None:
    cam.now = dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC).timestamp()
    c = cam.check("clock")
    assert c.status == FAIL and "dock" in c.fix
    cam.now = NOW.timestamp()
    (cam.root / "run/systemd/timesync/synchronized").unlink()
    assert cam.check("clock").status == WARN


def test_storage(cam: FakeCamera) -> None:
    cam.write("proc/self/mountinfo", "22 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw\n")
    c = cam.check("storage")
    assert c.status == FAIL and "not mounted" in c.detail
    cam.write("proc/self/mountinfo", "30 22 179:3 / /var/lib/bodycam rw,relatime - ext4 /dev/mmcblk0p3 rw\n")
    cam.write("sys/block/mmcblk0/mmcblk0p3/size", "131072\n")
    c = cam.check("storage")
    assert c.status == WARN and "without noatime" in c.detail and "does not fill the card" in c.detail
    cam.write(
        "etc/bodycam/device.toml",
        '[device]\nserial = "BC-0417"\n[camera]\nsource = "picamera2"\n'
        "[storage]\nreserve_megabytes = 900000\n",
    )
    c = cam.check("storage")
    assert c.status == FAIL and "full" in c.detail


def test_backend(cam: FakeCamera) -> None:
    cam.backend = None  # type: ignore[assignment]
    c = cam.check("backend")
    assert c.status == WARN and "not reachable" in c.detail and "dock" in c.fix
    cam.backend = {
        "/healthz": {"ok": True, "version": "0.1.0"},
        "/v1/time": {"utc_ns": int((NOW.timestamp() - 30) * 1e9)},
    }
    c = cam.check("backend")
    assert c.status == WARN and "+30.0 s off" in c.detail


def test_render_says_what_to_do(cam: FakeCamera) -> None:
    cam.provisioned.key.unlink()
    text = cam.report().render()
    line = next(ln for ln in text.splitlines() if "FAIL" in ln and "key" in ln)
    fix = text.splitlines()[text.splitlines().index(line) + 1]
    assert fix.strip().startswith("-> ") and "provision" in fix
    assert text.splitlines()[-1].startswith("1 problem,")


def test_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--config", str(tmp_path / "missing.toml"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["checks"][0]["status"] == FAIL


# What the journal held on the emulated camera of issue 12: gpiozero found no pin factory, the daemon
# exited, systemd restarted it every ~8 s (the daemon now stays up in its fault state instead).
LOOP_JOURNAL = """\
{"ts": "2025-06-01T11:59:50Z", "level": "info", "logger": "bodycam.daemon", "event": "started", "msg": "started"}
Traceback (most recent call last):
  File "/opt/bodycam/venv/lib/python3.11/site-packages/gpiozero/devices.py", line 302, in _default_pin_factory
gpiozero.exc.BadPinFactory: Unable to load any default pin factory!
bodycam.service: Main process exited, code=exited, status=2/INVALIDARGUMENT
bodycam.service: Failed with result 'exit-code'.
Failed to start bodycam.service - bodycam body-worn camera daemon.
bodycam.service: Scheduled restart job, restart counter is at 41.
Starting bodycam.service - bodycam body-worn camera daemon...
"""


def test_a_restart_loop_is_a_failure_with_its_cause(cam: FakeCamera) -> None:
    """Issue 12: doctor said the service was "activating (start), result success" and pins ok."""
    cam.services["bodycam.service"] = (
        "ActiveState=activating\nSubState=start\nNRestarts=41\nResult=success\nExecMainStatus=0\n"
    )
    cam.status = None
    cam.journal = LOOP_JOURNAL
    c = cam.check("service")
    assert c.status == FAIL
    assert c.detail == (
        "bodycam.service restarting in a loop: activating (start), 41 restarts since boot; "
        "last start failed: gpiozero.exc.BadPinFactory: Unable to load any default pin factory!"
    )
    assert "journalctl -b -u bodycam" in c.fix
    # The daemon's own one-line error wins over older traceback lines; systemd's lines are skipped.
    cam.journal = LOOP_JOURNAL + "bodycam: no device key at /var/lib/bodycam/device/key.pem\nStarted x\n"
    assert cam.check("service").detail.endswith("last start failed: no device key at "
                                                "/var/lib/bodycam/device/key.pem")
    cam.services["bodycam.service"] = "ActiveState=active\nSubState=running\nNRestarts=3\n"
    c = cam.check("service")
    assert c.status == WARN and "restarted 3 times since boot; last failure: no device key" in c.detail
    cam.services["bodycam.service"] = "ActiveState=activating\nSubState=auto-restart\nNRestarts=0\n"
    cam.journal = ""
    assert cam.check("service").status == FAIL and "in a loop" in cam.check("service").detail


def test_failure_reason_reads_the_daemons_json_errors() -> None:
    line = json.dumps({"level": "error", "event": "pins_fault", "msg": "cannot open the button pins (x)"})
    assert logs.last_error(["Started bodycam.service", line, "bodycam.service: Consumed 2s CPU"]) == \
        "cannot open the button pins (x)"
    assert logs.last_error(["Started bodycam.service"]) is None


def test_no_pin_factory_fails_pins(cam: FakeCamera) -> None:
    cam.pin_factory = subprocess.CompletedProcess(
        [], 1, "", "Traceback ...\ngpiozero.exc.BadPinFactory: Unable to load any default pin factory!\n"
    )
    c = cam.check("pins")
    assert c.status == FAIL
    assert c.detail == ("gpiozero loads no pin factory in the firmware's Python: "
                        "gpiozero.exc.BadPinFactory: Unable to load any default pin factory!")
    assert "lgpio" in c.fix and "scripts/build-image" in c.fix


def test_pins_fault_in_the_daemon_fails_pins(cam: FakeCamera) -> None:
    assert cam.status is not None
    cam.status["fault"] = "cannot open the button pins (pin GPIO17 is already in use)"
    c = cam.check("pins")
    assert c.status == FAIL and "LGPIOFactory loads, but the daemon: cannot open the button pins" in c.detail
    assert cam.check("daemon").status == FAIL


def test_the_pin_factory_probe_is_real_python() -> None:
    """The snippet doctor runs in the venv: it names the factory, or fails as the daemon would."""
    import sys

    def probe(factory: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": factory}
        return subprocess.run([sys.executable, "-c", doctor.PIN_FACTORY], capture_output=True, text=True, env=env)

    ok = probe("mock")
    assert ok.returncode == 0 and ok.stdout == "MockFactory", ok.stderr
    bad = probe("lgpio")  # not installed on this (x86) machine, as on the image of issue 12
    assert bad.returncode != 0 and "lgpio" in bad.stderr.splitlines()[-1], bad.stderr



def test_no_pin_factory_says_why_lgpio_failed(cam: FakeCamera) -> None:
    """The real probe with no factory named (as on the camera): gpiozero tries lgpio first."""
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    cam.pin_factory = subprocess.run([sys.executable, "-c", doctor.PIN_FACTORY], capture_output=True, text=True,
                                     env=env)
    assert cam.pin_factory.returncode != 0, "this machine has no GPIO: no pin factory may load"
    c = cam.check("pins")
    assert c.status == FAIL and c.detail.startswith("gpiozero loads no pin factory in the firmware's Python: ")
    assert "(lgpio: No module named 'lgpio')" in c.detail, c.detail
