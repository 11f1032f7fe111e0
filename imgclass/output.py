"""Output formats. Each sink writes and flushes one whole record at a time.

A record line is written with a single write call, so an interrupted run never
leaves half a line behind. The table sink is for people; the others for programs.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TextIO

from imgclass.errors import UsageError
from imgclass.records import Record

FORMATS = ("table", "json", "jsonl", "csv", "tsv")
CSV_HEADER = ["path", "rank", "index", "label", "probability", "error"]
RESUMABLE = ("jsonl", "csv", "tsv")


class Sink:
    def __init__(self, stream: TextIO):
        self.stream = stream

    def start(self) -> None:
        pass

    def write(self, record: Record) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()

    def _emit(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class JsonlSink(Sink):
    def write(self, record: Record) -> None:
        self._emit(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")


class JsonSink(Sink):
    """A JSON array, streamed: each element is written as soon as it is known."""

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self._count = 0

    def start(self) -> None:
        self._emit("[")

    def write(self, record: Record) -> None:
        prefix = ",\n  " if self._count else "\n  "
        self._count += 1
        self._emit(prefix + json.dumps(record.to_dict(), ensure_ascii=False))

    def close(self) -> None:
        self._emit("\n]\n" if self._count else "]\n")


class DelimitedSink(Sink):
    """csv / tsv: one row per prediction; a failed input is one row with `error` set."""

    def __init__(self, stream: TextIO, delimiter: str, header: bool = True):
        super().__init__(stream)
        self.delimiter = delimiter
        self.header = header

    def _rows(self, rows: list[list]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        writer.writerows(rows)
        return buffer.getvalue()

    def start(self) -> None:
        if self.header:
            self._emit(self._rows([CSV_HEADER]))

    def write(self, record: Record) -> None:
        if record.error is not None:
            rows = [[record.path, "", "", "", "", record.error]]
        else:
            rows = [[record.path, p.rank, p.index, p.label, repr(p.probability), ""] for p in record.predictions]
        if rows:
            self._emit(self._rows(rows))


class TableSink(Sink):
    """A rich table per input, for people at a terminal."""

    def __init__(self, stream: TextIO, color: bool):
        super().__init__(stream)
        from rich.console import Console

        self.console = Console(file=stream, no_color=not color, highlight=False, soft_wrap=False)

    def write(self, record: Record) -> None:
        from rich.table import Table
        from rich.text import Text

        if record.error is not None:
            self.console.print(Text(f"{record.path}: error: {record.error}", style="red"))
            return
        table = Table(title=f"{record.path}", title_justify="left", caption=f"{record.model} · {record.preset}")
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("index", justify="right")
        table.add_column("probability", justify="right")
        table.add_column("", min_width=10)
        for p in record.predictions:
            bar = "█" * max(0, round(p.probability * 20))
            table.add_row(str(p.rank), p.label, str(p.index), f"{p.probability:.4f}", Text(bar, style="cyan"))
        self.console.print(table)
        self.stream.flush()


def make_sink(fmt: str, stream: TextIO, color: bool = False, header: bool = True) -> Sink:
    if fmt == "jsonl":
        return JsonlSink(stream)
    if fmt == "json":
        return JsonSink(stream)
    if fmt in ("csv", "tsv"):
        return DelimitedSink(stream, "," if fmt == "csv" else "\t", header=header)
    if fmt == "table":
        return TableSink(stream, color)
    raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")


def format_from_extension(path: Path) -> str | None:
    return {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}.get(path.suffix.lower())


def recorded_paths(path: Path, fmt: str) -> set[str]:
    """Paths already in an output file (for --resume). A trailing partial line is cut off."""
    if fmt not in RESUMABLE:
        raise UsageError(f"--resume works with {', '.join(RESUMABLE)} output, not {fmt}")
    if not path.exists():
        return set()
    _drop_partial_line(path)
    done: set[str] = set()
    with open(path, encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    raise UsageError(f"{path}:{number}: not an imgclass jsonl record; cannot resume into it") from None
        else:
            reader = csv.reader(handle, delimiter="," if fmt == "csv" else "\t")
            header = next(reader, None)
            if header is not None and header[: len(CSV_HEADER)] != CSV_HEADER:
                raise UsageError(f"{path}: not an imgclass {fmt} file (unexpected header); cannot resume into it")
            done.update(row[0] for row in reader if row)
    return done


def _drop_partial_line(path: Path) -> None:
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the last newline and cut what follows it.
        position = size
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(position - step + cut + 1)
                return
            position -= step
        handle.truncate(0)
