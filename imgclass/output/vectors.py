"""Where `embed` writes vectors: .npy (+ a paths list), .jsonl or .parquet; --resume for .npy and .jsonl.

- `OUT.npy`: a float32 array [images, dim], row i the vector of line i of `OUT.paths.txt`
  (one path per line, next to it; control characters in a path shown as \\xNN escapes). An
  image that fails has no row: it is reported (stderr) and counted (exit 1), and `--resume`
  tries it again. Rows go to a temporary file as they come; the array is written whole when
  the run ends, however it ends (a signal included), so the two files always agree.
- `.jsonl`: one object per line: {"path", "model", "vector": [...] or null, "error": null or why},
  as `batch` writes records: a failed image is a line with its error; `--resume` skips it.
- `.parquet`: columns path, model, vector (list<float32>), error; needs pyarrow
  (`pip install 'imgclass[parquet]'`). No --resume.

Sinks have the interface of `output.Sink`: `start()`, `write(embedding)`, `close()` (in `finally`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from imgclass._util.fs import create_new, temp_name
from imgclass._util.text import printable
from imgclass.errors import MissingExtra, OutputError, UsageError, describe_os_error
from imgclass.output.sinks import Sink

if TYPE_CHECKING:
    from imgclass.inference.embedding import Embedding

VECTOR_FORMATS = ("npy", "jsonl", "parquet")
RESUMABLE = ("npy", "jsonl")
_EXTENSIONS = {".npy": "npy", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def vector_format(fmt: str | None, output: Path | None) -> str:
    """--format, else the --output extension; jsonl on stdout. npy and parquet need a file."""
    if fmt is None:
        if output is None:
            return "jsonl"
        found = _EXTENSIONS.get(output.suffix.lower())
        if found is None:
            raise UsageError(f"«output» {printable(str(output))}: name it .npy, .jsonl or .parquet, or give «format»")
        fmt = found
    fmt = fmt.lower()
    if fmt not in VECTOR_FORMATS:
        raise UsageError(f"«format» {fmt!r}: choose one of {', '.join(VECTOR_FORMATS)}")
    if output is None and fmt != "jsonl":
        raise UsageError(f"«format» {fmt} writes a file: give «output» FILE")
    return fmt


def paths_file(output: Path) -> Path:
    """The paths list next to an .npy file: `vectors.npy` -> `vectors.paths.txt`."""
    stem = output.name[: -len(".npy")] if output.name.lower().endswith(".npy") else output.name
    return output.with_name(stem + ".paths.txt")


def listed(path: str) -> str:
    """How a path is written in a paths list: one line, non-UTF-8 bytes and control characters as \\xNN."""
    return printable(os.fsencode(path).decode("utf-8", "backslashreplace"))


def resume_key(fmt: str):
    """How `done` names an input for `fmt`: its line in the paths list (npy), or its exact bytes."""
    if fmt == "npy":
        return lambda path: listed(path).encode("utf-8")
    return os.fsencode


def _original(record: Any) -> str:
    """The input's own name (any bytes), not its display form."""
    return record.item if isinstance(record.item, str) else record.path


def vector_json(embedding: Embedding) -> str:
    """One jsonl line; each float32 is written in its shortest form that reads back to the same float32."""
    import numpy as np

    from imgclass.data.sources import path_bytes

    data = embedding.to_dict()
    raw = path_bytes(_original(embedding))
    if raw is not None:
        data["path_bytes"] = raw  # a name that is not UTF-8, exactly (as records carry it)
    if embedding.vector is not None:
        data["vector"] = [float(str(v)) if np.isfinite(v) else None for v in embedding.vector]
    return json.dumps(data, ensure_ascii=False) + "\n"


class JsonlVectors(Sink):
    def write(self, record: Any) -> None:
        self._emit(vector_json(record))


@dataclass
class VectorTarget:
    """An opened embed output: its sink, and the paths it already holds (--resume)."""

    sink: Any
    done: set[bytes] = field(default_factory=set)  # the inputs a jsonl file holds (their exact bytes)
    stream: TextIO | None = None  # a jsonl file we opened (closed by `close`)

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError as err:
                raise OutputError(
                    f"{printable(self.sink.name)}: cannot write vectors: {describe_os_error(err)}"
                ) from None


def open_vectors(
    output: Path | None, fmt: str, resume: bool, stdout: TextIO, dim: int, model: str = ""
) -> VectorTarget:
    """The sink for `fmt` at `output` (stdout for jsonl without one); with `resume`, what it holds already.

    `model`: a jsonl file whose records name another model is refused for `resume`.
    """
    if resume and output is None:
        raise UsageError("«resume» needs «output» FILE")
    if resume and fmt not in RESUMABLE:
        raise UsageError(f"«resume» works with {' and '.join(RESUMABLE)} output, not {fmt}")
    if fmt == "npy":
        assert output is not None
        return VectorTarget(NpyVectors(output, dim, resume))
    if fmt == "parquet":
        assert output is not None
        return VectorTarget(ParquetVectors(output))
    if output is None:
        return VectorTarget(JsonlVectors(stdout, "stdout"))
    done = _jsonl_done(output, dim, model) if resume else set()
    try:
        handle = open(output, "a" if resume else "w", encoding="utf-8", errors="backslashreplace")
    except OSError as err:
        raise OutputError(f"«output» {printable(str(output))}: {describe_os_error(err)}") from None
    return VectorTarget(JsonlVectors(handle, str(output)), done, handle)


def _jsonl_done(path: Path, dim: int, model: str = "") -> set[bytes]:
    """Paths already in a vectors jsonl file; a trailing partial line is cut off; anything else is refused."""
    if not path.exists():
        return set()
    try:
        data = path.read_bytes()
    except OSError as err:
        raise OutputError(f"«output» {printable(str(path))}: {describe_os_error(err)}") from None
    complete = data[: data.rfind(b"\n") + 1]
    from imgclass.data.sources import record_key

    done: set[bytes] = set()
    for number, line in enumerate(complete.decode("utf-8", errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            vector = item["vector"]
            ok = isinstance(item["path"], str) and (vector is None or isinstance(vector, list))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UsageError(f"{printable(str(path))}:{number}: not an imgclass vector record; cannot resume into it")
        if model and item.get("model") not in (None, model):
            raise UsageError(f"{printable(str(path))}:{number}: holds vectors of the model {printable(str(item['model']))}, "
                             f"not {printable(model)}; write to another file")  # fmt: skip
        if vector is not None and len(vector) != dim:
            raise UsageError(f"{printable(str(path))}:{number}: holds {len(vector)}-d vectors and this model "
                             f"gives {dim}-d ones; write to another file")  # fmt: skip
        done.add(record_key(item["path"], item.get("path_bytes")))
    if len(complete) != len(data):
        with open(path, "rb+") as handle:
            handle.truncate(len(complete))
    return done


class NpyVectors:
    """OUT.npy + OUT.paths.txt, written whole at `close`; rows wait in a temporary file next to OUT."""

    def __init__(self, output: Path, dim: int, resume: bool = False):
        self.output, self.dim, self.name = output, dim, str(output)
        self.paths_file = paths_file(output)
        self.old_paths: list[str] = self._held() if resume else []
        self.done = set(self.old_paths)
        self.paths: list[str] = []
        self._rows: Any = None

    def _held(self) -> list[str]:
        import numpy as np

        if not self.output.exists():
            return []
        where = printable(str(self.output))
        try:
            held = np.load(self.output, mmap_mode="r")
            paths = self.paths_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UsageError(
                f"{where}: its paths list {printable(str(self.paths_file))} is missing; cannot resume"
            ) from None
        except (OSError, ValueError) as err:
            raise UsageError(f"{where}: not a readable .npy array ({err}); cannot resume into it") from None
        if held.ndim != 2 or held.shape[1] != self.dim or held.dtype != np.float32:
            raise UsageError(f"{where}: holds {held.dtype} {list(held.shape)} and this model gives {self.dim}-d "
                             "float32 vectors; write to another file")  # fmt: skip
        if len(paths) != held.shape[0]:
            raise UsageError(f"{where}: {held.shape[0]} rows but {len(paths)} paths in "
                             f"{printable(str(self.paths_file))}; cannot resume")  # fmt: skip
        return paths

    def start(self) -> None:
        try:
            self._rows = tempfile.NamedTemporaryFile(dir=self.output.parent or ".", prefix=f".{self.output.name}.",
                                                     suffix=".part", delete=False)  # fmt: skip
        except OSError as err:
            raise OutputError(f"«output» {printable(self.name)}: {describe_os_error(err)}") from None

    def write(self, record: Any) -> None:
        import numpy as np

        if record.vector is None:
            return  # failed: no row (reported and counted by the job; --resume tries it again)
        try:
            self._rows.write(np.ascontiguousarray(record.vector, "<f4").tobytes())
        except OSError as err:
            raise OutputError(f"{printable(self.name)}: cannot write vectors: {describe_os_error(err)}") from None
        self.paths.append(listed(_original(record)))

    def close(self) -> None:
        if self._rows is None:
            return
        rows, self._rows = self._rows, None
        try:
            rows.close()
            self._assemble(Path(rows.name))
        except OSError as err:
            raise OutputError(f"{printable(self.name)}: cannot write vectors: {describe_os_error(err)}") from None
        finally:
            Path(rows.name).unlink(missing_ok=True)

    def _assemble(self, rows: Path) -> None:
        import shutil

        import numpy as np

        from imgclass._util.fs import atomic_write, write_atomically

        count = len(self.old_paths) + len(self.paths)
        with atomic_write(self.output) as out:
            header = {"descr": "<f4", "fortran_order": False, "shape": (count, self.dim)}
            np.lib.format.write_array_header_1_0(out, header)
            if self.old_paths:
                out.write(np.ascontiguousarray(np.load(self.output, mmap_mode="r"), "<f4").tobytes())
            with open(rows, "rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
        write_atomically(self.paths_file, "".join(p + "\n" for p in (*self.old_paths, *self.paths)))


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingExtra("parquet", "«format» parquet") from None


class ParquetVectors:
    """path, model, vector (list<float32>), error; written to a temporary file, renamed into place at `close`."""

    BATCH = 256

    def __init__(self, output: Path):
        require_pyarrow()
        self.output, self.name = output, str(output)
        self._tmp = temp_name(output)
        self._writer: Any = None
        self._rows: list[Any] = []

    def start(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("path", pa.string()), ("model", pa.string()), ("vector", pa.list_(pa.float32())),
                            ("error", pa.string())])  # fmt: skip
        try:
            os.close(create_new(self._tmp))  # claimed with O_EXCL|O_NOFOLLOW: never a planted symlink
            self._writer = pq.ParquetWriter(os.fspath(self._tmp), schema)
        except OSError as err:
            raise OutputError(f"«output» {printable(self.name)}: {describe_os_error(err)}") from None

    def write(self, record: Any) -> None:
        self._rows.append(record)
        if len(self._rows) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        rows, self._rows = self._rows, []
        if not rows:
            return
        table = pa.table(
            {
                "path": [r.path for r in rows],
                "model": [r.model for r in rows],
                "vector": pa.array([None if r.vector is None else r.vector for r in rows], pa.list_(pa.float32())),
                "error": [r.error for r in rows],
            },
            schema=self._writer.schema,
        )
        try:
            self._writer.write_table(table)
        except OSError as err:
            raise OutputError(f"{printable(self.name)}: cannot write vectors: {describe_os_error(err)}") from None

    def close(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            self._writer = writer
            self._flush()
            writer.close()
            os.replace(self._tmp, self.output)
        except OSError as err:
            raise OutputError(f"{printable(self.name)}: cannot write vectors: {describe_os_error(err)}") from None
        finally:
            self._writer = None
            self._tmp.unlink(missing_ok=True)
