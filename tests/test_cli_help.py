"""Every `bodycam COMMAND --help` says what the command does and what each argument is: walked over
the real parser, so a new command or argument without help fails here."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

from bodycam.cli import COMMANDS, build_parser


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _subcommands(child, (*path, name))


def _all() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    return list(_subcommands(build_parser()))


def test_every_command_is_walked() -> None:
    top = {path[0] for path, _ in _all()}
    assert top == set(COMMANDS)
    assert ("backend", "export") in {path for path, _ in _all()}  # the backend is installed for tests


def test_every_subcommand_has_a_description() -> None:
    missing = [" ".join(path) for path, p in _all() if not (p.description or "").strip()]
    assert missing == [], f"no description (shown by --help): {missing}"


def test_every_argument_has_help() -> None:
    missing = []
    for path, p in [((), build_parser()), *_all()]:
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or a.help == argparse.SUPPRESS:
                continue
            if not (a.help or "").strip():
                missing.append(f"bodycam {' '.join(path)} {a.option_strings[0] if a.option_strings else a.dest}")
    assert missing == [], "arguments without help:\n" + "\n".join(missing)


def test_help_prints_the_description() -> None:
    for path, p in _all():
        text = p.format_help()
        assert p.description.split()[0] in text, path
    out = subprocess.run([sys.executable, "-m", "bodycam.cli", "verify", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--decode" in out and "Verify" in out
