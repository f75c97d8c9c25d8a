"""The real daemon as a child process: started like systemd would, stopped with SIGTERM, always.

The child runs in its own process group, so a Ctrl-C in the simulator's terminal reaches only the
simulator, which then stops the daemon in order (SIGTERM, wait for it to seal the open segment).
If the simulator itself dies, the kernel sends the daemon SIGTERM (PR_SET_PDEATHSIG), so no
orphaned camera keeps recording into the data directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..config import Config
from ..daemon.control import ControlError, request, socket_path
from ..errors import BodycamError
from ..evidence.signer import generate_key
from ..layout import ensure_writable_dir

STOP_TIMEOUT = 30.0  # the daemon seals the open segment on SIGTERM; a segment at most a few seconds


class DaemonError(BodycamError, RuntimeError):
    """The daemon would not start, died, or would not stop."""


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the simulator goes away."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def readable(line: str) -> str:
    """One daemon log line (JSON for journald) as "10:37:00 info shutdown reason=shutdown"."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict):
        return line
    head = [str(entry.pop("ts", ""))[11:19], str(entry.pop("level", "")),
            str(entry.pop("event", entry.get("msg", "")))]
    entry.pop("logger", None)
    msg = entry.pop("msg", "")
    rest = [f"{k}={v}" for k, v in entry.items()]
    return " ".join(p for p in [*head, *([msg] if msg not in head else []), *rest] if p)


def first_boot_key(cfg: Config) -> Path | None:
    """Create the device key if there is none, as first boot does on a real camera (the daemon
    never creates keys itself); returns the new key's path, or None if one was there already."""
    if cfg.key_path.exists():
        return None
    generate_key(cfg.key_path)
    return cfg.key_path


def daemon_answers(data_dir: Path) -> bool:
    """Whether a daemon already answers on ``data_dir``'s control socket (a stale socket does not)."""
    sock = socket_path(Path(data_dir))
    if not sock.exists():
        return False
    try:
        request(sock, {"cmd": "status"}, timeout=1.0)
    except ControlError:
        return False
    return True


def in_use_message(data_dir: Path) -> str:
    """One short line for a laptop terminal: what is wrong and the two ways out."""
    from .evidence import show_path

    return f"{show_path(Path(data_dir))} is in use by another simulator; quit it or pass --data NEW_DIR"


class DaemonProcess:
    """``bodycam run --config FILE --data DIR`` with mock pins; its output goes to ``log_path``."""

    def __init__(self, *, config: Path, data_dir: Path, log_path: Path,
                 env: dict[str, str] | None = None, python: str = sys.executable,
                 backend_url: str | None = None) -> None:
        self.config = Path(config)
        self.backend_url = backend_url  # the embedded evidence backend (sim/backend.py), if one runs
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.python = python
        self.env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def socket(self) -> Path:
        return socket_path(self.data_dir)

    @property
    def command(self) -> list[str]:
        return [self.python, "-m", "bodycam.cli", "run", "--config", str(self.config),
                "--data", str(self.data_dir), *(["--backend", self.backend_url] if self.backend_url else [])]

    def spawn(self) -> None:
        """Start the child and return at once (the panel shows "booting" while it comes up)."""
        if self.proc is not None:
            return
        # Without this check a second simulator would take the first one's daemon for its own. A stale
        # socket from a crash does not answer: the daemon removes it at start.
        if daemon_answers(self.data_dir):
            raise DaemonError(in_use_message(self.data_dir))
        ensure_writable_dir(self.data_dir, what="simulator data folder")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def wait_ready(self, timeout: float = 60.0, *,
                   on_wait: Callable[[], None] | None = None) -> dict[str, Any]:
        """Poll until the control socket answers a status request; returns that first status."""
        deadline = time.monotonic() + timeout
        last = "no control socket yet"
        while time.monotonic() < deadline:
            if not self.alive:
                raise DaemonError(f"the daemon exited with code {self.returncode} before it was ready; "
                                  f"its log ends:\n{self.log_tail()}")
            if self.socket.exists():
                try:
                    return self.request({"cmd": "status"}, timeout=2.0)
                except ControlError as e:
                    last = str(e)
            if on_wait:
                on_wait()
            time.sleep(0.1)
        raise DaemonError(f"the daemon did not answer on {self.socket} within {timeout:g} s ({last}); "
                          f"its log ends:\n{self.log_tail()}")

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        self.spawn()
        return self.wait_ready(timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def request(self, message: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
        """One control request; a dead daemon is reported as such, not as a socket error."""
        if self.proc is not None and not self.alive:
            raise DaemonError(f"the daemon has exited (code {self.returncode}); "
                              f"its log ends:\n{self.log_tail()}")
        try:
            return request(self.socket, message, timeout=timeout)
        except ControlError:
            raise
        except OSError as e:            # reset or broken pipe: the daemon went away mid-request
            raise ControlError(f"the daemon dropped the connection ({e.strerror or e}); "
                               f"see {self.log_path}") from None

    def status(self) -> dict[str, Any]:
        return self.request({"cmd": "status"})

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait for the daemon to seal and exit, SIGKILL only as a last resort. Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    self._wait_uninterrupted(proc, timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    self.exit_code = proc.returncode
                    raise DaemonError(f"the daemon did not stop within {timeout:g} s of SIGTERM and was "
                                      f"killed; see {self.log_path}") from None
            self.exit_code = proc.returncode
            return self.exit_code
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    @staticmethod
    def _wait_uninterrupted(proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait even through a second Ctrl-C: leaving now would orphan a daemon mid-seal."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                return
            except KeyboardInterrupt:
                print("bodycam sim: still stopping the daemon (it is sealing the open segment)...",
                      file=sys.stderr, flush=True)

    def log_tail(self, lines: int = 15) -> str:
        """The end of the daemon's log, JSON lines made readable, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "  (no log)"
        tail = text.rstrip("\n").splitlines()[-lines:]
        return "\n".join(f"  | {readable(line)}" for line in tail) if tail else "  (log is empty)"

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
