"""The daemon's end of the control socket (protocol in control.py): status and simulated inputs.

Only the daemon's user can connect (directory 0700, socket 0600): a press through here is as good as
a press on the camera. Each connection gets a thread; requests are JSON lines, answered one line
each, and nothing a client sends can raise out of the handler (bad JSON, wrong types, huge lines,
a client that vanishes mid-reply). A stale socket from a crashed daemon is removed at start; a live
one means another daemon owns this data directory, and we refuse to start.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..controls.buttons import BUTTONS
from ..controls.gestures import GESTURES
from ..errors import BodycamError
from .control import PROTOCOL, encode
from .machine import StateMachine

log = logging.getLogger("bodycam.daemon.control")

MAX_LINE = 64 * 1024
IDLE_TIMEOUT_S = 30.0

Inject = Callable[[str, str], None]
SetBattery = Callable[[float], None]


class RequestError(ValueError):
    """A request the daemon understood well enough to refuse; the message goes back to the client."""


class ControlServer:
    """Answers status / press / dock / undock / battery on ``path`` until ``close()``."""

    def __init__(self, path: Path, machine: StateMachine, *, inject: Inject | None = None,
                 set_battery: SetBattery | None = None) -> None:
        self.path = path
        self.machine = machine
        self._inject = inject
        self._set_battery = set_battery
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": self._status, "press": self._press, "dock": self._dock, "undock": self._undock,
            "battery": self._battery,
        }

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        run_dir = self.path.parent
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        remove_stale_socket(self.path)
        server_self = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = IDLE_TIMEOUT_S

            def handle(self) -> None:
                server_self._serve(self.rfile, self.wfile)

        old_umask = os.umask(0o177)     # the socket is born 0600: no window where others can connect
        try:
            server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        finally:
            os.umask(old_umask)
        server.daemon_threads = True
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="bodycam-control", daemon=True)
        self._thread.start()
        log.info("control socket", extra={"event": "control_listening", "data": {"path": str(self.path)}})

    def close(self) -> None:
        """Stop answering and remove the socket (only if it is still ours). Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------------------

    def _serve(self, rfile: Any, wfile: Any) -> None:
        try:
            while True:
                line = rfile.readline(MAX_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_LINE:
                    wfile.write(encode({"ok": False, "error": f"request longer than {MAX_LINE} bytes"}))
                    return              # the rest of that line is unreadable as JSON anyway
                if not line.strip():
                    continue
                wfile.write(encode(self.handle_line(line)))
                wfile.flush()
        except (OSError, TimeoutError):
            return                      # the client went away or idled out: nothing to answer

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """One request line to one reply object; never raises."""
        try:
            msg = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"not JSON ({e}); send one JSON object per line"}
        if not isinstance(msg, dict):
            return {"ok": False, "error": 'request must be a JSON object such as {"cmd": "status"}'}
        cmd = msg.get("cmd")
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {', '.join(sorted(self.handlers))}"}
        try:
            return {"ok": True, **handler(msg)}
        except RequestError as e:
            return {"ok": False, "error": str(e)}
        except BodycamError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:
            log.exception("control request failed", extra={"event": "control_error", "data": {"cmd": cmd}})
            return {"ok": False, "error": f"internal error handling {cmd!r}: {type(e).__name__}: {e}"}

    def _status(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"protocol": PROTOCOL, **self.machine.status()}

    def _press(self, msg: dict[str, Any]) -> dict[str, Any]:
        button = msg.get("button", "record")
        gesture = msg.get("gesture")
        if button not in BUTTONS:
            raise RequestError(f"button {button!r}: must be one of {', '.join(BUTTONS)}")
        if gesture not in GESTURES:
            raise RequestError(f"gesture {gesture!r}: must be one of {', '.join(GESTURES)}")
        if self._inject is None:
            result = self.machine.on_gesture(button, gesture)
        else:
            # Through the panel, so a socket press queues behind pin gestures exactly like a real one.
            seen = self.machine.presses
            self._inject(button, gesture)
            result = self.machine.wait_for_press(seen)
        if result is None:
            raise RequestError("the press was not handled within 2 s (daemon shutting down?)")
        return {"press": asdict(result), "state": self.machine.state}

    def _dock(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.machine.on_dock(True)
        return {"state": self.machine.state, "docked": self.machine.docked}

    def _undock(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.machine.on_dock(False)
        return {"state": self.machine.state, "docked": self.machine.docked}

    def _battery(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self._set_battery is None:
            raise RequestError("this device measures its battery; it cannot be set")
        percent = msg.get("percent")
        try:
            self._set_battery(percent)  # type: ignore[arg-type]
        except ValueError as e:
            raise RequestError(str(e)) from None
        self.machine.tick()             # beep now, not at the next tick
        return {"battery_percent": percent, "state": self.machine.state}


def remove_stale_socket(path: Path) -> None:
    """Unlink a socket nobody answers on; refuse if a daemon answers or the path is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BodycamError(f"{path} exists and is not a socket; move it away before starting the daemon")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            pass                        # nobody listening: left over from a crash or power cut
        except PermissionError:
            raise BodycamError(f"permission denied on {path}: start the daemon as the user that owns "
                               f"{path.parent}") from None
        else:
            raise BodycamError(f"another bodycam daemon is running on {path}; stop it first "
                               "('systemctl stop bodycam')")
    path.unlink(missing_ok=True)
    log.info("stale socket removed", extra={"event": "stale_socket_removed", "data": {"path": str(path)}})
