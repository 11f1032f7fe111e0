"""`--output DIR`: records as a folder of JSONL shards, for jobs too big for one file.

The records go, in input order, into DIR/part-00000.jsonl, part-00001.jsonl, ...
SHARD_RECORDS to a file. Each record is written whole (one write call, as every
sink does), so a stopped run leaves at most a partial last line in its last shard.
With --resume every shard is read (and a partial last line cut off) to know what
is done, and the new records go into new shards after the last one; without it,
a folder that already holds shards is refused rather than mixed with a new run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TextIO, cast

from imgclass._util.text import printable
from imgclass.errors import OutputError, UsageError, describe_os_error
from imgclass.output.sinks import Target, read_existing

SHARD_RECORDS = 100_000
_NAME = re.compile(r"^part-(\d{5,})\.jsonl$")


def shard_files(folder: Path) -> list[tuple[int, Path]]:
    """The shards in `folder`, by number."""
    try:
        names = [
            (int(m.group(1)), folder / m.group(0)) for m in map(_NAME.match, (p.name for p in folder.iterdir())) if m
        ]
    except OSError as err:
        raise OutputError(f"«output» {printable(str(folder))}: {describe_os_error(err)}") from None
    return sorted(names)


class ShardStream:
    """A text stream that starts a new shard every `per_shard` records (one record a write)."""

    def __init__(self, folder: Path, number: int, per_shard: int = SHARD_RECORDS):
        self.folder, self.number, self.per_shard = folder, number, max(1, per_shard)
        self._file: TextIO | None = None
        self._count = 0

    def _current(self) -> TextIO:
        if self._file is None:
            path = self.folder / f"part-{self.number:05d}.jsonl"
            try:
                self._file = open(path, "x", encoding="utf-8", newline="", errors="backslashreplace")
            except OSError as err:
                raise OutputError(f"«output» {printable(str(path))}: {describe_os_error(err)}") from None
        return self._file

    def write(self, text: str) -> int:
        if not text:
            return 0
        written = self._current().write(text)
        self._count += 1
        if self._count >= self.per_shard:
            self._rotate()
        return written

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._count = None, 0
        self.number += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def check_shards(folder: Path, fmt: str, resume: bool) -> list[tuple[int, Path]]:
    """Before anything runs: `--output DIR` takes jsonl, and a folder with shards needs --resume."""
    if fmt != "jsonl":
        raise UsageError(f"«output» {printable(str(folder))} is a folder: it takes jsonl shards, not {fmt}")
    existing = shard_files(folder)
    if existing and not resume:
        raise UsageError(
            f"«output» {printable(str(folder))} holds the shards of an earlier run: add «resume» to go on with it, "
            "or give an empty folder"
        )
    return existing


def open_shards(folder: Path, fmt: str, resume: bool):
    """The Target for `--output DIR`: what the shards hold (each checked to be ours), new records in new shards.

    A record a crash cut short at the end of a shard is cut off, so every shard stays whole JSONL.
    """
    done: set[bytes] = set()
    for _, path in check_shards(folder, fmt, resume):
        existing = read_existing(path, "jsonl")
        done |= existing.done
        if existing.keep < existing.size:
            try:
                with open(path, "rb+") as handle:
                    handle.truncate(existing.keep)
            except OSError as err:
                raise OutputError(f"«output» {printable(str(path))}: {describe_os_error(err)}") from None
    existing_numbers = shard_files(folder)
    following = existing_numbers[-1][0] + 1 if existing_numbers else 0
    stream = cast(TextIO, ShardStream(folder, following, SHARD_RECORDS))
    return Target(stream, str(folder), done, fresh=True, owned=True)
