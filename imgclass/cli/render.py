"""Everything the CLI shows people: tables, one-row-per-image views, a progress line, key/value lists.

Text from files, models and servers goes through `printable` and into rich `Text`
objects, never into markup strings, so `[bold red]` in a file name is shown as it is
and escape sequences cannot reach the terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, TextIO

from imgclass._util.text import printable
from imgclass.cli.environment import Environment
from imgclass.output.sinks import Sink
from imgclass.records import Prediction, Record

UNKNOWN = "unknown"  # what a table shows for a record that abstained


def shown_label(p: Prediction) -> str:
    """A class's label, or a group's name and its top member: "dog — golden retriever 0.61"."""
    if not p.members:
        return printable(p.label)
    top = p.members[0]
    return f"{printable(p.label)} — {printable(top.label)} {top.probability:.2f}"


def console(env: Environment, stream: TextIO | None = None, width: int | None = None):
    """A rich Console on stdout (or `stream`); a closed pipe surfaces as BrokenPipeError, not SystemExit."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    color = env.stdout_color if stream is None else env.stderr_color
    if width is None and not (env.stdout_isatty if stream is None else env.stderr_isatty):
        width = 200  # piped or redirected: no terminal to fit, so do not wrap at 80
    return _Console(
        file=stream or env.stdout,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        soft_wrap=False,
        width=width,
    )


class ProgressLine:
    """`classifying 12/40 ━━━━━━───── 0:03 left` redrawn in place on stderr (a terminal only).

    Whatever else is written to the terminal first calls `clear()`, then `draw()`,
    so records and the bar never glue together or interleave.
    """

    WIDTH = 24

    def __init__(self, env: Environment, label: str = "classifying"):
        self.env, self.label = env, label
        self.total: int | None = None
        self.done = 0
        self._start = time.monotonic()
        self._shown = False

    def start(self, total: int | None) -> None:
        self.total, self._start = total, time.monotonic()
        self.draw()

    def advance(self) -> None:
        self.done += 1
        self.draw()

    def _text(self) -> str:
        if not self.total:
            return f"{self.label} {self.done}"
        filled = round(self.WIDTH * self.done / self.total)
        elapsed = time.monotonic() - self._start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        eta = f" {int(left) // 60}:{int(left) % 60:02d} left" if self.done else ""
        return f"{self.label} {self.done}/{self.total} {'━' * filled}{'─' * (self.WIDTH - filled)}{eta}"

    def _write(self, text: str) -> None:
        try:
            assert self.env.stderr is not None
            self.env.stderr.write(text)
            self.env.stderr.flush()
        except (OSError, ValueError, AssertionError):
            pass

    def draw(self) -> None:
        self._write("\r\x1b[2K" + self._text())
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._write("\r\x1b[2K")
            self._shown = False


def progress_line(env: Environment, label: str = "classifying") -> ProgressLine | None:
    """A progress line on a terminal (never with --quiet), else None."""
    return ProgressLine(env, label) if env.progress else None


def guarded(env: Environment, sink: Sink, progress: ProgressLine | None, to_stdout: bool) -> Sink:
    """`sink`, with the progress line cleared around each write when both share the terminal."""
    shares_terminal = progress is not None and to_stdout and bool(env.stdout_isatty)
    return GuardedSink(sink, progress) if shares_terminal and progress is not None else sink


class GuardedSink(Sink):
    """Any sink, with the progress line cleared around each write to a shared terminal."""

    def __init__(self, inner: Sink, progress: ProgressLine):
        super().__init__(inner.stream, inner.name)
        self.inner, self.progress = inner, progress

    def start(self) -> None:
        self._guard(self.inner.start)

    def write(self, record: Record) -> None:
        self._guard(lambda: self.inner.write(record))

    def close(self) -> None:
        self.progress.clear()
        self.inner.close()

    def _guard(self, action) -> None:
        self.progress.clear()
        try:
            action()
        finally:
            self.progress.draw()


class PredictTable(Sink):
    """`predict` on a terminal: a table per image."""

    def __init__(self, env: Environment):
        super().__init__(env.stdout)
        self.console = console(env)

    def write(self, record: Record) -> None:
        from rich.table import Table
        from rich.text import Text

        if record.error is not None:
            self.console.print(Text(f"{shown(record)}: error: {printable(record.error)}", style="red"))
            return
        table = Table(title=Text(shown(record)), title_justify="left")
        scores = " · independent scores (multi-label)" if record.multi_label else ""
        table.caption = Text(f"{printable(record.model)} · {record.preset}{scores}")
        for name, justify in (("#", "right"), ("label", "left"), ("index", "right"), ("probability", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        table.add_column("", min_width=10)
        if record.abstained:
            table.add_row("", Text(f"{UNKNOWN} (below the abstain probability)", style="bold yellow"), "", "", "")
        if not record.predictions:
            table.add_row("", Text("(nothing at or above --threshold)", style="dim"), "", "", "")
        for p in record.predictions:
            bar = Text("█" * max(0, round(p.probability * 20)), style="cyan")
            index = "" if p.index is None else str(p.index)
            table.add_row(str(p.rank), Text(shown_label(p)), index, f"{p.probability:.4f}", bar)
        self.console.print(table)
        self._emit("")


class BatchRows(Sink):
    """`batch` on a terminal: one row per image, path, top-1 label and probability, then the next ones.

    Multi-label scores get one line saying so before the first row.
    """

    MULTI_LABEL_NOTE = "independent scores (multi-label): each is its own probability; they do not sum to 100%"

    def __init__(self, env: Environment):
        super().__init__(env.stdout)
        self.console = console(env)
        self._noted = False

    def write(self, record: Record) -> None:
        from rich.text import Text

        if record.multi_label and not self._noted:
            self._noted = True
            self.console.print(Text(self.MULTI_LABEL_NOTE, style="dim"), no_wrap=True, overflow="ellipsis", crop=True)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(shown(record), style="bold")
        line.append("  ")
        if record.error is not None:
            line.append(f"error: {printable(record.error)}", style="red")
        elif not record.predictions:
            line.append("(nothing at or above --threshold)", style="dim")
        else:
            first, rest = record.predictions[0], record.predictions[1:]
            if record.abstained:
                line.append(UNKNOWN, style="yellow")
                rest = record.predictions
            else:
                line.append(shown_label(first), style="green")
                line.append(f" {first.probability:.1%}")
            for p in rest:
                line.append(f"  · {shown_label(p)} {p.probability:.1%}", style="dim")
        self.console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
        self._emit("")


def shown(record: Any) -> str:
    """The path as printed, with a video frame's time and index."""
    frame, time = getattr(record, "frame", None), getattr(record, "time", None)
    if frame is None and time is None:
        return printable(record.path)
    when = f"{time:.2f} s" if time is not None else "?"
    return f"{printable(record.path)} @ {when} (frame {frame})"


def print_video_summary(env: Environment, videos: Iterable[Any]) -> None:
    """Per video: each top-1 label that appears, with its first and last time and its frame count."""
    from rich.table import Table
    from rich.text import Text

    out = console(env)
    for video in videos:
        failed = f", {video.failed} failed" if video.failed else ""
        table = Table(title=Text(f"{printable(video.path)}: {video.frames} frames{failed}"), title_justify="left")
        for name, justify in (("label", "left"), ("first", "right"), ("last", "right"), ("frames", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for seen in video.appearances():
            table.add_row(Text(printable(seen.label)), f"{seen.first:.2f} s", f"{seen.last:.2f} s", str(seen.frames))
        out.print(table)


def print_json(env: Environment, data: Any) -> None:
    env.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    env.stdout.flush()


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def print_fields(env: Environment, data: dict[str, Any], width: int = 22) -> None:
    """`key   value` lines, values flattened; hostile text made inert."""
    for key, value in data.items():
        env.stdout.write(f"{key:{width}} {printable(_value(value))}\n")
    env.stdout.flush()


def print_table(env: Environment, columns: Iterable[tuple[str, str]], rows: Iterable[Iterable[str]], keep: str) -> None:
    """A table whose `keep` column (what users type) is never wrapped or cut; the others wrap first."""
    from rich.table import Table
    from rich.text import Text

    cells = [[printable(str(c)) for c in row] for row in rows]
    table = Table(expand=False)
    names = [name for name, _ in columns]
    widest = max((len(row[names.index(keep)]) for row in cells), default=len(keep))
    for name, justify in columns:
        pinned = name == keep
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=pinned,
            min_width=widest if pinned else None,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    console(env).print(table)
