"""Expand command-line inputs (files, directories, globs, '-' for stdin) into image paths."""

from __future__ import annotations

import base64
import glob
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO, TextIO

from imgclass._util.text import printable
from imgclass.errors import UsageError

_GLOB_CHARS = set("*?[")


# Extensions of the formats Pillow decodes by itself (Image.registered_extensions(), less
# the stub formats that need an outside handler: BUFR, GRIB, HDF5, WMF/EMF, MPEG, EPS).
# Kept as data so that listing a folder does not load every Pillow plugin (~80 ms).
IMAGE_EXTENSIONS = frozenset(
    ".apng .avif .avifs .blp .bmp .bw .cur .dcx .dds .dib .fit .fits .flc .fli .ftc .ftu .gbr .gif .icb .icns "
    ".ico .iim .im .j2c .j2k .jfif .jp2 .jpc .jpe .jpeg .jpf .jpg .jpx .msp .pbm .pcd .pcx .pfm .pgm .png "
    ".pnm .ppm .psd .pxr .qoi .ras .rgb .rgba .sgi .tga .tif .tiff .vda .vst .webp .xbm .xpm".split()
)


# Containers PyAV (FFmpeg) reads, by extension: these files are classified frame by frame.
VIDEO_EXTENSIONS = frozenset(".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .m2ts .mts .wmv .flv .3gp .ogv".split())


def is_url(item: str) -> bool:
    """An http or https URL: an image fetched by the decode workers (no other scheme is)."""
    return item[:8].lower().startswith(("http://", "https://"))


def is_video_name(name: str) -> bool:
    return not is_url(name) and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def path_bytes(path: str) -> str | None:
    """The file name's bytes in base64 when they are not UTF-8 (a record's `path` cannot hold them), else None."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")
    return None


def path_key(path: str) -> bytes:
    """What identifies an input in an output file: the exact bytes of its name."""
    return os.fsencode(path)


def frame_key(key: bytes, frame: int | None) -> bytes:
    """What identifies one frame of a video in an output file: its file's key and the frame's index."""
    return key if frame is None else key + b"\0frame=%d" % frame


def record_key(path: str, raw: str | None) -> bytes:
    """The input a record was written for: `path_bytes` when the record has them, else `path` as UTF-8."""
    if raw:
        try:
            return base64.b64decode(raw, validate=True)
        except ValueError:
            pass
    return path.encode("utf-8", "surrogateescape")


def read_stdin_paths(stream: TextIO | BinaryIO | None, null: bool = False) -> Iterator[str]:
    """Paths from a list on stdin, any bytes allowed: one per line (a trailing CR dropped), or NUL-separated.

    Names are read as bytes and decoded like the file system does, so a name that is
    not UTF-8 still names its file. The list is read as it arrives (`find | imgclass`).
    """
    if stream is None:
        raise UsageError("'-' reads paths from stdin, but stdin is closed")
    separator = b"\0" if null else b"\n"
    pending = b""
    for chunk in _chunks(stream):
        pending += chunk
        *items, pending = pending.split(separator)
        yield from _names(items, null)
    yield from _names([pending], null)


def _chunks(stream) -> Iterator[bytes]:
    binary = getattr(stream, "buffer", stream)
    read = getattr(binary, "read1", None) or binary.read
    while True:
        chunk = read(1 << 16)
        if not chunk:
            return
        yield chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogateescape")


def _names(items: list[bytes], null: bool) -> Iterator[str]:
    for item in items:
        if not null and item.endswith(b"\r"):
            item = item[:-1]
        if item:
            yield os.fsdecode(item)


def _exists(item: str) -> bool:
    return os.path.lexists(item) or bool(_GLOB_CHARS & set(item) and glob.glob(item, recursive=True))


def check_inputs(inputs: Sequence[str]) -> None:
    """Before any model is loaded: refuse a run whose command-line inputs are all missing.

    A missing path among others is not an error here: it becomes an error record
    like any input that cannot be read, so the rest of the run goes on.
    """
    if not inputs:
        raise UsageError("no input: give image files, URLs, directories, globs, or '-' to read paths from stdin")
    if "-" in inputs or any(is_url(item) or _exists(item) for item in inputs):
        return
    shown = ", ".join(printable(item) for item in inputs[:3]) + (", ..." if len(inputs) > 3 else "")
    raise UsageError(f"no input: {shown}: no such file or directory")


def expand(
    inputs: Iterable[str],
    recursive: bool = False,
    stdin: TextIO | BinaryIO | None = None,
    null: bool = False,
    video: bool = False,
) -> Iterator[str]:
    """Yield image paths in a stable order: each argument in turn, each directory sorted.

    Explicit files are kept whatever their extension; directory and glob members
    are kept when Pillow knows their extension (case-insensitive). A path seen
    twice is yielded once. `-` reads a list of paths from `stdin` (NUL-separated with
    `null`, as `find -print0` writes them). A missing path, or a pattern that matches nothing, is
    yielded as it is: reading it fails, and that input gets an error record. An http(s) URL is
    yielded as it is (never globbed). `video`: directories and globs also yield video files.
    """
    seen: set[str] = set()
    for item in inputs:
        if item == "-":
            paths: Iterable[str] = read_stdin_paths(stdin if stdin is not None else sys.stdin, null)
        elif is_url(item):
            paths = [item]
        elif os.path.isdir(item):
            paths = _walk(item, recursive, video)
        elif _GLOB_CHARS & set(item) and not os.path.lexists(item):
            paths = _glob(item, recursive, video) or [item]
        else:
            paths = [item]
        for path in paths:
            if path not in seen:
                seen.add(path)
                yield path


def _wanted(name: str, video: bool) -> bool:
    return is_image_name(name) or (video and is_video_name(name))


def _glob(pattern: str, recursive: bool, video: bool = False) -> list[str]:
    matches = sorted(glob.glob(pattern, recursive=True))
    paths = [m for m in matches if not os.path.isdir(m) and _wanted(m, video)]
    for directory in (m for m in matches if os.path.isdir(m)):
        paths.extend(_walk(directory, recursive, video))
    return paths


def _walk(top: str, recursive: bool, video: bool = False) -> Iterator[str]:
    """Image files under `top`, sorted; symlinked directories followed once (no loops)."""
    visited: set[tuple[int, int]] = set()

    def visit(directory: str) -> Iterator[str]:
        try:
            st = os.stat(directory)
        except OSError:
            return
        if (st.st_dev, st.st_ino) in visited:
            return
        visited.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if recursive and _is_dir(entry):
                yield from visit(entry.path)
            elif _wanted(entry.name, video):
                yield entry.path

    yield from visit(top)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False
