"""Where records go: `--output FILE` (checked to be ours, appended with --resume), a shard folder, or stdout."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO, cast

from imgclass._util.text import printable
from imgclass.errors import OutputError, UsageError, describe_os_error
from imgclass.output.shards import check_shards, open_shards
from imgclass.output.sinks import (
    MULTI_LABEL_COLUMN,
    RESUMABLE,
    Existing,
    RecordFile,
    Target,
    _looks_like_ours,
    read_existing,
)


def check_output(output: Path | None, fmt: str, resume: bool) -> Existing | None:
    """Before anything runs: what --output holds, and whether it may be written at all.

    An existing file that is not an imgclass output (a photo, someone's spreadsheet) is
    never overwritten or appended to; for --resume the whole file is checked.
    """
    if output is None:
        if resume:
            raise UsageError("«resume» needs «output» FILE")
        return None
    if output.is_dir():
        check_shards(output, fmt, resume)
        return None
    if fmt not in RESUMABLE and resume:
        raise UsageError(f"«resume» works with {', '.join(RESUMABLE)} output, not {fmt}")
    try:
        st = os.stat(output)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise OutputError(f"«output» {printable(str(output))}: {describe_os_error(err)}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None  # /dev/null, a pipe, an empty file: nothing to lose
    if resume:
        return read_existing(output, fmt)
    if not _looks_like_ours(output):
        raise UsageError(
            f"«output» {printable(str(output))} exists and is not an imgclass output; "
            "refusing to overwrite it (remove it first, or choose another file)"
        )
    return None


def open_target(output: Path | None, fmt: str, resume: bool, stdout: TextIO, existing: Existing | None = None,
                multi_label: bool = False) -> Target:  # fmt: skip
    """Open --output (appending with --resume, after checking the file is ours), or use stdout.

    `multi_label`: csv/tsv rows carry a `multi_label` column, so --resume refuses a file written
    without one (and the other way round) before a byte of it is changed.
    """
    if output is None:
        check_output(output, fmt, resume)
        return Target(stdout, "stdout", set(), True, owned=False)
    if output.is_dir():
        return open_shards(output, fmt, resume)
    if existing is None:
        existing = check_output(output, fmt, resume)
    if resume and existing is not None and existing.columns is not None:
        held = MULTI_LABEL_COLUMN in existing.columns
        if held != multi_label:
            kinds = {True: "multi-label", False: "single-label"}
            raise UsageError(f"{printable(str(output))}: holds {kinds[held]} rows and this model's scores are "
                             f"{kinds[multi_label]}; write to another file")  # fmt: skip
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resume else os.O_TRUNC)
    try:
        fd = os.open(output, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
        if resume and existing is not None and existing.keep < existing.size:
            os.ftruncate(fd, existing.keep)  # a trailing record that was cut short is written again
    except OSError as err:
        raise OutputError(f"«output» {printable(str(output))}: {describe_os_error(err)}") from None
    fresh = not (resume and existing is not None and existing.keep > 0)
    done = existing.done if resume and existing is not None else set()
    columns = existing.columns if resume and existing is not None else None
    stream = cast(TextIO, RecordFile(fd, str(output)))
    return Target(stream, str(output), done, fresh, owned=True, columns=columns)
