"""Runs a scenario against the real daemon and says, step by step, what happened and where the proof is.

Every step is printed with the seconds since the run began, so a failure can be matched to the
daemon's log and the audit log. The daemon is always stopped the same way (SIGTERM, wait), whether
the scenario passed, failed, or was interrupted, so the last segment is sealed and verifiable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..daemon.control import ControlError
from ..errors import BodycamError
from . import evidence
from .backend import SimBackend
from .process import DaemonError, DaemonProcess
from .scenario import Scenario, Step

EXIT_PASSED, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
POLL_SECONDS = 0.1

# (passed, lines to show) for a data directory; injectable so tests need not depend on verify.
VerifyFn = Callable[[Path], tuple[bool, list[str]]]


class StepFailed(Exception):
    """A step did not do what it said; the message is the one line the user sees."""


def verify_data_dir(data_dir: Path) -> tuple[bool, list[str]]:
    """``bodycam verify DIR`` in-process; imported late so a build without verify still simulates."""
    try:
        from ..verify import verify_paths
    except ImportError as e:
        raise StepFailed(f"bodycam.verify is not available in this build ({e}); "
                         f"run 'bodycam verify {data_dir}' once it is installed") from None
    report = verify_paths([data_dir])
    return report.ok, report.render_text().splitlines()


def status_with_disk(daemon: DaemonProcess, backend: SimBackend | None = None) -> dict[str, Any]:
    """The daemon's status plus what the simulator counts on disk itself (and in the backend's store)."""
    status = dict(daemon.status())
    status["segments_on_disk"] = len(evidence.sealed_segments(daemon.data_dir))
    if backend is not None:
        status["backend_segments"] = backend.segments_held(str(status.get("serial", "")))
    return status


def describe_status(s: dict[str, Any]) -> str:
    """One line for the summary; every field optional, since the daemon's status may grow or shrink."""
    parts = [f"state {s.get('state', '?')}"]
    if "frames_captured" in s:
        parts.append(f"{s['frames_captured']} frames captured, {s.get('dropped', 0)} dropped")
    if "segments_sealed" in s:
        parts.append(f"{s['segments_sealed']} segments sealed this run")
    if s.get("stealth"):
        parts.append("stealth on")
    off = s.get("offload")
    if isinstance(off, dict) and off.get("phase") not in (None, "off", "idle"):
        parts.append(f"offload {off['phase']}, {off.get('uploaded', 0)} uploaded, "
                     f"{off.get('pending', 0)} pending")
    if "backend_segments" in s:
        parts.append(f"{s['backend_segments']} segments held by the backend")
    parts.append(f"last fault: {s.get('last_fault') or 'none'}")
    return ", ".join(parts)


@dataclass
class Outcome:
    code: int
    failed_step: Step | None = None
    reason: str = ""


class ScenarioRunner:
    def __init__(self, scenario: Scenario, daemon: DaemonProcess, *, out: TextIO | None = None,
                 verify: VerifyFn = verify_data_dir, ready_timeout: float = 60.0,
                 backend: SimBackend | None = None) -> None:
        self.scenario = scenario
        self.daemon = daemon
        self.backend = backend
        self.out = out or sys.stdout
        self.verify = verify
        self.ready_timeout = ready_timeout
        self._t0 = time.monotonic()
        self.last_status: dict[str, Any] = {}

    # --- output -------------------------------------------------------------------------------

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._t0:7.2f}s]"

    def _print(self, text: str = "", *, end: str = "\n") -> None:
        print(text, end=end, file=self.out, flush=True)

    def _line(self, text: str, *, end: str = "\n") -> None:
        self._print(f"{self._stamp()} {text}", end=end)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> int:
        sc, d = self.scenario, self.daemon
        self._t0 = time.monotonic()
        self._print(f"scenario {sc.name!r}" + (f": {sc.description}" if sc.description else ""))
        self._print(f"  {len(sc.steps)} steps, at most ~{sc.estimated_seconds:.0f} s; started "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        self._print(f"  device config {evidence.show_path(d.config)}; data {evidence.show_path(d.data_dir)}; "
                    f"daemon log {evidence.show_path(d.log_path)}")
        outcome = Outcome(EXIT_FAILED)
        try:
            outcome = self._run_steps()
        except KeyboardInterrupt:
            self._print()
            self._line("interrupted: stopping the daemon cleanly")
            outcome = Outcome(EXIT_INTERRUPTED, reason="interrupted")
        finally:
            outcome = self._stop(outcome)
        self._summary(outcome)
        return outcome.code

    def _run_steps(self) -> Outcome:
        d = self.daemon
        self._line(f"starting the daemon: bodycam {' '.join(d.command[3:])} (mock pins)")
        try:
            first = d.start(timeout=self.ready_timeout)
        except DaemonError as e:
            return Outcome(EXIT_FAILED, reason=str(e))
        self.last_status = first
        self._line(f"daemon up (pid {d.proc.pid if d.proc else '?'}): state {first.get('state', '?')}, "
                   f"serial {first.get('serial', '?')}")
        width = len(str(len(self.scenario.steps)))
        for step in self.scenario.steps:
            self._line(f"step {step.number:>{width}}  {step.describe()} ... ", end="")
            started = time.monotonic()
            try:
                detail, lines = self._perform(step)
            except (StepFailed, BodycamError) as e:     # DaemonError, ControlError, VerifyInputError
                self._print("FAILED")
                for line in str(e).splitlines():
                    self._print(f"    {line}")
                return Outcome(EXIT_FAILED, failed_step=step, reason=str(e).splitlines()[0])
            took = time.monotonic() - started
            timing = f" ({took:.1f} s)" if step.action.startswith("expect") or step.action == "verify" else ""
            self._print(f"ok{': ' + detail if detail else ''}{timing}")
            for line in lines:
                self._print(f"    {line}")
        return Outcome(EXIT_PASSED)

    def _stop(self, outcome: Outcome) -> Outcome:
        d = self.daemon
        if not d.alive and d.returncode is None:
            return outcome              # never started: nothing to stop
        if d.alive:
            try:
                self.last_status = status_with_disk(d, self.backend)
            except (DaemonError, ControlError):
                pass
            self._line("stopping the daemon (SIGTERM) ... ", end="")
        else:
            self._line("the daemon had already exited ... ", end="")
        try:
            code = d.stop()
        except DaemonError as e:
            self._print("FAILED")
            self._print(f"    {e}")
            return outcome if outcome.code else Outcome(EXIT_FAILED, reason=str(e))
        self._print(f"exit code {code}")
        if code != 0 and outcome.code == EXIT_PASSED:
            return Outcome(EXIT_FAILED, reason=f"the daemon exited with code {code}; its log ends:\n"
                                               f"{d.log_tail()}")
        return outcome

    def _summary(self, outcome: Outcome) -> None:
        sc = self.scenario
        took = time.monotonic() - self._t0
        self._print()
        if outcome.code == EXIT_PASSED:
            self._print(f"PASSED: scenario {sc.name!r}, {len(sc.steps)} steps, every expectation held "
                        f"({took:.1f} s)")
        elif outcome.code == EXIT_INTERRUPTED:
            self._print(f"INTERRUPTED: scenario {sc.name!r} after {took:.1f} s")
        elif outcome.failed_step is not None:
            st = outcome.failed_step
            self._print(f"FAILED at step {st.number} ({st.describe()}): {outcome.reason}")
        else:
            self._print(f"FAILED: {outcome.reason}")
        if self.last_status:
            last = evidence.after_stop(self.last_status, self.daemon.data_dir)  # with the one sealed at stop
            self._print(f"  last status: {describe_status(last)}")
        self._print(f"  daemon log: {evidence.show_path(self.daemon.log_path)}")
        for line in evidence.render(evidence.collect(self.daemon.data_dir)):
            self._print(line)

    # --- steps --------------------------------------------------------------------------------

    def _perform(self, step: Step) -> tuple[str, list[str]]:
        """Do one step; returns (a short detail for the step's line, extra lines to show under it)."""
        d = self.daemon
        if step.action == "wait":
            self._sleep(step.seconds)
            return "", []
        if step.action == "press":
            reply = d.request({"cmd": "press", "button": step.button, "gesture": step.gesture})
            return reply_detail(reply), []
        if step.action in ("dock", "undock"):
            return reply_detail(d.request({"cmd": step.action})), []
        if step.action == "battery":
            try:
                reply = d.request({"cmd": "battery", "percent": step.percent})
            except ControlError as e:
                raise StepFailed(f"the daemon did not accept a simulated battery level: {e}") from None
            return reply_detail(reply), []
        if step.action == "expect_state":
            return self._poll(step, lambda s: (s.get("state") == step.state, f"state is {s.get('state')!r}"))
        if step.action == "expect":
            def check(s: dict[str, Any]) -> tuple[bool, str]:
                results = [c.evaluate(s) for c in step.checks]
                failing = [msg for held, msg in results if not held]
                return not failing, "; ".join(failing or [msg for _, msg in results])
            return self._poll(step, check)
        if step.action == "verify":
            ok, lines = self.verify(d.data_dir)
            if not ok:
                raise StepFailed("verification failed:\n" + "\n".join(lines))
            return (lines[0] if lines else ""), lines[1:]
        raise StepFailed(f"unknown action {step.action!r}")  # parse() makes this unreachable

    def _poll(self, step: Step, test: Callable[[dict[str, Any]], tuple[bool, str]]) -> tuple[str, list[str]]:
        """Poll the status until ``test`` holds or ``within`` runs out (always at least one look)."""
        deadline = time.monotonic() + step.within
        while True:
            status = status_with_disk(self.daemon, self.backend)
            self.last_status = status
            held, what = test(status)
            if held:
                return what, []
            if time.monotonic() >= deadline:
                fault = status.get("last_fault")
                raise StepFailed(f"{what} after {step.within:g} s"
                                 + (f" (last fault: {fault})" if fault else ""))
            time.sleep(POLL_SECONDS)

    def _sleep(self, seconds: float) -> None:
        """Sleep, but notice at once if the daemon dies meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self.daemon.alive:
                raise DaemonError(f"the daemon exited (code {self.daemon.returncode}) during the wait; "
                                  f"its log ends:\n{self.daemon.log_tail()}")
            time.sleep(min(POLL_SECONDS, left))


def reply_detail(reply: dict[str, Any]) -> str:
    """What the daemon made of a request, e.g. "start_recording, buffering -> recording"."""
    press = reply.get("press")
    if isinstance(press, dict):
        before, after = press.get("state_before"), press.get("state", reply.get("state"))
        moved = f"{before} -> {after}" if before and before != after else f"still {after}"
        return f"{press.get('intent', '?')}, {moved}"
    parts = [f"{k} {reply[k]}" for k in ("intent", "result", "battery_percent", "state")
             if reply.get(k) not in (None, "")]
    return ", ".join(parts)
