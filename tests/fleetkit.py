"""A real backend fleet on 127.0.0.1, built from the files in deploy/: PostgreSQL (tests/pgkit.py),
SeaweedFS with only its S3 API on the "network" address (tests/seaweedkit.py), N `bodycam backend serve`
instances sharing one database, store, upload staging and keys (backendkit.BackendProcess), and
Debian's HAProxy running deploy/haproxy.cfg (`haproxy -f cfg -db`) with a throwaway self-signed
certificate: TLS to HAProxy, plain HTTP from it to the instances.

The HAProxy config is deploy/haproxy.cfg itself with only what cannot hold here swapped (addresses,
certificate and socket paths, chroot/user, the global maxconn): every swap must match exactly one
line, so a change to the deployed file's shape fails the fleet test instead of drifting from it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from backendkit import BackendProcess, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from seaweedkit import SeaweedS3

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_HAPROXY = ROOT / "deploy/haproxy.cfg"
HAPROXY = shutil.which("haproxy", path="/usr/sbin:/usr/bin:/sbin:/bin")


def self_signed(dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway TLS certificate for ``host``: (combined cert+key PEM for HAProxy, cert PEM for clients)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bodycam fleet test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    combined, public = dir / "haproxy.pem", dir / "ca.pem"
    combined.write_bytes(cert_pem + key_pem)
    combined.chmod(0o600)
    public.write_bytes(cert_pem)
    return combined, public


def _swap(text: str, pattern: str, repl: str) -> str:
    out, n = re.subn(pattern, repl, text, flags=re.MULTILINE)
    assert n == 1, f"deploy/haproxy.cfg: expected exactly one line matching {pattern!r}, found {n}"
    return out


def render_haproxy(text: str, *, bind: str, pem: Path, stats_socket: Path,
                   servers: list[tuple[str, str]], log: bool = False) -> str:
    """deploy/haproxy.cfg for a test: ``servers`` as (name, host:port); all else (timeouts, checks,
    balancing, forwarded headers) exactly as deployed."""
    text = _swap(text, r"^\s*log /dev/log .*$", "    log stdout format raw local0" if log else "")
    text = _swap(text, r"^\s*chroot .*$", "")
    text = _swap(text, r"^\s*user haproxy$", "")
    text = _swap(text, r"^\s*group haproxy$", "")
    text = _swap(text, r"^(\s*stats socket )\S+", rf"\g<1>{stats_socket}")
    text = _swap(text, r"^(\s*maxconn )\d+$", r"\g<1>4000")  # 20000 needs more fds than a test may open
    text = _swap(text, r"^(\s*bind )\S+( ssl crt )\S+", rf"\g<1>{bind}\g<2>{pem}")
    lines = [ln for ln in text.splitlines() if not re.match(r"^\s*server \S+ \S+", ln)]
    at = next(i for i, ln in enumerate(lines) if re.match(r"^\s*default-server ", ln))
    lines[at + 1:at + 1] = [f"    server {name} {addr}" for name, addr in servers]
    return "\n".join(lines) + "\n"


class Haproxy:
    """`haproxy -f cfg -db` (foreground, Debian's binary) on deploy/haproxy.cfg rendered for this test."""

    def __init__(self, root: Path, servers: list[tuple[str, str]], *, log: bool = False) -> None:
        assert HAPROXY, "no haproxy: apt-get install haproxy (scripts/_bootstrap.sh does this as root)"
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.pem, self.ca = self_signed(root)
        self.port = free_port()
        self.socket = root / "admin.sock"
        self.cfg = root / "haproxy.cfg"
        self.cfg.write_text(render_haproxy(DEPLOY_HAPROXY.read_text(), bind=f"127.0.0.1:{self.port}",
                                           pem=self.pem, stats_socket=self.socket, servers=servers, log=log))
        self.url = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True, check=False)

    def start(self, timeout: float = 20) -> None:
        c = self.check()
        assert c.returncode == 0, f"haproxy -c refused the rendered deploy/haproxy.cfg: {c.stdout}{c.stderr}"
        log = open(self.root / "haproxy.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([HAPROXY, "-f", str(self.cfg), "-db"], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited: {(self.root / 'haproxy.log').read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", verify=str(self.ca), timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("haproxy did not pass /healthz through in time")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def command(self, cmd: str) -> str:
        """One command on HAProxy's runtime API (the stats socket deploy/haproxy.cfg declares)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """Server name -> its row of HAProxy's `show stat` (status, stot, chkdown, ...)."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return {r["svname"]: r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}

    def server_status(self) -> dict[str, str]:
        """Server name -> HAProxy's health-check status (UP, DOWN, 'UP 1/2', ...)."""
        return {name: row["status"] for name, row in self.servers().items()}

    def served(self, server: str) -> int:
        """Requests HAProxy has sent to ``server`` so far (stot)."""
        return int(self.servers()[server]["stot"])

    def wait_status(self, server: str, want: str, timeout: float = 30) -> float:
        """Seconds until ``server``'s status is ``want``; raises if it never is."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.server_status().get(server) == want:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"haproxy: {server} not {want} after {timeout:g} s: {self.server_status()}")


@dataclass
class Fleet:
    """PostgreSQL + SeaweedFS S3 + N instances + HAProxy; ``url`` is HAProxy's (TLS, ``ca`` to trust)."""

    root: Path
    database_url: str  # PostgreSQL (tests/pgkit.py), shared by every instance
    instances: int = 3
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra config for every instance
    log: bool = False

    def __post_init__(self) -> None:
        self.store = SeaweedS3(self.root / "seaweed")
        self.staging = self.root / "shared" / "staging"
        self.keys = self.root / "shared" / "keys"
        self.backends: list[BackendProcess] = []
        self.haproxy: Haproxy | None = None

    def instance_tables(self, name: str) -> dict[str, dict[str, Any]]:
        """What deploy/backend-fleet.toml sets, pointed at this machine's processes."""
        t: dict[str, dict[str, Any]] = {
            "server": {"log_level": "warning"},
            **self.store.backend_tables(),
            "auth": {"session_secret": "fleet-test-session-secret-0123456789abcdef0123456789abcdef"},
            # Slots a SIGKILLed instance held are freed after idle_seconds: 15 s here, not 120, so the
            # storm test does not wait two minutes for them (a device sends a chunk every few ms).
            "admission": {"max_concurrent_uploads": 64, "retry_after_seconds": 1, "idle_seconds": 15},
        }
        t["database"] = {"url": self.database_url}
        t["storage"] |= {"staging_dir": str(self.staging), "keys_dir": str(self.keys)}
        for table, values in self.tables.items():
            t.setdefault(table, {}).update(values)
        return t

    def start(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        self.store.start()
        self.backends = [BackendProcess(self.root / f"backend-{c}", **self.instance_tables(c))
                         for c in "abcdefghij"[: self.instances]]
        self.backends[0].cli("init")  # keys, CA, schema; the others find them
        for b in self.backends:
            b.start(timeout=60)
        self.haproxy = Haproxy(self.root / "haproxy", [(self.name(b), f"127.0.0.1:{b.port}") for b in self.backends],
                               log=self.log)
        self.haproxy.start()
        for b in self.backends:
            self.haproxy.wait_status(self.name(b), "UP")

    def name(self, b: BackendProcess) -> str:
        return f"backend-{b.root.name.rsplit('-', 1)[1]}"

    def stop(self) -> None:
        if self.haproxy:
            self.haproxy.stop()
        for b in self.backends:
            b.stop()
        self.store.stop()

    @property
    def url(self) -> str:
        assert self.haproxy
        return self.haproxy.url

    @property
    def ca(self) -> str:
        assert self.haproxy
        return str(self.haproxy.ca)

    def session(self, token: str | None = None) -> requests.Session:
        """HTTPS to HAProxy trusting only the test certificate (trust_env off: REQUESTS_CA_BUNDLE in the
        environment would otherwise replace ``verify``), with a bearer token if given."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        return s

    def admin_token(self) -> str:
        """An admin's bearer token (the account is made once, by the CLI on the first instance)."""
        if not getattr(self, "_admin_token", None):
            self._admin_token = self.backends[0].admin_token()
        return self._admin_token

    def admin(self) -> requests.Session:
        return self.session(self.admin_token())


@contextmanager
def running(root: Path, database_url: str, **kw: Any) -> Iterator[Fleet]:
    fleet = Fleet(root, database_url, **kw)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
