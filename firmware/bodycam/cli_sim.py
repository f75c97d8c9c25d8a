"""`bodycam sim`: the real daemon on a laptop, driven by a scenario file or by keys in a live panel.

Exit codes (scenario mode): 0 every expectation held, 1 a step failed or the daemon misbehaved,
2 a usage error (bad scenario or config, caught before the daemon starts), 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from . import config as configmod
from .errors import BodycamError
from .layout import ensure_writable_dir

DEFAULT_DATA = "sim-data"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="run the real daemon in a simulator: a scenario file, or an interactive panel",
        description="Start 'bodycam run' with mock pins and a synthetic camera, then either run a scenario "
                    "(steps and expectations, non-interactive, exit 0 only if all held) or show a live "
                    "panel driven by single keys. Device state lives in DATA/device, the daemon's log "
                    "in DATA/daemon.log.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--scenario", metavar="FILE", help="scenario TOML, e.g. config/scenarios/smoke.toml")
    mode.add_argument("--panel", action="store_true", help="interactive panel (needs a terminal)")
    p.add_argument("--config", metavar="FILE",
                   help="device config TOML (default: the scenario's own [scenario] config)")
    p.add_argument("--data", metavar="DIR", default=DEFAULT_DATA,
                   help=f"simulation state directory (default: ./{DEFAULT_DATA})")
    p.add_argument("--no-backend", action="store_true",
                   help="no embedded evidence backend (DIR/backend): the dock only charges")
    p.set_defaults(run=run)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (tmux kill, a CI timeout) takes the same clean path as Ctrl-C."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from .sim import scenario as scenariomod
    from .sim.process import DaemonProcess, daemon_answers, first_boot_key, in_use_message

    if args.panel and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BodycamError("--panel needs a terminal; without one, run a scenario: "
                           "bodycam sim --scenario config/scenarios/patrol.toml")
    data_root = Path(args.data).resolve()
    device_dir = data_root / "device"
    if daemon_answers(device_dir):  # before anything starts: no second backend, no summary of the other's files
        raise BodycamError(in_use_message(data_root))
    scenario = scenariomod.load(args.scenario) if args.scenario else None
    config_path = Path(args.config) if args.config else (scenario.config if scenario else None)
    if config_path is None:
        raise BodycamError("no device config: pass --config FILE (e.g. config/sim.toml) or set "
                           "config = \"...\" in the scenario's [scenario] table")
    # Validate here, so a typo is one line now rather than a daemon log tail later.
    cfg = configmod.load(config_path, overrides={"device": {"data_dir": str(device_dir)}})
    ensure_writable_dir(data_root, what="--data")
    if (key := first_boot_key(cfg)) is not None:
        print(f"bodycam sim: first boot of this simulated camera: device key created at {key}", flush=True)
    backend = None      # the panel can always dock; a scenario only needs a backend if it docks
    if not args.no_backend and (scenario is None or any(s.action == "dock" for s in scenario.steps)):
        from .sim.backend import start_for_sim

        backend = start_for_sim(data_root, config_path.resolve(), device_dir)
    daemon = DaemonProcess(config=config_path.resolve(), data_dir=device_dir,
                           log_path=data_root / "daemon.log", backend_url=backend.url if backend else None)
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        if scenario is not None:
            from .sim.runner import ScenarioRunner

            return ScenarioRunner(scenario, daemon, backend=backend).run()
        from .sim.panel import run_panel

        return run_panel(daemon, cfg)
    finally:
        daemon.stop()
        if backend is not None:
            backend.stop()
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m bodycam.cli_sim``), same behaviour as ``bodycam sim``."""
    from .cli import run_parsed  # late: cli imports this module lazily too
    parser = argparse.ArgumentParser(prog="bodycam")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_parsed(parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
