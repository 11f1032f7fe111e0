"""The terminal a command talks to, as data: streams, whether each is a terminal, colour, width.

Passed from `main` into every command and renderer (as httpie does), so tests can
build `Environment(stdout_isatty=True, ...)` and check terminal behaviour without a pty.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

from imgclass._util.text import printable


def _isatty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@dataclass
class Environment:
    stdin: TextIO | None = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO | None = field(default_factory=lambda: sys.stderr)
    stdout_isatty: bool | None = None  # None: ask the stream
    stderr_isatty: bool | None = None
    no_color: bool = field(default_factory=lambda: bool(os.environ.get("NO_COLOR")))
    color: str = "auto"  # auto, always, never (--color)
    quiet: bool = False  # --quiet: no progress, no per-input lines, no summary
    verbose: bool = False
    debug: bool = False

    def __post_init__(self) -> None:
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)
        if self.stderr_isatty is None:
            self.stderr_isatty = _isatty(self.stderr)

    @property
    def stdout_color(self) -> bool:
        return self._color(bool(self.stdout_isatty))

    @property
    def stderr_color(self) -> bool:
        return self._color(bool(self.stderr_isatty))

    def _color(self, isatty: bool) -> bool:
        if self.color == "always":
            return True
        if self.color == "never" or self.no_color:
            return False
        return isatty

    @property
    def progress(self) -> bool:
        """Progress bars: on a terminal only, and never with --quiet."""
        return bool(self.stderr_isatty) and not self.quiet

    @property
    def stdout_is_pipe(self) -> bool:
        """stdout is a pipe or socket: its reader (`| jq`, `| head`) may write to this terminal too."""
        import stat

        try:
            mode = os.fstat(self.stdout.fileno()).st_mode
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            return False
        return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)

    def err(self, message: str) -> None:
        """One line on stderr, prefixed with the program name; hostile text is made inert.

        A closed or broken stderr never ends a run: the line is dropped.
        """
        if self.stderr is None:
            return
        # A message may have detail lines (one per URL tried, say); each is made inert on its own.
        text = "\n".join(printable(line) for line in message.split("\n"))
        try:
            self.stderr.write(f"imgclass: {text}\n")
            self.stderr.flush()
        except (OSError, ValueError):
            pass

    def note(self, message: str) -> None:
        """An informational line (-v, summaries): suppressed by --quiet."""
        if not self.quiet:
            self.err(message)
