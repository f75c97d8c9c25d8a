"""The daemon's side of offload: one worker thread that runs upload passes while the camera is docked.

The state machine calls ``dock()`` when it enters "docked" and ``undock(reason)`` when it leaves (both
return at once: they never wait for the network under the machine's lock). There is exactly one
worker thread, so a quick undock/dock never runs two passes on the same spool: the new session starts
when the old one has stopped, which ``stop`` makes happen within one chunk. ``close()`` (daemon
shutdown) stops and joins it before the audit log is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from ..clock import Clock
from ..config import Config
from ..evidence.signer import Signer
from ..layout import DataLayout
from . import clocksync
from . import enrol as enrolmod
from .client import BackendClient
from .spool import Spool
from .uploader import Audit, Progress, StopSignal, Uploader

log = logging.getLogger("bodycam.offload")

NOT_ENROLLED_RECHECK_SECONDS = 2.0   # `bodycam enrol` (or its timer) may run while the camera is docked
SETTLE_SECONDS = 10.0                # a recording stopped by the dock seals its last segment first
DONE_RECHECK_SECONDS = 2.0


class OffloadService:
    def __init__(self, cfg: Config, *, layout: DataLayout, signer: Signer, audit: Audit, clock: Clock,
                 clock_setter: clocksync.ClockSetter | None = None,
                 session_factory: type[requests.Session] = requests.Session) -> None:
        self.cfg = cfg
        self.url = cfg.offload.backend_url
        self.layout = layout
        self.signer = signer
        self.audit = audit
        self.clock = clock
        self.clock_setter = clock_setter if clock_setter is not None else (
            clocksync.system_clock_setter() if cfg.offload.set_clock else None)
        self.session_factory = session_factory
        self.spool = Spool(layout)
        self.paths = enrolmod.EnrolPaths.of(cfg)
        self.progress = Progress()
        self.progress.update(phase="idle" if self.url else "off")
        self._cond = threading.Condition()
        self._session: StopSignal | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._enrolled_cache: tuple[float, bool] | None = None

    # --- called by the state machine ------------------------------------------------------------

    def dock(self) -> None:
        if not self.url:
            return
        with self._cond:
            if self._closed:
                return
            if self._session is None:
                self._session = StopSignal()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="bodycam-offload", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def undock(self, reason: str = "undocked") -> None:
        with self._cond:
            if self._session is not None:
                self._session.stop(reason)
                self._session = None
            self._cond.notify_all()

    def close(self, timeout: float = 15.0) -> None:
        """Stop between chunks and wait for the worker (it writes upload_stop before power_off)."""
        with self._cond:
            self._closed = True
            if self._session is not None:
                self._session.stop("shutdown")
                self._session = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def status(self) -> dict[str, Any]:
        snap = self.progress.snapshot()
        if snap["phase"] in ("idle", "off"):
            try:
                snap["pending"] = self.spool.count_pending()
            except OSError:
                pass
        snap["enrolled"] = self._enrolled()
        snap["backend_url"] = self.url or None
        return snap

    # --- the worker -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._session is not None)
                if self._closed:
                    return
                session = self._session
            assert session is not None
            try:
                self._run_session(session)
            except Exception as e:     # a bug must not kill the thread: the next dock tries again
                log.exception("offload session failed", extra={"event": "offload_error"})
                self.progress.update(phase="error", last_error=f"internal error: {type(e).__name__}: {e}")
                session.wait()
            self.progress.update(phase="idle", current=None, retry_in_seconds=None)

    def _run_session(self, stop: StopSignal) -> None:
        self._settle(stop)
        while not stop.is_set():
            enrolment = enrolmod.load(self.paths, self.signer)
            if enrolment is None:
                self.progress.update(phase="not_enrolled", last_error="not enrolled with the backend: run "
                                     "'bodycam enrol --config FILE' (with an enrolment token)")
                stop.wait(NOT_ENROLLED_RECHECK_SECONDS)
                continue
            o = self.cfg.offload
            client = BackendClient(self.url, self.signer, clock=self.clock, timeout=o.timeout_seconds,
                                   verify=o.ca_file or o.verify_tls, session=self.session_factory())
            try:
                result = Uploader(layout=self.layout, serial=self.cfg.device.serial, client=client,
                                  pins=enrolment.pins, config=o, clock=self.clock, audit=self.audit,
                                  progress=self.progress, clock_setter=self.clock_setter).run_pass(stop)
            finally:
                client.close()
            if result.outcome == "stopped":
                return
            if result.outcome == "refused" or result.failed or result.error:
                stop.wait(o.max_backoff_seconds)
                continue
            # Done. Nothing new is recorded in the dock, but look again now and then (a segment the
            # dock's stop sealed late, a rejected item a person has since removed).
            while not stop.wait(DONE_RECHECK_SECONDS):
                if self.spool.count_pending():
                    break

    def _settle(self, stop: StopSignal) -> None:
        """Give a recording that the dock stopped time to seal its last segment before the first scan."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while any(self.layout.segments.glob("seg-*.mp4.partial")) and time.monotonic() < deadline:
            if stop.wait(0.2):
                return

    def _enrolled(self) -> bool:
        """Cached on the certificate's mtime: status is asked for several times a second."""
        try:
            mtime = self.paths.cert.stat().st_mtime
        except OSError:
            return False
        if self._enrolled_cache is None or self._enrolled_cache[0] != mtime:
            self._enrolled_cache = (mtime, enrolmod.load(self.paths, self.signer) is not None)
        return self._enrolled_cache[1]
