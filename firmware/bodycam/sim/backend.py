"""The embedded evidence backend beside the simulated camera, so docking uploads and verifies end to end.

``bodycam backend serve`` runs as a child process on 127.0.0.1 (a free port each run) with its state
in ``DIR/backend`` (SQLite, keys, write-once store, ``serve.log``). On a new simulated camera the
simulator enrols it as a technician would: an enrolment token from the backend CLI, then ``bodycam
enrol``; later runs find the camera enrolled and skip that. Like the daemon, the child gets SIGTERM
when the simulator goes away.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from ..errors import BodycamError
from .process import _die_with_parent

START_TIMEOUT = 30.0
REVIEW_USER = "reviewer"


class SimBackendError(BodycamError, RuntimeError):
    """The embedded backend would not start, or the camera could not be enrolled with it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimBackend:
    def __init__(self, root: Path, *, python: str = sys.executable) -> None:
        self.root = Path(root)
        self.python = python
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.root / "backend.toml"
        self.log_path = self.root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.python, "-m", "bodycam.cli", *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the config (this run's port), start ``serve`` and wait for ``/healthz``."""
        import requests  # only the simulator with a backend needs it

        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text("# written by bodycam sim at every start (the port changes)\n"
                               f"[server]\nhost = \"127.0.0.1\"\nport = {self.port}\n"
                               "[storage]\ndata_dir = \"data\"\n")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([self.python, "-m", "bodycam.cli", "backend", "serve", "--config",
                                      str(self.config)], stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SimBackendError(f"the evidence backend exited with code {self.proc.returncode}; "
                                      f"see {self.log_path}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise SimBackendError(f"the evidence backend did not answer within {timeout:g} s; "
                              f"see {self.log_path}")

    def enrol(self, device_config: Path, device_dir: Path) -> str:
        """Enrol the simulated camera unless it is already; returns what happened, in one line."""
        base = ["enrol", "--config", str(device_config), "--data", str(device_dir), "--backend", self.url]
        r = self._cli(*base)           # enrolled already: says so, exit 0 (no token needed)
        if r.returncode == 0:
            return r.stdout.strip()
        serial = self._serial(device_config, device_dir)
        t = self._cli("backend", "enrol-token", serial, "--config", str(self.config))
        if t.returncode != 0:
            raise SimBackendError(f"could not issue an enrolment token: {t.stderr.strip()}")
        r = self._cli(*base, "--token", t.stdout.strip())
        if r.returncode != 0:
            raise SimBackendError(f"enrolment failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def review_sign_in(self) -> tuple[str, str]:
        """(name, password) of the simulator's review account (a supervisor: sees every recording and its
        audit page), created on the first run; the password is kept 0600 in DIR/backend for later runs."""
        import secrets

        path = self.root / "review-password"
        if path.exists():
            return REVIEW_USER, path.read_text().strip()
        password = secrets.token_urlsafe(12)
        r = subprocess.run([self.python, "-m", "bodycam.cli", "backend", "user", "add", REVIEW_USER, "--role",
                            "supervisor", "--password-stdin", "--config", str(self.config)],
                           input=password + "\n", capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SimBackendError(f"could not create the review account: {r.stderr.strip()}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return REVIEW_USER, password

    def _serial(self, device_config: Path, device_dir: Path) -> str:
        from .. import config as configmod

        cfg = configmod.load(device_config, overrides={"device": {"data_dir": str(device_dir)}})
        return cfg.device.serial

    def pinned_key_matches(self, device_dir: Path) -> bool:
        """False when the camera was enrolled with another backend (e.g. DIR/backend was deleted)."""
        import requests

        info = device_dir / "device" / "backend" / "enrolment.json"
        try:
            pinned = json.loads(info.read_text())["backend_key_id"]
            return requests.get(self.url + "/v1/backend", timeout=5).json()["backend_key_id"] == pinned
        except (OSError, ValueError, KeyError, requests.RequestException):
            return True                 # nothing to compare: enrolment will say what is wrong

    def segments_held(self, serial: str) -> int:
        """Segments the backend has verified and stored for this camera (its write-once store)."""
        d = self.root / "data" / "store" / "devices" / serial / "segments"
        try:
            return sum(1 for n in os.listdir(d) if n.endswith(".mp4"))
        except OSError:
            return 0

    def stop(self) -> None:
        """SIGTERM and wait (idempotent); the store and database are left for the next run."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def start_for_sim(data_root: Path, device_config: Path, device_dir: Path) -> SimBackend | None:
    """Start the backend in DATA/backend and enrol the camera; None (and one line why) if it cannot,
    in which case the simulated dock only charges."""
    backend = SimBackend(data_root / "backend")
    try:
        backend.start()
        print(f"bodycam sim: evidence backend at {backend.url} (state in {backend.root}, log "
              f"{backend.log_path.name})", flush=True)
        print(f"bodycam sim: {backend.enrol(device_config, device_dir)}", flush=True)
        name, password = backend.review_sign_in()
        print(f"bodycam sim: review the footage in a browser at {backend.url}/ "
              f"(sign in as {name}, password {password})", flush=True)
    except (SimBackendError, OSError, subprocess.SubprocessError) as e:
        backend.stop()
        print(f"bodycam sim: no evidence backend ({e}); docking will only charge", file=sys.stderr,
              flush=True)
        return None
    if not backend.pinned_key_matches(device_dir):
        print(f"bodycam sim: warning: {device_dir} was enrolled with another backend (was {backend.root} "
              "deleted?); its receipts will be refused: start with a fresh --data directory",
              file=sys.stderr, flush=True)
    return backend
