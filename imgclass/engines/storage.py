"""Object store inputs (`s3://bucket/prefix/`, `gs://...`, `file:///...`) through pyarrow's filesystems.

Listing runs on the driver: a prefix is listed (recursively with --recursive),
sorted, and kept to image extensions, like a local folder; a pattern in the last
component (`s3://bucket/photos/*.jpg`) is matched against its folder. Reading
runs in the decode tasks, one filesystem per bucket and worker process.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from imgclass._util.text import first_line, printable
from imgclass.data.sources import is_image_name
from imgclass.errors import InputError, UsageError

_filesystems: dict[tuple[str, str, str], tuple[object, int]] = {}
_lock = threading.Lock()


def _split(uri: str) -> tuple[str, str]:
    base, _, query = uri.partition("?")
    return base, ("?" + query if query else "")


def _filesystem(uri: str):
    """(filesystem, path inside it), cached by scheme, bucket and options: an S3 client is costly to make."""
    import pyarrow.fs as pafs

    parts = urlsplit(uri)
    base, query = _split(uri)
    key = (parts.scheme, parts.netloc, query)
    with _lock:
        cached = _filesystems.get(key)
    if cached is not None:
        fs, skip = cached
        return fs, base[skip:]
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, ImportError) as err:
        raise UsageError(f"{printable(uri)}: {first_line(err)}") from None
    if base.endswith(path):
        with _lock:
            _filesystems[key] = (fs, len(base) - len(path))
    return fs, path


def list_uri(uri: str, recursive: bool = False) -> Iterator[str]:
    """The image URIs under `uri` (a file, a prefix, or a pattern in its last component), sorted.

    A URI that names nothing is yielded as it is: reading it fails, and that input gets an error record.
    """
    import pyarrow.fs as pafs

    fs, path = _filesystem(uri)
    base, query = _split(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        yield uri
        return
    pattern = None
    if info.type != pafs.FileType.Directory:
        folder, _, last = path.rstrip("/").rpartition("/")
        if not set("*?[") & set(last) or not folder:
            yield uri
            return
        pattern, path, base = last, folder, base[: len(base) - len(last)]
    selector = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
    try:
        files = sorted(c.path for c in fs.get_file_info(selector) if c.type == pafs.FileType.File)
    except UnicodeDecodeError:
        raise UsageError(
            f"{printable(uri)}: holds a name that is not UTF-8, which pyarrow cannot list; give a local folder as a path"
        ) from None
    root = base.rstrip("/")
    prefix = path.rstrip("/")
    found = False
    for child in files:
        name = child.rpartition("/")[2]
        if not is_image_name(name):
            continue
        if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
            continue
        found = True
        yield root + child[len(prefix) :] + query
    if not found and pattern is not None:
        yield uri


def read_uri(uri: str, name: str) -> bytes:
    """An object's bytes, or InputError with a one-line reason."""
    try:
        fs, path = _filesystem(uri)
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except UsageError as err:
        raise InputError(f"{name}: {err}") from None
    except FileNotFoundError:
        raise InputError(f"{name}: no such object") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not an image") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as err:
        first = first_line(err)
        raise InputError(f"{name}: cannot read object: {first}") from None
