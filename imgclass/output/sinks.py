"""Output formats. Each sink writes and flushes one whole record at a time.

A record is written with a single write call, so an interrupted run never leaves
half a line behind. These are the formats for programs; the table for people is
rendered by the CLI.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from imgclass._util.text import printable
from imgclass.data.sources import frame_key, record_key
from imgclass.errors import OutputError, UsageError, describe_os_error
from imgclass.records import Prediction, Record

MACHINE_FORMATS = ("json", "jsonl", "csv", "tsv")
FORMATS = ("table", *MACHINE_FORMATS)
BASE_COLUMNS = ["path", "rank", "index", "label", "probability", "error"]
CSV_HEADER = [*BASE_COLUMNS, "path_bytes"]
MULTI_LABEL_COLUMN = "multi_label"  # appended to the header, and `true` on every row, for multi-label models
ABSTAINED_COLUMN = "abstained"  # appended last when records carry an abstain verdict (abstain_below)


def csv_header(multi_label: bool, abstained: bool = False) -> list[str]:
    """Single-label files have the seven columns; multi-label ones add a `multi_label` column, then `abstained`."""
    header = [*CSV_HEADER, MULTI_LABEL_COLUMN] if multi_label else list(CSV_HEADER)
    return [*header, ABSTAINED_COLUMN] if abstained else header


def wide_header(top: int) -> list[str]:
    """One row per image: path, label_i and probability_i for i in 1..top, error, abstained."""
    ranked = [name for i in range(1, top + 1) for name in (f"label_{i}", f"probability_{i}")]
    return ["path", *ranked, "error", ABSTAINED_COLUMN]


def _verdict(record: Record) -> str:
    return "" if record.abstained is None else "true" if record.abstained else "false"


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


class DelimitedSink(Sink):
    """csv / tsv: one row per prediction; a failed input is one row with `error` set."""

    def __init__(self, stream: TextIO, delimiter: str, header: bool = True, name: str = "stdout",
                 columns: Sequence[str] | None = None, multi_label: bool = False,
                 abstained: bool = False):  # fmt: skip
        super().__init__(stream, name)
        self.delimiter = delimiter
        self.header = header
        self.multi_label = multi_label
        self.abstained = abstained  # an `abstained` column (the run has an abstain_below)
        # Appending to a file started with fewer columns (--resume) keeps its columns.
        self.width = len(columns) if columns else len(csv_header(multi_label, abstained))

    def _rows(self, rows: Sequence[Sequence[object]]) -> str:
        buffer = io.StringIO()
        plain = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        # RFC 4180: a field with CR or LF is quoted (the csv module quotes LF, not a lone CR).
        quoted = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in rows:
            cut = row[: self.width]
            (quoted if any("\r" in str(v) for v in cut) else plain).writerow(cut)
        return buffer.getvalue()

    def start(self) -> None:
        if self.header:
            self._emit(self._rows([csv_header(self.multi_label, self.abstained)]))

    def write(self, record: Record) -> None:
        rows: list[list[object]]
        raw = record.path_bytes or ""
        if record.error is not None:
            rows = [[record.path, "", "", "", "", record.error, raw]]
        else:
            rows = [[record.path, p.rank, "" if p.index is None else p.index, p.label, repr(p.probability), "", raw]
                    for p in record.predictions]  # fmt: skip
        # An input with no prediction at or above --threshold still has its row.
        rows = rows or [[record.path, "", "", "", "", "", raw]]
        if self.multi_label:
            rows = [[*row, "true" if record.multi_label else "false"] for row in rows]
        if self.abstained:
            rows = [[*row, _verdict(record)] for row in rows]
        self._emit(self._rows(rows))


class WideSink(DelimitedSink):
    """csv / tsv, one row per image: `path,label_1,probability_1,...,label_k,probability_k,error,abstained`.

    For spreadsheets; `abstained` is empty when the run has no abstain_below. A group's label is its name.
    """

    def __init__(self, stream: TextIO, delimiter: str, top: int, header: bool = True, name: str = "stdout"):
        super().__init__(stream, delimiter, header=header, name=name)
        self.top = top
        self.width = len(wide_header(top))

    def start(self) -> None:
        if self.header:
            self._emit(self._rows([wide_header(self.top)]))

    def write(self, record: Record) -> None:
        cells: list[object] = [record.path]
        for i in range(self.top):
            p = record.predictions[i] if i < len(record.predictions) else None
            cells += [p.label, repr(p.probability)] if p is not None else ["", ""]
        self._emit(self._rows([[*cells, record.error or "", _verdict(record)]]))


def read_delimited(text: str, fmt: str, model: str = "", preset: str = "") -> list[Record]:
    """Records back from csv/tsv text with its header (rows of one input are consecutive).

    The rows hold no model or preset: the caller names them.
    """
    reader = csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t")
    header = next(reader, None) or []
    flag_at = header.index(MULTI_LABEL_COLUMN) if MULTI_LABEL_COLUMN in header else None
    verdict_at = header.index(ABSTAINED_COLUMN) if ABSTAINED_COLUMN in header else None
    records: list[Record] = []
    for row in reader:
        if not row:
            continue
        path, rank, index, label, probability, error = row[:6]
        raw = row[6] if len(row) > 6 and header[6:7] == ["path_bytes"] and row[6] else None
        if not records or records[-1].path != path:
            flag = flag_at is not None and len(row) > flag_at and row[flag_at] == "true"
            said = row[verdict_at] if verdict_at is not None and len(row) > verdict_at else ""
            abstained = {"true": True, "false": False}.get(said)
            records.append(Record(path, model, preset, [], error or None, flag, raw, abstained=abstained))
        if rank:
            number = int(index) if index else None  # a group has no class index
            records[-1].predictions.append(Prediction(int(rank), number, label, float(probability)))
    return records


def make_sink(fmt: str, stream: TextIO, header: bool = True, name: str = "stdout",
              columns: Sequence[str] | None = None, multi_label: bool = False, abstained: bool = False,
              wide: int | None = None) -> Sink:  # fmt: skip
    """A sink for one of the machine formats (the table is the CLI's own renderer).

    `columns`: the header of a csv/tsv file being resumed; `multi_label`: the model's scores are
    independent (csv/tsv then carry a `multi_label` column); `abstained`: records carry an abstain
    verdict (csv/tsv then carry an `abstained` column); `wide`: csv/tsv with one row per image and
    this many predictions in columns.
    """
    if fmt == "jsonl":
        return JsonlSink(stream, name)
    if fmt == "json":
        return JsonSink(stream, name)
    if fmt in ("csv", "tsv") and wide is not None:
        return WideSink(stream, "," if fmt == "csv" else "\t", wide, header=header, name=name)
    if fmt in ("csv", "tsv"):
        return DelimitedSink(stream, "," if fmt == "csv" else "\t", header=header, name=name, columns=columns,
                             multi_label=multi_label, abstained=abstained)  # fmt: skip
    raise UsageError(f"«format» {fmt!r}: choose one of {', '.join(MACHINE_FORMATS)}")


def choose_format(fmt: str | None, output: Path | None, stdout_isatty: bool) -> str:
    """--format, else the output file's extension, else table on a terminal and jsonl elsewhere."""
    if fmt is None:
        if output is not None:
            return format_from_extension(output) or "jsonl"
        return "table" if stdout_isatty else "jsonl"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"«format» {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "table" and output is not None:
        raise UsageError("«format» table is for the terminal; write a file as json, jsonl, csv or tsv")
    return fmt


def format_from_extension(path: Path) -> str | None:
    return {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}.get(
        path.suffix.lower()
    )


@dataclass
class Existing:
    """What an output file already holds, learnt before a byte of it is changed."""

    done: set[bytes]  # the inputs it has a complete record for (sources.path_key)
    keep: int  # bytes to keep: a trailing incomplete record is cut off on --resume
    size: int
    columns: list[str] | None = None  # csv/tsv: the header it was started with


@dataclass
class Target:
    """Where records go: a stream, the inputs it already holds (--resume), whether it needs a header."""

    stream: TextIO
    name: str
    done: set[bytes]
    fresh: bool
    owned: bool  # we opened it, so we close it
    columns: list[str] | None = None

    def close(self) -> None:
        if self.owned:
            try:
                self.stream.close()
            except OSError as err:
                raise OutputError(f"{printable(self.name)}: cannot write records: {describe_os_error(err)}") from None


class RecordFile(io.TextIOBase):
    """An output file that takes each record whole or not at all.

    Each `write` is one record, sent with `os.write` until all of it is out; when the
    disk fills up halfway, the file is cut back to where the record began, so a
    failed run never leaves part of a record behind (and --resume never counts one).
    """

    def __init__(self, fd: int, name: str):
        super().__init__()
        self.fd, self._name = fd, name
        st = os.fstat(fd)
        self.regular = stat.S_ISREG(st.st_mode)
        self.end = st.st_size if self.regular else 0

    @property
    def name(self) -> str:
        return self._name

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, text: str) -> int:
        encoded = text.encode("utf-8", "backslashreplace")
        data, start = memoryview(encoded), self.end
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except BaseException:
            if self.regular:
                try:
                    os.ftruncate(self.fd, start)
                except OSError:
                    pass
            raise
        self.end = start + len(encoded)
        return len(text)

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.close(self.fd)


def _looks_like_ours(path: Path) -> bool:
    """The head of `path` is one of our formats: a csv/tsv header, a JSON record line, a JSON array of them."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError as err:
        raise OutputError(f"«output» {printable(str(path))}: {describe_os_error(err)}") from None
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if any(first.split(d)[: len(BASE_COLUMNS)] == [c.encode() for c in BASE_COLUMNS] for d in (b",", b"\t")):
        return True
    if any(first.split(d)[:3] == [b"path", b"label_1", b"probability_1"] for d in (b",", b"\t")):
        return True  # a --wide file
    stripped = head.lstrip()
    if stripped.startswith(b"[") and (stripped[1:].lstrip().startswith((b'{"path"', b"]")) or not stripped[1:].strip()):
        return True
    try:
        Record.from_dict(json.loads(first))
        return True
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def read_existing(path: Path, fmt: str) -> Existing:
    """The inputs an output file already has a complete record for (for --resume).

    The whole file is checked to be an imgclass output first; nothing is changed here.
    A record cut short by a crash (the file does not end with a newline) is not
    counted, and `keep` says where it began.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise OutputError(f"«output» {printable(str(path))}: {describe_os_error(err)}") from None
    complete = data[: data.rfind(b"\n") + 1]
    text = complete.decode("utf-8", errors="surrogateescape")
    if fmt == "jsonl":
        return Existing(_jsonl_keys(text, path), len(complete), len(data))
    return _delimited_existing(text, data[len(complete) :], path, fmt, len(data))


def recorded_paths(path: Path, fmt: str) -> set[bytes]:
    """The inputs already in an output file (see `read_existing`)."""
    return read_existing(path, fmt).done if path.exists() else set()


def _jsonl_keys(text: str, path: Path) -> set[bytes]:
    done: set[bytes] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = Record.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(
                f"{printable(str(path))}:{number}: not an imgclass jsonl record; cannot resume into it"
            ) from None
        done.add(frame_key(record_key(record.path, record.path_bytes), record.frame))
    return done


def _delimited_existing(text: str, partial: bytes, path: Path, fmt: str, size: int) -> Existing:
    """csv/tsv: a record is the run of rows for one input; one cut short by a crash is dropped whole."""
    delimiter = "," if fmt == "csv" else "\t"
    lines = [line + "\n" for line in text.split("\n")[:-1]]
    header = next(csv.reader(lines[:1], delimiter=delimiter), None)
    if header is not None and header[: len(BASE_COLUMNS)] != BASE_COLUMNS:
        raise UsageError(
            f"{printable(str(path))}: not an imgclass {fmt} file (unexpected header); cannot resume into it"
        )
    keys: list[bytes] = []
    starts: list[int] = []
    consumed, last_path = 1, ""

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in lines[1:]:
            consumed += 1
            yield line

    starts.append(consumed)
    for row in csv.reader(feed(), delimiter=delimiter):
        keys.append(record_key(row[0], row[6] if len(row) > 6 else None) if row else b"")
        last_path = row[0] if row else ""
        starts.append(consumed)  # where the next row begins, in lines
    done = {k for k in keys if k}
    keep = size - len(partial)
    if partial and keys:
        cut = next(csv.reader([partial.decode("utf-8", "replace")], delimiter=delimiter), [])
        last = keys[-1]
        if len(cut) < 2 or cut[0] == last_path:
            # The cut line may belong to the last record: its earlier rows are not the whole of it.
            first = len(keys)
            while first > 0 and keys[first - 1] == last:
                first -= 1
            keep -= sum(len(line.encode("utf-8", "surrogateescape")) for line in lines[starts[first] :])
            done.discard(last)
    return Existing(done, keep, size, header)
