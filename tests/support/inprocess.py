"""Run an `imgclass` command line inside the test process, with what a subprocess would see.

`imgclass.cli.run` takes its streams from an injected `Environment`; this builds one on
byte buffers with the encodings and error handlers the entry point gives a real process
(stdout and stderr in UTF-8 with backslashreplace), and for the run alone sets the
environment variables, the working directory and `sys.std*` (Typer prints help and
completions there). Everything is put back afterwards, so runs stay independent:
os.environ, cwd, the standard streams, warning filters and signal handlers.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _buffer() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    """As `subprocess.run(text=True)` decodes a pipe: UTF-8, universal newlines."""
    stream.flush()
    data = stream.buffer.getvalue()  # type: ignore[attr-defined]
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


@contextmanager
def _environment(changes: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _cwd(path: str | os.PathLike | None) -> Iterator[None]:
    before = os.getcwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def _streams(stdin, stdout, stderr) -> Iterator[None]:
    from PIL import Image

    saved = sys.stdin, sys.stdout, sys.stderr
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    pixel_limit = Image.MAX_IMAGE_PIXELS  # a run sets Pillow's limit for itself (--max-pixels), as a process would
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # as a process would (pytest records them otherwise)
            yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        Image.MAX_IMAGE_PIXELS = pixel_limit
        for s, handler in handlers.items():
            if handler is not None:
                signal.signal(s, handler)


def run_in_process(
    args: Sequence[str], env: Mapping[str, str] | None = None, input: str | None = None, cwd=None
) -> subprocess.CompletedProcess:
    from imgclass.cli.app import run
    from imgclass.cli.environment import Environment

    stdout, stderr = _buffer(), _buffer()
    raw_in = io.BytesIO((input or "").encode("utf-8", "surrogateescape"))
    stdin = io.TextIOWrapper(raw_in, encoding="utf-8", errors="surrogateescape")
    with _environment(env or {}), _cwd(cwd), _streams(stdin, stdout, stderr):
        code = run(list(args), env=Environment(stdin=stdin, stdout=stdout, stderr=stderr))
    return subprocess.CompletedProcess(["imgclass", *args], code, _text(stdout), _text(stderr))
