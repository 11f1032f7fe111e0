"""Help pages kept once rendered, so `imgclass CMD --help` does not build Typer's app and rich's panels again.

Rendering a command's help (Typer building the command, rich laying out the panels) costs
about three times Python's own start-up. The text depends only on the command line (which
command, -h or --help, --color), the terminal (a terminal or not, its width, the colour
variables) and imgclass's own files; all of that is the key, so a page is served again only
where it would come out the same. Only pure help lines are kept (command words, -h/--help,
--color), so the cache stays a few pages. Nothing here imports Typer or rich, and a cache
that cannot be read or written is simply not used.
"""

from __future__ import annotations

import hashlib
import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TextIO

HELP_FLAGS = ("-h", "--help")
COLOR_CHOICES = ("auto", "always", "never")
MAX_PAGES = 256  # a cache folder with more pages than this is not added to
_TERMINAL_VARIABLES = ("COLUMNS", "LINES", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
                       "TTY_INTERACTIVE", "TERMINAL_WIDTH", "_TYPER_FORCE_DISABLE_TERMINAL")  # fmt: skip
_PACKAGE = Path(__file__).resolve().parent.parent
_rendered = False  # set when Typer rendered a help page in this process (see cli.app._rich_help)


def mark_rendered() -> None:
    global _rendered
    _rendered = True


def is_pure_help(args: list[str]) -> bool:
    """A command line that only asks for help: words, one -h/--help, and at most `--color CHOICE`."""
    if not any(arg in HELP_FLAGS for arg in args) or os.environ.get("_IMGCLASS_COMPLETE") is not None:
        return False
    rest = [arg for arg in args if arg not in HELP_FLAGS]
    if "--color" in rest:
        at = rest.index("--color")
        if at + 1 >= len(rest) or rest[at + 1].lower() not in COLOR_CHOICES:
            return False
        del rest[at : at + 2]
    words = [arg for arg in rest if not arg.startswith("-") and arg.replace("-", "_").isidentifier()]
    return len(words) == len(rest) <= 2  # command words only: an option before -h may take it as its value


def _fingerprint() -> list[Any]:
    """What the pages are made from: imgclass's CLI and data files, the version, Typer and rich."""
    from imgclass._util.resources import data_dir

    files = sorted((_PACKAGE / "cli").glob("*.py")) + sorted(data_dir().glob("*.json"))
    files.append(_PACKAGE / "_util" / "version.py")
    for name in ("typer", "rich"):
        spec = find_spec(name)
        if spec is not None and spec.origin:
            files.append(Path(spec.origin))
    stamp: list[Any] = [sys.version]
    for path in files:
        st = path.stat()
        stamp.append((str(path), st.st_size, st.st_mtime_ns))
    return stamp


def _page(args: list[str], stdout: TextIO) -> Path | None:
    """Where the page for this command line, terminal and installation is kept (None: not to be cached)."""
    if not is_pure_help(args):
        return None
    try:
        tty = stdout.isatty()
        width = os.get_terminal_size(stdout.fileno()).columns if tty else None
        from imgclass.store.cache import help_dir

        key = repr([args, tty, width, [(v, os.environ.get(v)) for v in _TERMINAL_VARIABLES], _fingerprint()])
    except (OSError, ValueError, AttributeError):
        return None
    return help_dir() / (hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".txt")


def serve(args: list[str], stdout: TextIO) -> bool:
    """Print the kept page for this help line, if there is one; True when it was printed."""
    page = _page(args, stdout)
    if page is None or page.parent.is_symlink():
        return False
    try:
        with os.fdopen(os.open(page, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), encoding="utf-8") as handle:
            text = handle.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return False
    stdout.write(text)
    stdout.flush()
    return True


def keep(args: list[str], stdout: TextIO, text: str) -> None:
    """Keep a freshly rendered page (through the one atomic writer); a cache that cannot take it keeps nothing."""
    page = _page(args, stdout)
    if page is None or not text or not _rendered:  # `bench -m -h`: -h was a value, the output is no help page
        return
    from imgclass._util.fs import write_atomically

    try:
        page.parent.mkdir(parents=True, exist_ok=True)
        if page.parent.is_symlink() or sum(1 for _ in page.parent.iterdir()) >= MAX_PAGES:
            return
        write_atomically(page, text)
    except OSError:
        return


class Recorder:
    """stdout for one help run: writes pass through, and are kept for `keep`."""

    def __init__(self, inner: TextIO):
        self.inner = inner
        self.parts: list[str] = []
        self.whole = True  # False once anything but text went by: such a page is not kept

    def write(self, text: str) -> int:
        written = self.inner.write(text)  # bytes raise here on a text stream, as click's probe expects
        if isinstance(text, str):
            self.parts.append(text)
        else:
            self.whole = False
        return written

    def text(self) -> str:
        return "".join(self.parts) if self.whole else ""

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding, reconfigure...
        return getattr(self.inner, name)
