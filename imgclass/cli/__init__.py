"""The command line: a thin layer over the library (parse, call, render)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from imgclass.cli.environment import Environment

__all__ = ["main", "run"]


def run(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run one command line; returns the exit code (never raises, never exits). See `imgclass.cli.app.run`."""
    from imgclass.cli.app import run as run_app

    return run_app(argv, env)


def main() -> NoReturn:
    """Console-script entry point: a help page already rendered is printed as it is (no Typer, no rich)."""
    from imgclass.cli import helpcache

    args = sys.argv[1:]
    if sys.stdout is not None and helpcache.serve(args, sys.stdout):
        sys.exit(0)
    from imgclass.cli.app import main as main_app

    if sys.stdout is None or not helpcache.is_pure_help(args):
        main_app()
    recorder = helpcache.Recorder(sys.stdout)
    sys.stdout = recorder
    try:
        main_app()
    except SystemExit as done:
        sys.stdout = recorder.inner
        if done.code in (0, None):
            helpcache.keep(args, recorder.inner, recorder.text())
        raise
