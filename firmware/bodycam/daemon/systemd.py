"""sd_notify(3) without a dependency: Type=notify readiness, STATUS= lines and the watchdog.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by $NOTIFY_SOCKET
(a leading '@' means Linux's abstract namespace). Outside systemd (simulator, tests) NOTIFY_SOCKET is
unset and every call is a no-op, so the daemon has one code path. Sends never block (a datagram
socket whose reader stalls fills after ~10 messages, and a blocked send would freeze the state
machine); a failed send is logged once and otherwise ignored: the camera must keep recording even
if systemd went away.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("bodycam.daemon.systemd")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if raw.startswith("@"):
            self.address = "\0" + raw[1:]
        elif raw.startswith("/"):
            self.address = raw
        elif raw:
            log.warning("unsupported NOTIFY_SOCKET", extra={"event": "sd_notify_unsupported",
                                                            "data": {"address": raw}})
        self.watchdog_seconds = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if sent (False when off or on error)."""
        if self.address is None:
            return False
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
            return True
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify failed",
                            extra={"event": "sd_notify_failed", "data": {"error": str(e)}})
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises; None if not for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2 / 1e6
