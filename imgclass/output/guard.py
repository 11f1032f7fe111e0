"""The one guard every file imgclass writes passes before any work is done.

`guard(path, kind, ...)` refuses, with `OutputRefused` (exit 2, one line naming the file):

- a symlink at the output path (its target is never written through);
- an input: one of the files given (same device and inode, or the same resolved path),
  or an image that the run would read from an input folder;
- an existing file that is not this command's own kind of output (a photo, a
  spreadsheet, someone's notes), whatever else is asked;
- an existing output of the same kind, unless asked to replace it (`force`) or, where
  the kind can be continued, to add to it (`resume`).

`JobLock` holds the advisory lock (fcntl.flock, non-blocking: a second writer is
refused, it does not wait) and the job header of a resumable output, a small JSON file
beside it (`.NAME.imgclass-job`) that says which model, preset and options wrote it, so
that resuming with another model or other options is refused naming the difference.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclass._util.text import printable
from imgclass.errors import OutputError, UsageError, describe_os_error

# What the front end may offer as the way out: it words each one (the library names no flags).
REMEDY_FORCE = "force"  # ask to replace it
REMEDY_RESUME = "resume"  # ask to go on with it, or to replace it
REMEDY_OTHER = "other"  # remove it first, or choose another path
REMEDY_WAIT = "wait"  # another process is writing it
REMEDY_RESTART = "restart"  # choose another path, or ask to replace it
REMEDY_ELSEWHERE = "elsewhere"  # choose another path (it is an input)


class OutputRefused(UsageError):
    """An output path imgclass will not write (exit 2); `remedy` is one of the REMEDY_* names."""

    def __init__(self, path: Path | str, reason: str, remedy: str, option: str = "output"):
        self.path, self.reason, self.remedy, self.option = Path(path), reason, remedy, option
        super().__init__(f"{option} {printable(str(path))}: {reason}")


@dataclass(frozen=True)
class Kind:
    """A kind of output: its name in messages and how an existing file of that kind is recognised."""

    name: str
    looks_like: Callable[[Path], bool]
    resumable: bool = False


def _head(path: Path, size: int = 1 << 16) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as err:
        raise OutputError(f"{printable(str(path))}: {describe_os_error(err)}") from None


def _records(path: Path) -> bool:
    from imgclass.output.sinks import _looks_like_ours

    return _looks_like_ours(path)


def _report(path: Path) -> bool:
    head = _head(path, 4096).lstrip().lower()
    mark = b'name="generator" content="imgclass' in head or b"<title>imgclass" in head  # earlier reports: the title
    return head.startswith(b"<!doctype html>") and mark


def _png(path: Path) -> bool:
    head = _head(path, 4096)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"imgclass" in head


def _npy(path: Path) -> bool:
    return _head(path, 8).startswith(b"\x93NUMPY")


def _model(path: Path) -> bool:
    """An ONNX file: protobuf field 1 (ir_version, a varint) first, and an `.onnx` name."""
    return path.suffix.lower() == ".onnx" and _head(path, 1) == b"\x08"


def _vectors_jsonl(path: Path) -> bool:
    first = _head(path).split(b"\n", 1)[0]
    try:
        item = json.loads(first)
    except ValueError:
        return False
    return isinstance(item, dict) and {"path", "vector"} <= item.keys()


def _paths_list(path: Path) -> bool:
    """A paths list is ours when the .npy it belongs to is (it is written beside one)."""
    name = path.name[: -len(".paths.txt")] if path.name.endswith(".paths.txt") else None
    npy = path.with_name(f"{name}.npy") if name is not None else None
    return npy is not None and npy.is_file() and _npy(npy)


RECORDS = Kind("imgclass output", _records, resumable=True)
REPORT = Kind("imgclass HTML report", _report)
HEAT_MAP = Kind("imgclass heat map", _png)
RAW_MAP = Kind("imgclass raw map (.npy)", _npy)
MODEL = Kind("ONNX model", _model)
VECTORS_NPY = Kind("imgclass vectors file", _npy, resumable=True)
VECTORS_JSONL = Kind("imgclass vectors file", _vectors_jsonl, resumable=True)
VECTORS_PARQUET = Kind("Parquet file", lambda p: _head(p, 4) == b"PAR1")
PATHS_LIST = Kind("imgclass paths list", _paths_list, resumable=True)
SHARD = Kind("imgclass shard", _records, resumable=True)


@dataclass
class Inputs:
    """What a run reads, to tell an output that is one of its inputs."""

    files: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino)
    resolved: set[str] = field(default_factory=set)
    folders: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    recursive: bool = False

    @classmethod
    def of(cls, items: Iterable[str | os.PathLike], recursive: bool = False) -> Inputs:
        found = cls(recursive=recursive)
        for item in items:
            if str(item) == "-":
                continue
            try:
                st = os.stat(item)
            except (OSError, ValueError):
                continue
            if stat.S_ISDIR(st.st_mode):
                found.folders.append(((st.st_dev, st.st_ino), os.path.realpath(item)))
            else:
                found.files.add((st.st_dev, st.st_ino))
                found.resolved.add(os.path.realpath(item))
        return found

    def holds(self, path: Path, st: os.stat_result) -> bool:
        """`path` (an existing file) is one of the inputs, or an image the run would read from an input folder."""
        from imgclass.data.sources import is_image_name

        if (st.st_dev, st.st_ino) in self.files or os.path.realpath(path) in self.resolved:
            return True
        if not self.folders or not is_image_name(path.name):
            return False
        parent = path.parent if str(path.parent) else Path(".")
        chain = [parent, *parent.resolve().parents] if self.recursive else [parent]
        for folder in chain:
            try:
                fst = os.stat(folder)
            except OSError:
                continue
            here = ((fst.st_dev, fst.st_ino), os.path.realpath(folder))
            if any(here[0] == ident or here[1] == real for ident, real in self.folders):
                return True
        return False


def guard(path: Path, kind: Kind, *, inputs: Inputs | None = None, force: bool = False, resume: bool = False,
          option: str = "output") -> bool:  # fmt: skip
    """Check `path` may be written as `kind` (see the module docstring); True when there is something there.

    A path that is not a regular file (/dev/null, a pipe) is left to the writer.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise OutputError(f"{option} {printable(str(path))}: {describe_os_error(err)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputRefused(path, "is a symlink; imgclass never writes through one", REMEDY_OTHER, option)
    if stat.S_ISDIR(st.st_mode):
        raise OutputRefused(path, "is a directory; give a file name", REMEDY_OTHER, option)
    if not stat.S_ISREG(st.st_mode):
        return False
    if inputs is not None and inputs.holds(path, st):
        raise OutputRefused(path, "is one of the inputs; it would be overwritten", REMEDY_ELSEWHERE, option)
    if st.st_size == 0:
        return True
    if not kind.looks_like(path):
        refusal = "cannot resume into it" if resume else "refusing to overwrite it"
        raise OutputRefused(path, f"exists and is not an {kind.name}; {refusal}", REMEDY_OTHER, option)
    if resume and kind.resumable:
        return True
    if not force:
        remedy = REMEDY_RESUME if kind.resumable else REMEDY_FORCE
        raise OutputRefused(path, f"exists (an {kind.name})", remedy, option)
    return True


def guard_folder(folder: Path, names: Iterable[str], kind: Kind, *, inputs: Inputs | None = None,
                 force: bool = False, option: str = "output") -> None:  # fmt: skip
    """Guard each file `names` will be written as in `folder` (a folder of outputs, e.g. heat maps)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise OutputRefused(folder, "is a symlink; imgclass never writes through one", REMEDY_OTHER, option)
    for name in names:
        guard(folder / name, kind, inputs=inputs, force=force, option=option)


def job_file(path: Path) -> Path:
    """Where the job header and lock of a resumable output live: `.NAME.imgclass-job` beside it."""
    return path.with_name(f".{path.name}.imgclass-job")


class JobLock:
    """The advisory lock on one output, and its job header (see the module docstring).

    `acquire` refuses at once when another process holds it; `check` compares the job
    header with `job` for --resume; `commit` writes `job` as the header. Release with `release`.
    """

    def __init__(self, output: Path, option: str = "output", path: Path | None = None):
        self.output, self.option, self.path = output, option, path or job_file(output)
        self.fd: int | None = None

    def acquire(self) -> JobLock:
        import fcntl

        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as err:
            if os.path.islink(self.path):
                raise OutputRefused(self.path, "is a symlink; imgclass never writes through one", REMEDY_OTHER,
                                    self.option) from None  # fmt: skip
            raise OutputError(f"{self.option} {printable(str(self.output))}: {describe_os_error(err)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputRefused(self.output, "is being written by another imgclass process", REMEDY_WAIT,
                                self.option) from None  # fmt: skip
        self.fd = fd
        return self

    def header(self) -> dict[str, Any] | None:
        assert self.fd is not None
        data = b""
        os.lseek(self.fd, 0, os.SEEK_SET)
        while chunk := os.read(self.fd, 1 << 16):
            data += chunk
        try:
            found = json.loads(data) if data.strip() else None
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def check(self, job: Mapping[str, Any]) -> None:
        """For --resume: the output was written by the same job, or refused naming what differs."""
        held = self.header()
        if held is None:
            return  # written before job headers existed: what the records say is checked by the reader
        differ = [key for key in sorted(set(held) | set(job)) if held.get(key) != job.get(key) and key != "model"]
        if differ:
            shown = "; ".join(_difference(key, held, job) for key in differ[:3])
            raise OutputRefused(self.output, f"was written by another job ({shown}); cannot resume into it",
                                REMEDY_RESTART, self.option)  # fmt: skip

    def commit(self, job: Mapping[str, Any]) -> None:
        assert self.fd is not None
        data = (json.dumps(dict(job), sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
        try:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
            os.write(self.fd, data)
        except OSError as err:
            raise OutputError(f"{self.option} {printable(str(self.output))}: {describe_os_error(err)}") from None

    def release(self) -> None:
        if self.fd is not None:
            if not os.path.lexists(self.output):
                self.path.unlink(missing_ok=True)  # nothing was written: no header to keep
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def _difference(key: str, held: Mapping[str, Any], job: Mapping[str, Any]) -> str:
    if key == "model_sha256":
        before, now = held.get("model"), job.get("model")
        return f"model {_show(before)} there, {_show(now) if now != before else 'other bytes under that name'} now"
    return f"{key} {_show(held.get(key))} there, {_show(job.get(key))} now"


def _show(value: Any) -> str:
    return "(none)" if value is None else printable(json.dumps(value, ensure_ascii=False))[:80]
