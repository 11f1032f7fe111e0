"""The `imgclass` command: the root group, and the one place errors become exit codes.

`run()` parses and invokes without click's standalone mode, so neither click nor
anything else decides an exit code behind our back (click would turn a broken pipe
into 1 and Ctrl-C into its own abort). Every exception goes through
`errors.exit_code_for`; the user sees one line, a traceback only with --debug.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import NoReturn, TextIO, cast

import click

from imgclass._util.interrupt import Interrupted, raise_on_signals
from imgclass._util.version import __version__
from imgclass.cli.cache import cache
from imgclass.cli.classify import batch, predict
from imgclass.cli.environment import Environment
from imgclass.cli.explain import explain
from imgclass.cli.learn import evaluate
from imgclass.cli.models import models
from imgclass.cli.tools import bench, info
from imgclass.cli.transfer import embed, train
from imgclass.data.sources import NoImagesFound
from imgclass.errors import ExitCode, ImgclassError, exit_code_for
from imgclass.output.guard import OutputRefused

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        env: Environment = ctx.obj
        env.stdout.write(f"imgclass {__version__}\n")
        ctx.exit(0)


@click.group(
    context_settings=CONTEXT,
    epilog="\b\nExamples:\n  imgclass predict cat.jpg\n  imgclass batch photos/ -o results.jsonl",
)
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_version, help="Show the version and exit."
)
def app() -> None:
    """Classify images with ONNX exports of Inception v3, ResNet and other ImageNet CNNs."""


for _command in (predict, batch, evaluate, explain, embed, train, models, cache, bench, info):
    app.add_command(_command)


def run(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run one command line; returns the exit code (never raises, never exits)."""
    env = env or Environment()
    args = list(sys.argv[1:] if argv is None else argv)
    warnings.simplefilter("ignore")  # Pillow's and numpy's warnings are for developers: --debug shows them
    try:
        if not args:
            env.stdout.write(app.get_help(click.Context(app, info_name="imgclass")) + "\n")
            return ExitCode.OK
        with raise_on_signals(), app.make_context("imgclass", args, obj=env) as ctx:
            return int(app.invoke(ctx) or 0)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        env.err(f"error: {exc.format_message()} (see: imgclass {_command_name(args)} --help)")
        return ExitCode.USAGE
    except click.exceptions.Abort:
        return ExitCode.SIGINT
    except BaseException as exc:  # noqa: BLE001 - the one place every failure becomes an exit code
        return _report(env, exc)


# How the CLI words the way out of an OutputRefused (the library names no flags).
REMEDIES = {
    "force": "add --force to replace it",
    "resume": "add --resume to go on with it, or --force to start it again",
    "other": "remove it first, or choose another path",
    "restart": "choose another path, or add --force to start it again",
    "elsewhere": "choose another path",
    "wait": "wait for the other run to end, or choose another path",
}


def _command_name(args: list[str]) -> str:
    words = [a for a in args[:2] if not a.startswith("-")]
    return " ".join(words[:2] if words[:1] in (["models"], ["cache"]) else words[:1]).strip() or ""


def _report(env: Environment, exc: BaseException) -> int:
    code = exit_code_for(exc)
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return code
    if env.debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=env.stderr)
    if isinstance(exc, Interrupted):
        env.err(str(exc))
    elif isinstance(exc, NoImagesFound):
        env.err(f"error: {exc}" + ("; add -r (--recursive) to read them" if exc.nested else ""))
    elif isinstance(exc, OutputRefused):
        env.err(f"error: {exc}; {REMEDIES[exc.remedy]}")
    elif isinstance(exc, ImgclassError):
        env.err(f"error: {exc}")
    elif isinstance(exc, KeyboardInterrupt):
        pass
    elif code == ExitCode.ENVIRONMENT:
        reason = (getattr(exc, "strerror", None) or str(exc)).lower()
        where = getattr(exc, "filename", None)
        env.err(f"error: {where + ': ' if where else ''}{reason}")
    else:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        hint = "" if env.debug else "; run with --debug for the traceback"
        env.err(f"internal error: {type(exc).__name__}: {first}{hint}")
    return code


def _silence_stdout() -> None:
    """After the reader went away: point stdout at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class ClosedStream(io.TextIOBase):
    """Stands for a standard stream that was closed when imgclass started: writing to it is an error (exit 4)."""

    def __init__(self, name: str):
        super().__init__()
        self._name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "closed", self._name)

    def flush(self) -> None:
        pass


def _hold_standard_fds() -> None:
    """Keep descriptors 0-2 taken (on /dev/null) when they were closed at start.

    Otherwise the first file imgclass opens would become "stdout" or "stderr", and a
    library that writes there (ONNX Runtime, libpng) would write into it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                held = os.open(os.devnull, os.O_RDWR)
                if held != fd:
                    os.dup2(held, fd)
                    os.close(held)
            except OSError:
                pass


def main() -> NoReturn:
    """Console-script entry point."""
    _hold_standard_fds()
    if hasattr(sys.stdout, "reconfigure"):
        try:
            sys.stdout.reconfigure(errors="backslashreplace")
        except (OSError, ValueError):
            pass
    stdout = sys.stdout if sys.stdout is not None else cast(TextIO, ClosedStream("stdout"))
    code = run(env=Environment(stdin=sys.stdin, stdout=stdout, stderr=sys.stderr))
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()
    if code > 128:
        # Stopped by a signal: records and files are closed already; do not wait for a
        # decode or a model run still going on another thread.
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)
