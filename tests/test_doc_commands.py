"""Every shell command in README.md and docs/*.md (```sh blocks) works as written.

Each command is listed below, by its exact text, as one of:

* RUN: run here with bash, in a sandbox made for it (a recorded data directory, an export with a
  certificate, an initialised backend); placeholders become real files (SUBST);
* HELP: needs what this machine does not have (a Pi's camera, root, a block device, a real backend,
  a recording uploaded to one, a terminal, minutes): its ``--help`` is run instead, and every option
  the doc uses must be in it;
* NOT_HERE: only meaningful on the Pi (apt, rpicam-hello, a venv there) or on a fleet's production
  hosts (root, systemd, PostgreSQL, HAProxy: docs/deploy.md).

A command added to the docs and to none of these lists fails ``test_every_documented_command_is_listed``,
so it is noticed, and decided on, rather than left unchecked.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "GPIOZERO_PIN_FACTORY": "mock",
       "PYTHONPATH": str(ROOT / "firmware")}


def documented_commands() -> dict[str, str]:
    """command -> the doc it is in. Comments are dropped, ``\\`` and ``|`` continue a line, and a
    ``for ... done`` loop is one command."""
    out: dict[str, str] = {}
    for doc in DOCS:
        for block in re.findall(r"^```sh\n(.*?)^```", doc.read_text(), re.S | re.M):
            pending = ""
            for raw in block.splitlines():
                line = _uncomment(raw).strip()
                if not line:
                    continue
                loop = pending.startswith(("for ", "while "))
                pending = (f"{pending}\n{line}" if loop else f"{pending} {line}") if pending else line
                if pending.endswith("\\"):
                    pending = pending.removesuffix("\\").rstrip()
                    continue
                if pending.endswith("|") or (pending.startswith(("for ", "while "))
                                             and not re.search(r"\bdone\b", pending)):
                    continue
                out["\n".join(re.sub(r"\s+", " ", ln) for ln in pending.splitlines())] = doc.name
                pending = ""
    return out


def _uncomment(line: str) -> str:
    """The line without a trailing `# comment` (a # inside quotes or ${...} is not one)."""
    for m in re.finditer(r"\s#\s", line):
        before = line[:m.start()]
        if before.count("'") % 2 == 0 and before.count('"') % 2 == 0 and before.count("${") == before.count("}"):
            return before
    return line


# --- what each command needs ---------------------------------------------------------------------

# Run here. The value is the sandbox folder to run in ("repo" = a copy-free run in the repository).
RUN: dict[str, str] = {
    "source .venv/bin/activate": "repo",
    "bodycam keygen --config /etc/bodycam/device.toml": "fresh",
    "bodycam backend enrol-token BC-0417": "sandbox",
    "bodycam backend user list": "sandbox",
    "bodycam backend category list": "sandbox",
    "bodycam backend retention run --dry-run": "sandbox",
    "bodycam backend db current": "sandbox",
    "bodycam backend db upgrade": "sandbox",
    "bodycam verify /var/lib/bodycam": "sandbox",
    "bodycam verify export-dir/ --key device.cert.pem": "sandbox",
    "bodycam verify seg-0000000042.json --decode": "segments",
    "sha256sum seg-0000000042.mp4": "stock",
    "openssl dgst -sha256 -verify device.pub.pem -signature seg-0000000042.sig seg-0000000042.json": "stock",
    "bodycam sim --scenario config/scenarios/smoke.toml --data /tmp/smoke": "repo",
    # docs/format.md: the stock-tool check, in an export-like folder
    "openssl verify -CAfile agency-ca.pem device.cert.pem": "stock",
    "openssl x509 -in device.cert.pem -pubkey -noout > device.pub.pem": "stock",
    "openssl pkey -pubin -in device.pub.pem -outform DER | sha256sum": "stock",
    "jq -r .key_id seg-0000000002.json": "stock",
    "openssl dgst -sha256 -verify device.pub.pem -signature seg-0000000002.sig seg-0000000002.json": "stock",
    "sha256sum seg-0000000002.mp4": "stock",
    "jq -r .media.sha256 seg-0000000002.json": "stock",
    "stat -c %s seg-0000000002.mp4; jq .media.size seg-0000000002.json": "stock",
    "sha256sum seg-0000000001.json": "stock",
    "jq -r .previous_manifest_sha256 seg-0000000002.json": "stock",
    "prev=0000000000000000000000000000000000000000000000000000000000000000; n=1": "stock",
    "sed -n 3p audit.log | jq -j .entry > entry.txt": "stock",
    "sed -n 3p audit.log | jq -r .sig | base64 -d > entry.sig": "stock",
    "openssl dgst -sha256 -verify device.pub.pem -signature entry.sig entry.txt": "stock",
    "sed -n 2p audit.log | jq -j .entry | sha256sum": "stock",
    "jq -r .prev entry.txt": "stock",
}
# Placeholders in the docs -> what they are in the sandbox.
SUBST = {
    "/etc/bodycam/device.toml": "{sandbox}/fresh/device.toml",
    "/var/lib/bodycam": "{sandbox}/data",
    "export-dir/": "{sandbox}/stock/",
    "--key device.cert.pem": "--key {sandbox}/stock/device.cert.pem",
    "seg-0000000042": "seg-0000000002",
    "/tmp/smoke": "{sandbox}/smoke",
}
# What a command must print, beyond exiting 0.
EXPECT = {
    "source .venv/bin/activate": r"^{root}/\.venv/bin/bodycam$",
    "bodycam backend enrol-token BC-0417": r"bce_",
    "bodycam backend db current": r"^database \(sqlite\) at revision \d\d\d\d; up to date$",
    "bodycam backend db upgrade": r"^database \(sqlite\) at revision \d\d\d\d$",
    "bodycam verify /var/lib/bodycam": r"^verify: OK",
    "bodycam verify export-dir/ --key device.cert.pem": r"^verify: OK",
    "bodycam verify seg-0000000042.json --decode": r"(?s)^verify: OK.*taken from beside the evidence",
    "openssl dgst -sha256 -verify device.pub.pem -signature seg-0000000042.sig seg-0000000042.json": r"Verified OK",
    "openssl verify -CAfile agency-ca.pem device.cert.pem": r"device.cert.pem: OK",
    "openssl dgst -sha256 -verify device.pub.pem -signature entry.sig entry.txt": r"Verified OK",
    "bodycam sim --scenario config/scenarios/smoke.toml --data /tmp/smoke": r"PASSED|passed",
}
FOR_LOOP = "for m in seg-*.json;"  # docs/format.md's whole-chain check: one command, run after its first line

# Checked with --help only: why, and the --help command line.
HELP: dict[str, tuple[str, str]] = {
    "./scripts/sim": ("a terminal and a person at the keys (tests/test_sim_panel.py drives it)",
                      "./scripts/sim --help"),
    "./scripts/sim < /dev/null": ("the patrol scenario takes 90 s (smoke.toml, run here, is the same path)",
                                  "./scripts/sim --help"),
    "./scripts/test": ("it is the whole test suite (and its --help must not touch this run's coverage data)",
                       "./scripts/test --help"),
    "bodycam sim --panel --config config/sim.toml --data sim-data": ("a terminal", "bodycam sim --help"),
    "bodycam run --config /etc/bodycam/device.toml": ("a Pi camera (picamera2)", "bodycam run --help"),
    "scripts/build-image raspios-bookworm-arm64-lite.img.xz --config BC-0417.toml --ca agency-ca.pem "
    "--ssh-key id.pub -o BC-0417.img": ("a Raspberry Pi OS image and 100 MB of wheels (tests/test_image.py)",
                                       "scripts/build-image --help"),
    "scripts/build-image 2025-05-13-raspios-bookworm-arm64-lite.img.xz --config BC-0417.toml --ca "
    "agency-ca.pem --ssh-key ~/.ssh/id_ed25519.pub -o BC-0417.img": ("as above", "scripts/build-image --help"),
    "scripts/flash BC-0417.img /dev/sdX": ("a block device and root (tests/test_flash.py)", "scripts/flash --help"),
    "sudo scripts/flash BC-0417.img /dev/sdb": ("a block device and root", "scripts/flash --help"),
    "sudo bodycam doctor": ("a camera: root, /etc/bodycam, the service", "bodycam doctor --help"),
    "sudo -u bodycam bodycam doctor --camera-test": ("a Pi camera and the bodycam user", "bodycam doctor --help"),
    "sudo bodycam doctor | grep -E 'camera stack|encoder'": ("a camera", "bodycam doctor --help"),
    "bodycam backend serve --config config/backend.toml": ("serves until stopped (tests/test_backend_*)",
                                                            "bodycam backend serve --help"),
    "bodycam backend serve --config config/backend-s3.toml": ("an S3 store with Object Lock",
                                                               "bodycam backend serve --help"),
    "bodycam enrol --config /etc/bodycam/device.toml": ("a real backend URL and token", "bodycam enrol --help"),
    "bodycam backend export RECORDING --out bundle/": ("a recording uploaded to a backend "
                                                       "(tests/test_backend_ingest.py exports one)",
                                                       "bodycam backend export --help"),
    "sudo -u bodycam /opt/bodycam/venv/bin/bodycam enrol --config /etc/bodycam/device.toml --token bce_...": (
        "a camera's bodycam user and a real backend", "bodycam enrol --help"),
    "bodycam backend user add rita --role reviewer": ("a person at a terminal typing a password "
                                                      "(tests/test_review_http.py uses --password-stdin)",
                                                      "bodycam backend user add --help"),
    "bodycam backend user assign olly BC-0417": ("an account named olly (tests/test_review_http.py assigns one)",
                                                 "bodycam backend user assign --help"),
    "bodycam backend user password rita": ("a terminal and an account named rita",
                                           "bodycam backend user password --help"),
    "bodycam backend category add \"Evidence - crime\" --days 2555": (
        "changes the sandbox every run (tests/test_review_retention.py adds it)",
        "bodycam backend category add --help"),
    "bodycam backend retention run": ("deletes evidence (tests/test_review_retention.py runs it)",
                                      "bodycam backend retention run --help"),
    "scripts/bench review": ("about a minute of CPU; `--quick` checks it runs", "scripts/bench review --help"),
    "scripts/bench review --quick": ("a backend process and 2,000 seeded recordings (run by hand; "
                                     "tests/test_review_index.py tests the queries)", "scripts/bench review --help"),
    "scripts/bench record --pi": ("minutes of CPU; `--quick` checks it runs", "scripts/bench record --help"),
    "sudo scripts/boot-test": ("root, qemu and 24 min from a cold cache (opt-in; tests/test_image.py keeps "
                               "its checks in step)", "scripts/boot-test --help"),
    "sudo scripts/boot-test --offline": ("as above", "scripts/boot-test --help"),
}
# docs/format.md's frame listing and per-frame UTC times: run by test_stock_tools_ffprobe where
# Debian's ffmpeg is installed (scripts/_bootstrap.sh installs it as root), as one block.
FFPROBE = (
    "ffprobe -v error -select_streams v:0 -show_entries frame=key_frame,pts,pts_time -of csv=p=0 "
    "seg-0000000002.mp4 | cut -d, -f1-3 | grep .",
    "t0=$(jq .first_frame.utc_ns seg-0000000002.json)",
    "ffprobe -v error -select_streams v:0 -show_entries frame=pts -of csv=p=0 seg-0000000002.mp4 | cut -d, -f1 "
    "| grep . | python3 -c 'import sys, datetime as d; t0 = int(sys.argv[1]); [print(p.strip(), "
    "d.datetime.fromtimestamp((t0 + int(p) * 10**9 // 90000) / 1e9, d.timezone.utc).isoformat("
    "timespec=\"milliseconds\")) for p in sys.stdin]' \"$t0\"",
)
# docs/format.md's stream listing: both tracks of a segment, shown by Debian's ffprobe.
FFPROBE_STREAMS = ("ffprobe -v error -show_entries stream=index,codec_type,codec_name,sample_rate,channels,start_time "
                   "-of csv=p=0 seg-0000000002.mp4")
NOT_HERE = {
    "sudo apt install python3-picamera2 python3-venv": "apt on Raspberry Pi OS",
    "python3 -m venv --system-site-packages ~/bodycam-venv": "the Pi's own venv, beside apt's picamera2",
    "~/bodycam-venv/bin/pip install -c image/constraints.txt ./": "installs into the Pi's venv",
    "sudo install -d /etc/bodycam && sudo cp config/device.toml /etc/bodycam/": "root; the config is tested "
                                                                                 "by test_configdoc.py",
    "sudo install -d -o \"$USER\" /var/lib/bodycam": "root",
    "export PATH=~/bodycam-venv/bin:$PATH": "the Pi's venv",
    "rpicam-hello --list-cameras": "a Pi camera",
    # docs/deploy.md: the operator's steps on production hosts (root, systemd, other machines). What
    # they set up is run for real by tests/test_deploy.py (units, haproxy -c, SeaweedFS S3-only) and
    # tests/test_fleet.py (PostgreSQL, SeaweedFS, three instances, HAProxy from deploy/).
    "sudo -u postgres createuser bodycam": "a PostgreSQL server host (tests/pgkit.py makes a throwaway one)",
    "sudo -u postgres createdb -O bodycam bodycam": "a PostgreSQL server host",
    "sudo -u bodycam-backend /opt/bodycam-backend/venv/bin/bodycam backend db upgrade --config "
    "/etc/bodycam-backend/a.toml": "a backend host and its database (tests/test_backend_data.py runs it)",
    "sudo -u bodycam-backend /opt/bodycam-backend/venv/bin/bodycam backend db current --config "
    "/etc/bodycam-backend/a.toml": "a backend host and its database (tests/test_backend_data.py runs it)",
    "sudo -u bodycam-backend /opt/bodycam-backend/venv/bin/bodycam backend init --config "
    "/etc/bodycam-backend/a.toml": "a backend host (tests/fleetkit.py runs init on the first instance)",
    "sudo useradd --system --home /var/lib/seaweedfs seaweedfs": "root on the storage host",
    "sudo install -D -m 0640 -g seaweedfs deploy/seaweedfs/s3.json /etc/seaweedfs/s3.json": "root; "
    "tests/seaweedkit.py runs SeaweedFS with this file",
    "sudo systemctl enable --now seaweedfs seaweedfs-s3": "systemd on the storage host (test_deploy.py "
                                                         "verifies the units and runs their commands)",
    "AWS_ACCESS_KEY_ID=operator AWS_SECRET_ACCESS_KEY=... aws --endpoint-url http://10.0.2.10:8333 s3api "
    "create-bucket --bucket bodycam-evidence --object-lock-enabled-for-bucket": "the storage network and "
    "the AWS CLI (tests/seaweedkit.py makes the bucket the same way with boto3)",
    "sudo rsync -a /var/lib/bodycam-backend/keys/ backend-b:/var/lib/bodycam-backend/keys/": "two hosts",
    "sudo python3 -m venv /opt/bodycam-backend/venv": "root on a backend host",
    "sudo /opt/bodycam-backend/venv/bin/pip install './[backend]'": "installs into that host's venv",
    "sudo useradd --system --home /var/lib/bodycam-backend bodycam-backend": "root on a backend host",
    "sudo install -D -m 0640 -g bodycam-backend deploy/backend-fleet.toml /etc/bodycam-backend/a.toml": "root; "
    "test_deploy.py loads this config",
    "sudo install -m 0644 deploy/systemd/bodycam-backend@.service /etc/systemd/system/": "root",
    "sudo systemctl enable --now bodycam-backend@a": "systemd on a backend host (test_deploy.py verifies the unit)",
    "sudo apt install haproxy": "root (scripts/_bootstrap.sh installs it for the tests)",
    "cat bodycam.crt bodycam.key | sudo install -D -m 0600 /dev/stdin /etc/haproxy/certs/bodycam.pem": "a real "
    "certificate and root (tests/fleetkit.py makes a throwaway one)",
    "sudo haproxy -c -f /etc/haproxy/haproxy.cfg": "root; test_deploy.py runs haproxy -c on deploy/haproxy.cfg",
    "sudo systemctl reload haproxy": "systemd",
    'echo "show stat" | sudo socat stdio /run/haproxy/admin.sock | cut -d, -f1,2,18': "a running HAProxy "
    "(tests/fleetkit.py reads the same socket)",
    "curl -fsS http://10.0.1.11:8080/healthz": "a backend instance on the backend network",
}


def test_every_documented_command_is_listed() -> None:
    found = documented_commands()
    loop = [c for c in found if c.startswith(FOR_LOOP)]
    assert len(loop) == 1, "docs/format.md's chain loop was not found as one command"
    listed = set(RUN) | set(HELP) | set(NOT_HERE) | set(FFPROBE) | {FFPROBE_STREAMS} | set(loop)
    new = sorted(set(found) - listed)
    gone = sorted(listed - set(found))
    assert new == [], "documented commands not yet in tests/test_doc_commands.py (RUN, HELP or NOT_HERE):\n" + \
        "\n".join(f"  {found[c]}: {c}" for c in new)
    assert gone == [], "listed here but no longer in the docs:\n" + "\n".join(f"  {c}" for c in gone)


def _sign_cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
               *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def bash(command: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


DEVICE_TOML = """
[device]
serial = "BC-DOCS-0001"
data_dir = "{data}"
[camera]
source = "synthetic"
width = 160
height = 120
fps = 10
[encoder]
codec = "libx264"
bitrate_kbps = 200
[buffer]
pre_event_seconds = 1
[recording]
segment_seconds = 1
fragment_seconds = 0.5
[storage]
reserve_megabytes = 1
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded device data dir, an export of it with an agency-signed certificate, an initialised
    backend, and a fresh device config for keygen: what the documented commands need to find."""
    box = tmp_path_factory.mktemp("docs")
    (box / "device.toml").write_text(DEVICE_TOML.format(data=box / "data"))
    for argv in (["keygen", "--config", "device.toml"],
                 ["record", "--config", "device.toml", "--wait", "1.5", "--seconds", "3.5"]):
        done = bash(" ".join(["bodycam", *argv]), box)
        assert done.returncode == 0, done.stderr
    segs = box / "data" / "segments"
    assert len(list(segs.glob("seg-*.mp4"))) >= 3
    stock = box / "stock"
    shutil.copytree(segs, stock)
    shutil.copy(box / "data" / "audit" / "audit.log", stock)
    shutil.copy(box / "data" / "device" / "device.pub.pem", stock)
    device_key = serialization.load_pem_private_key((box / "data" / "device" / "key.pem").read_bytes(), None)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    (stock / "agency-ca.pem").write_bytes(_sign_cert("Agency CA", ca_key, "Agency CA", ca_key, ca=True)
                                          .public_bytes(pem))
    (stock / "device.cert.pem").write_bytes(_sign_cert("BC-DOCS-0001", device_key, "Agency CA", ca_key, ca=False)
                                            .public_bytes(pem))
    for p in stock.iterdir():
        p.chmod(0o644)
    (box / "backend.toml").write_text('[storage]\ndata_dir = "backend-data"\n')
    done = bash("bodycam backend init --config backend.toml", box)
    assert done.returncode == 0, done.stderr
    (box / "fresh").mkdir()
    (box / "fresh" / "device.toml").write_text(DEVICE_TOML.format(data=box / "fresh" / "data"))
    return box


def _as_here(command: str, box: Path) -> str:
    for doc, here in SUBST.items():
        command = command.replace(doc, here.format(sandbox=box))
    return command


@pytest.mark.parametrize("command", [c for c in RUN if c != "bodycam sim --scenario config/scenarios/smoke.toml "
                                                              "--data /tmp/smoke"])
def test_documented_command_runs(command: str, sandbox: Path) -> None:
    where = {"repo": ROOT, "sandbox": sandbox, "fresh": sandbox / "fresh", "segments": sandbox / "data" / "segments",
             "stock": sandbox / "stock"}[RUN[command]]
    line = _as_here(command, sandbox)
    if command == "source .venv/bin/activate":
        line += " && command -v bodycam"
    env_cmd = f"BODYCAM_BACKEND_CONFIG={sandbox}/backend.toml {line}"
    done = bash(env_cmd, where)
    assert done.returncode == 0, f"{command!r} failed here as {line!r}:\n{done.stdout}{done.stderr}"
    if command in EXPECT:
        assert re.search(EXPECT[command].format(root=re.escape(str(ROOT))), done.stdout, re.M), done.stdout
    assert "error" not in done.stderr.lower(), done.stderr


def test_documented_chain_loop_checks_every_segment(sandbox: Path) -> None:
    loop = next(c for c in documented_commands() if c.startswith(FOR_LOOP))
    first = "prev=0000000000000000000000000000000000000000000000000000000000000000; n=1"
    done = bash(f"{first}\n{loop}", sandbox / "stock")
    n = len(list((sandbox / "stock").glob("seg-*.json")))
    assert done.returncode == 0 and done.stdout == f"checked {n} segments\n", done.stdout + done.stderr


def test_stock_tools_ffprobe(sandbox: Path) -> None:
    """The frame listing and the per-frame UTC times of docs/format.md (Debian's ffmpeg, which
    scripts/_bootstrap.sh installs as root)."""
    assert shutil.which("ffprobe"), "ffprobe is not installed (scripts/_bootstrap.sh installs ffmpeg as root)"
    listing, t0, times = FFPROBE
    frames = bash(listing, sandbox / "stock")
    assert frames.returncode == 0 and frames.stdout.splitlines()[0].startswith("1,0,"), frames.stdout
    utc = bash(f"{t0}\n{times}", sandbox / "stock")
    assert utc.returncode == 0 and re.match(r"0 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", utc.stdout), utc.stdout


def test_stock_tools_ffprobe_shows_both_streams(sandbox: Path) -> None:
    """docs/format.md 8, step 5b: the picture and the sound track, as the doc says they print."""
    done = bash(FFPROBE_STREAMS, sandbox / "stock")
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.split())
    assert re.fullmatch(r"0,h264,video,0\.000000", lines[0]), done.stdout
    assert re.fullmatch(r"1,aac,audio,48000,1,\d+\.\d{6}", lines[1]), done.stdout


@pytest.mark.slow
def test_documented_smoke_scenario_runs(sandbox: Path) -> None:
    command = "bodycam sim --scenario config/scenarios/smoke.toml --data /tmp/smoke"
    done = bash(_as_here(command, sandbox), ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("command", list(HELP))
def test_documented_command_parses(command: str) -> None:
    """What cannot run here: its --help works and names every option the doc uses."""
    _, helpline = HELP[command]
    done = bash(helpline, ROOT)
    assert done.returncode == 0, f"{helpline}: {done.stderr}"
    for option in re.findall(r"(?<!\S)(--?[a-z][a-z-]*)", command):
        if option in ("-u", "-E"):          # sudo's and grep's, not ours
            continue
        assert option in done.stdout, f"{command!r}: {option} is not in `{helpline}`"
    for config in re.findall(r"config/[\w./-]+\.toml", command):
        assert (ROOT / config).is_file(), config
