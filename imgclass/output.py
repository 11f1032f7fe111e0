"""Output formats. Each sink writes and flushes one whole record at a time.

A record is written with a single write call, so an interrupted run never leaves
half a line behind. These are the formats for programs; the table for people is
rendered by the CLI.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from imgclass.errors import OutputError, UsageError, describe_os_error
from imgclass.records import Prediction, Record
from imgclass.text import printable

MACHINE_FORMATS = ("json", "jsonl", "csv", "tsv")
FORMATS = ("table", *MACHINE_FORMATS)
CSV_HEADER = ["path", "rank", "index", "label", "probability", "error"]
MULTI_LABEL_COLUMN = "multi_label"  # appended to the header, and `true` on every row, for multi-label models
RESUMABLE = ("jsonl", "csv", "tsv")


class Sink:
    """Writes records to a stream; `start` before the first, `close` always (in `finally`)."""

    def __init__(self, stream: TextIO, name: str = "stdout"):
        self.stream = stream
        self.name = name  # for error messages: the output file, or stdout

    def start(self) -> None:
        pass

    def write(self, record: Record) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._emit("")

    def _emit(self, text: str) -> None:
        """Write and flush; a failed write is an OutputError, a closed pipe stays BrokenPipeError."""
        try:
            if text:
                self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as err:
            reason = describe_os_error(err) if isinstance(err, OSError) else "stream closed"
            raise OutputError(f"{printable(self.name)}: cannot write records: {reason}") from None


class JsonlSink(Sink):
    def write(self, record: Record) -> None:
        self._emit(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")


class JsonSink(Sink):
    """A JSON array, streamed: each element is written as soon as it is known."""

    def __init__(self, stream: TextIO, name: str = "stdout"):
        super().__init__(stream, name)
        self._count = 0

    def start(self) -> None:
        self._emit("[")

    def write(self, record: Record) -> None:
        prefix = ",\n  " if self._count else "\n  "
        self._count += 1
        self._emit(prefix + json.dumps(record.to_dict(), ensure_ascii=False))

    def close(self) -> None:
        self._emit("\n]\n" if self._count else "]\n")


def csv_header(multi_label: bool) -> list[str]:
    """Single-label files keep the six columns; multi-label ones add a `multi_label` column."""
    return [*CSV_HEADER, MULTI_LABEL_COLUMN] if multi_label else list(CSV_HEADER)


class DelimitedSink(Sink):
    """csv / tsv: one row per prediction; a failed input is one row with `error` set."""

    def __init__(self, stream: TextIO, delimiter: str, header: bool = True, name: str = "stdout",
                 multi_label: bool = False):  # fmt: skip
        super().__init__(stream, name)
        self.delimiter = delimiter
        self.header = header
        self.multi_label = multi_label

    def _rows(self, rows: Sequence[Sequence[object]]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        writer.writerows(rows)
        return buffer.getvalue()

    def start(self) -> None:
        if self.header:
            self._emit(self._rows([csv_header(self.multi_label)]))

    def write(self, record: Record) -> None:
        rows: list[list[object]]
        if record.error is not None:
            rows = [[record.path, "", "", "", "", record.error]]
        else:
            rows = [[record.path, p.rank, p.index, p.label, repr(p.probability), ""] for p in record.predictions]
        # An input with no prediction at or above --threshold still has its row.
        rows = rows or [[record.path, "", "", "", "", ""]]
        if self.multi_label:
            rows = [[*row, "true" if record.multi_label else "false"] for row in rows]
        self._emit(self._rows(rows))


def read_delimited(text: str, fmt: str, model: str = "", preset: str = "") -> list[Record]:
    """Records back from csv/tsv text with its header (rows of one input are consecutive).

    The rows hold no model or preset: the caller names them.
    """
    reader = csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t")
    header = next(reader, None) or []
    multi = header == csv_header(True)
    records: list[Record] = []
    for row in reader:
        if not row:
            continue
        path, rank, index, label, probability, error = row[:6]
        if not records or records[-1].path != path:
            flag = multi and len(row) > 6 and row[6] == "true"
            records.append(Record(path, model, preset, [], error or None, flag))
        if rank:
            records[-1].predictions.append(Prediction(int(rank), int(index), label, float(probability)))
    return records


def make_sink(fmt: str, stream: TextIO, header: bool = True, name: str = "stdout", multi_label: bool = False) -> Sink:
    """A sink for one of the machine formats (the table is the CLI's own renderer).

    `multi_label`: the model's scores are independent (csv/tsv then carry a `multi_label` column).
    """
    if fmt == "jsonl":
        return JsonlSink(stream, name)
    if fmt == "json":
        return JsonSink(stream, name)
    if fmt in ("csv", "tsv"):
        return DelimitedSink(stream, "," if fmt == "csv" else "\t", header=header, name=name, multi_label=multi_label)
    raise UsageError(f"--format {fmt!r}: choose one of {', '.join(MACHINE_FORMATS)}")


def choose_format(fmt: str | None, output: Path | None, stdout_isatty: bool) -> str:
    """--format, else the output file's extension, else table on a terminal and jsonl elsewhere."""
    if fmt is None:
        if output is not None:
            return format_from_extension(output) or "jsonl"
        return "table" if stdout_isatty else "jsonl"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "table" and output is not None:
        raise UsageError("--format table is for the terminal; write a file as json, jsonl, csv or tsv")
    return fmt


def format_from_extension(path: Path) -> str | None:
    return {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}.get(path.suffix.lower())


@dataclass
class Target:
    """Where records go: a stream, the paths it already holds (--resume), whether it needs a header."""

    stream: TextIO
    name: str
    done: set[str]
    fresh: bool
    owned: bool  # we opened it, so we close it

    def close(self) -> None:
        if self.owned:
            try:
                self.stream.close()
            except OSError as err:
                raise OutputError(f"{printable(self.name)}: cannot write records: {describe_os_error(err)}") from None


def open_target(output: Path | None, fmt: str, resume: bool, stdout: TextIO, multi_label: bool = False) -> Target:
    """Open --output (appending with --resume, after checking the file is ours), or use stdout.

    `multi_label`: csv/tsv rows get a `multi_label` column, so --resume refuses a file written without one
    (and the other way round).
    """
    if output is None:
        if resume:
            raise UsageError("--resume needs --output FILE")
        return Target(stdout, "stdout", set(), True, owned=False)
    if fmt not in RESUMABLE and resume:
        raise UsageError(f"--resume works with {', '.join(RESUMABLE)} output, not {fmt}")
    done = recorded_paths(output, fmt, multi_label) if resume else set()
    fresh = not (resume and output.exists() and output.stat().st_size > 0)
    try:
        handle = open(output, "a" if resume else "w", encoding="utf-8", newline="", errors="backslashreplace")
    except OSError as err:
        raise OutputError(f"--output {printable(str(output))}: {describe_os_error(err)}") from None
    return Target(handle, str(output), done, fresh, owned=True)


def recorded_paths(path: Path, fmt: str, multi_label: bool = False) -> set[str]:
    """Paths already in an output file (for --resume); a trailing partial line is cut off.

    The whole file is checked to be an imgclass output before a byte of it is changed.
    """
    if not path.exists():
        return set()
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise OutputError(f"--output {printable(str(path))}: {describe_os_error(err)}") from None
    complete = data[: data.rfind(b"\n") + 1]
    text = complete.decode("utf-8", errors="replace")
    done = _jsonl_paths(text, path) if fmt == "jsonl" else _delimited_paths(text, path, fmt, multi_label)
    if len(complete) != len(data):
        with open(path, "rb+") as handle:
            handle.truncate(len(complete))
    return done


def _jsonl_paths(text: str, path: Path) -> set[str]:
    done: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            done.add(Record.from_dict(json.loads(line)).path)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(
                f"{printable(str(path))}:{number}: not an imgclass jsonl record; cannot resume into it"
            ) from None
    return done


def _delimited_paths(text: str, path: Path, fmt: str, multi_label: bool) -> set[str]:
    reader = csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t")
    header = next(reader, None)
    if header is not None:
        held = {tuple(csv_header(False)): "single-label", tuple(csv_header(True)): "multi-label"}.get(tuple(header))
        if held is None:
            raise UsageError(f"{printable(str(path))}: not an imgclass {fmt} file (unexpected header); cannot resume into it")
        if header != csv_header(multi_label):
            now = "multi-label" if multi_label else "single-label"
            raise UsageError(f"{printable(str(path))}: holds {held} rows and this model's scores are {now}; "
                             "write to another file")  # fmt: skip
    return {row[0] for row in reader if row}
