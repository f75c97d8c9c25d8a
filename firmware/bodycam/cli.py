"""The `bodycam` command. Every error a user can cause ends as one line on stderr, never a traceback.

Only the module of the command being run is imported, so `bodycam run` on a camera never depends on
a technician or backend command importing cleanly (or quickly).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .errors import BodycamError
from .memory import limit_malloc_arenas

# command -> module with add_parser(subparsers) and a run(args) -> int set as the parser default.
COMMANDS: dict[str, str] = {
    # the camera
    "run": "cli_run", "record": "cli_record", "recover": "cli_recover", "keygen": "cli_keygen",
    "status": "cli_status", "press": "cli_press", "dock": "cli_press", "undock": "cli_press",
    "battery": "cli_press", "sim": "cli_sim",
    # evidence
    "verify": "cli_verify",
    # the dock: enrolment and upload (docs/daemon.md section 5)
    "enrol": "cli_enrol", "offload": "cli_offload",
    # the evidence backend (backend/bodycam_backend), if installed
    "backend": "cli_backend",
    # technician tools (docs/technician.md)
    "image": "cli_image", "provision": "cli_provision", "doctor": "cli_doctor",
}


def _requested(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bodycam", description="Open body-worn camera firmware.")
    parser.add_argument("--version", action="version", version=f"bodycam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = _requested(argv)
    modules = [COMMANDS[wanted]] if wanted else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ImportError as e:
            if wanted:
                raise
            print(f"bodycam: {name} unavailable ({e})", file=sys.stderr)  # help still lists the rest
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    limit_malloc_arenas()  # before any capture, encode or sound thread exists
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
    except ImportError as e:
        print(f"bodycam: this command is not installed ({e})", file=sys.stderr)
        return 2
    return run_parsed(parser.parse_args(argv))


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed subcommand: a BodycamError becomes one line on stderr and exit code 2."""
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BodycamError as e:
        print(f"bodycam: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `bodycam verify DIR | head`: the reader has gone. Exit as a C tool killed by SIGPIPE would,
        # with stdout pointed at /dev/null so the interpreter's own final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as e:
        # Last resort for file-system trouble no command anticipated: still one line, naming the file.
        where = f"{e.filename}: " if e.filename else ""
        print(f"bodycam: {where}{e.strerror or e} (check that path, its permissions and free space)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
