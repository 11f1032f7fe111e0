"""stderr for people: one-line messages and progress bars shown only on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO


def err_line(message: str, stream: TextIO | None = None) -> None:
    """One line on stderr, prefixed with the program name."""
    stream = stream or sys.stderr
    try:
        stream.write(f"imgclass: {message}\n")
        stream.flush()
    except (BrokenPipeError, ValueError):
        pass


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_progress(label: str, *columns):
    """A transient rich progress display on stderr: label, bar, then `columns`."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    return Progress(TextColumn(label), BarColumn(), *columns, console=Console(stderr=True), transient=True)


class DownloadBar:
    """A rich progress bar on stderr for downloads (satisfies download.Progress)."""

    def __init__(self) -> None:
        from rich.progress import DownloadColumn, TransferSpeedColumn

        self._progress = _stderr_progress("{task.description}", DownloadColumn(), TransferSpeedColumn())
        self._task = None

    def start(self, description: str, total: int | None) -> None:
        self._progress.start()
        self._task = self._progress.add_task(f"downloading {description}", total=total)

    def advance(self, amount: int) -> None:
        self._progress.advance(self._task, amount)

    def reset(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def finish(self) -> None:
        self._progress.stop()


class BatchBar:
    """Images done / total on stderr while a batch runs."""

    def __init__(self, total: int | None) -> None:
        from rich.progress import MofNCompleteColumn, TimeRemainingColumn

        self._progress = _stderr_progress("classifying", MofNCompleteColumn(), TimeRemainingColumn())
        self._task = self._progress.add_task("images", total=total)

    def __enter__(self) -> BatchBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def advance(self) -> None:
        self._progress.advance(self._task)
