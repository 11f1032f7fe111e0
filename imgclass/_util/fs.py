"""Writing files whole: the one atomic writer every file imgclass writes goes through.

`atomic_write(path)` hands out a temporary file created next to `path` with
O_CREAT|O_EXCL|O_NOFOLLOW (so never through a symlink an attacker planted under the
temporary name), and on success flushes it, fsyncs it and renames it over `path`
with `os.replace` (which replaces a symlink at `path` itself, never its target). On
any failure, a signal included, the temporary file is removed and `path` is left
as it was. The file gets the umask's permissions (0o666 & ~umask), unlike mkstemp's
0600.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_counter = itertools.count()
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def temp_name(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden name next to `path` that no other process or thread uses: `.NAME.PID.N.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident() % 10**6}.{next(_counter)}{suffix}")


def create_new(path: Path, mode: int = 0o666) -> int:
    """A new file at `path`, opened for writing: refused (FileExistsError) when anything is there, a symlink included."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)


@contextmanager
def atomic_write(path: Path | str, text: bool = False, encoding: str = "utf-8", errors: str = "strict",
                 fsync: bool = True) -> Iterator[IO[Any]]:  # fmt: skip
    """Write `path` whole or not at all (see the module docstring); yields a file object (binary unless `text`)."""
    path = Path(path)
    tmp = temp_name(path)
    fd = create_new(tmp)
    try:
        handle: IO[Any] = (
            os.fdopen(fd, "w", encoding=encoding, errors=errors, newline="") if text else os.fdopen(fd, "wb")
        )
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path | str, data: bytes | str, encoding: str = "utf-8", errors: str = "strict") -> None:
    """`data` into `path` through `atomic_write`."""
    with atomic_write(path, text=isinstance(data, str), encoding=encoding, errors=errors) as handle:
        handle.write(data)


def copy_atomically(source: Path | str, path: Path | str, chunk: int = 1 << 20) -> None:
    """A copy of `source` at `path`, through `atomic_write`."""
    import shutil

    with open(source, "rb") as reader, atomic_write(path) as handle:
        shutil.copyfileobj(reader, handle, chunk)
