"""The local control socket: newline-delimited JSON over a UNIX socket only its owner can open.

Request  ``{"cmd": "status"}`` | ``{"cmd": "press", "button": "record"|"function",
           "gesture": "single"|"double"|"hold"}`` | ``{"cmd": "dock"}`` | ``{"cmd": "undock"}`` |
         ``{"cmd": "battery", "percent": 0..100}`` (simulation only: a Pi measures its battery)
Response ``{"ok": true, ...}`` or ``{"ok": false, "error": "one line saying what to fix"}``.
One connection may carry several requests, each answered by one line, in order.
The socket lives at ``<data_dir>/run/control.sock`` (mode 0600, directory 0700).
Status fields and the press reply are documented in docs/daemon.md; new fields may be added, none
is renamed without bumping ``PROTOCOL``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from ..errors import BodycamError

PROTOCOL = 1


class ControlError(BodycamError, ConnectionError):
    """The daemon is not running, or refused a request."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / "run" / "control.sock"


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def request(path: Path, message: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request and return the daemon's answer; raises ControlError with a hint on failure."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(encode(message))
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except (FileNotFoundError, NotADirectoryError):  # no socket, or a data dir that is not even a folder
        raise ControlError(f"no daemon at {path}: start it with 'bodycam run --config FILE'") from None
    except ConnectionRefusedError:
        raise ControlError(f"no daemon listening on {path} (a stale socket from a crash?): start it with "
                           "'bodycam run --config FILE'") from None
    except TimeoutError as e:
        raise ControlError(f"daemon at {path} is not answering ({e}); "
                           "check 'systemctl status bodycam'") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as the bodycam user "
                           "(sudo -u bodycam ...)") from None
    except OSError as e:  # reset or broken pipe: the daemon went away mid-request
        raise ControlError(f"daemon at {path} closed the connection ({e.strerror or e}); "
                           "is it shutting down?") from None
    try:
        reply = json.loads(buf)
    except ValueError:
        raise ControlError(f"daemon at {path} sent an unreadable reply") from None
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "request refused"))
    return reply
