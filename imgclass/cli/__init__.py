"""The command line: a thin layer over the library (parse, call, render)."""

from imgclass.cli.app import main, run

__all__ = ["main", "run"]
