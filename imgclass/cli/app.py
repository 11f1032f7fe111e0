"""The `imgclass` command: the Typer app, and the one place errors become exit codes.

`run()` builds the click command with `typer.main.get_command` and parses and invokes it
without standalone mode, so neither Typer nor its click decides an exit code behind our
back (Typer's own entry turns a broken pipe into 1 and catches Ctrl-C itself). Every
exception goes through `errors.exit_code_for`; the user sees one line, a traceback only
with --debug.
"""

from __future__ import annotations

import errno
import functools
import importlib
import io
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, NoReturn, TextIO, cast

import typer
import typer.main
from typer import _click as click  # Typer's vendored click: the exceptions parsing raises

from imgclass._util.interrupt import Interrupted, raise_on_signals
from imgclass.cli import helpcache
from imgclass.cli import params as p
from imgclass.cli.environment import Environment
from imgclass.data.sources import NoImagesFound
from imgclass.errors import ExitCode, ImgclassError, exit_code_for
from imgclass.output.guard import OutputRefused

HELP_OPTIONS = ("-h", "--help")
CONTEXT = {"help_option_names": list(HELP_OPTIONS), "max_content_width": 100}
PROG = "imgclass"
COMPLETE_VAR = "_IMGCLASS_COMPLETE"

ROOT_SETTINGS: dict[str, Any] = {
    "name": PROG,
    "help": "Classify images with ONNX exports of Inception v3, ResNet and other ImageNet CNNs.",
    "epilog": "\b\nExamples:\n  imgclass predict cat.jpg\n  imgclass batch photos/ -o results.jsonl",
    "context_settings": CONTEXT,
    "rich_markup_mode": "rich",
    "pretty_exceptions_enable": False,
}

# Each top-level command (in the order --help lists them): its module under imgclass.cli, the function
# or sub-app, and the examples ending its help. A command line imports only the module it names.
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "predict": ("classify", "predict", "PREDICT_EXAMPLES"),
    "batch": ("classify", "batch", "BATCH_EXAMPLES"),
    "evaluate": ("learn", "evaluate", "EVALUATE_EXAMPLES"),
    "explain": ("explain", "explain", "EXPLAIN_EXAMPLES"),
    "embed": ("transfer", "embed", "EMBED_EXAMPLES"),
    "train": ("transfer", "train", "TRAIN_EXAMPLES"),
    "models": ("models", "models", None),
    "cache": ("cache", "cache", None),
    "bench": ("tools", "bench", "BENCH_EXAMPLES"),
    "info": ("tools", "info", "INFO_EXAMPLES"),
    "serve": ("serve", "serve", "SERVE_EXAMPLES"),
}


def _register(app: typer.Typer, name: str) -> None:
    module_name, attribute, examples = COMMANDS[name]
    module = importlib.import_module(f"imgclass.cli.{module_name}")
    target = getattr(module, attribute)
    if isinstance(target, typer.Typer):
        app.add_typer(target)
    else:
        app.command(epilog=getattr(module, examples) if examples else None)(target)


def root(version: p.Version = False) -> None:
    """Classify images with ONNX exports of Inception v3, ResNet and other ImageNet CNNs."""


def make_app(only: str | None = None) -> typer.Typer:
    """The `imgclass` Typer app with every command, or with only the one named (what one command line needs)."""
    made = typer.Typer(**ROOT_SETTINGS)
    made.callback()(root)
    for name in COMMANDS:
        if only is None or name == only:
            _register(made, name)
    return made


@functools.cache
def command(only: str | None = None) -> click.Command:
    """The click command Typer builds from the app (once per process and command).

    Building every command's parameters costs more than the rest of `predict --help`;
    a command line that names a command builds that one only. Root help, completion and
    unknown names get the whole app.
    """
    return typer.main.get_command(make_app(only))


def run(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run one command line; returns the exit code (never raises, never exits)."""
    env = env or Environment()
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    warnings.simplefilter("ignore")  # Pillow's and numpy's warnings are for developers: --debug shows them
    instruction = os.environ.get(COMPLETE_VAR)
    cli = command(None if instruction or args[0] not in COMMANDS else args[0])
    try:
        with _rich_help(args, env):
            if instruction:
                from typer.completion import shell_complete

                return shell_complete(cli, {}, PROG, COMPLETE_VAR, instruction)
            with raise_on_signals(), cli.make_context(PROG, args, obj=env) as ctx:
                return int(cli.invoke(ctx) or 0)
    except typer.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        env.err(f"error: {exc.format_message()} (see: {' '.join(filter(None, (PROG, _command_name(args), '--help')))})")
        return ExitCode.USAGE
    except typer.Abort:
        return ExitCode.SIGINT
    except SystemExit as exc:  # Typer's --install-completion and --show-completion end this way
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException as exc:  # noqa: BLE001 - the one place every failure becomes an exit code
        return _report(env, exc)


@contextmanager
def _rich_help(args: list[str], env: Environment) -> Iterator[None]:
    """For a --help: load Typer's rich help lightly, and apply --color and NO_COLOR (Typer renders help
    before --color is parsed). Help to a pipe has no escape codes."""
    if not any(arg in HELP_OPTIONS for arg in args):
        yield
        return
    rich_utils = _rich_utils()
    choice = env.color
    for i, arg in enumerate(args):
        if arg == "--color" and i + 1 < len(args):
            choice = args[i + 1].lower()
        elif arg.startswith("--color="):
            choice = arg.split("=", 1)[1].lower()
    saved = rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM
    render = rich_utils.rich_format_help

    def rendered(*args: Any, **kwargs: Any) -> Any:
        helpcache.mark_rendered()  # the line really ended in a help page: only such output is kept
        return render(*args, **kwargs)

    rich_utils.rich_format_help = rendered
    if choice == "always":
        rich_utils.FORCE_TERMINAL = True
    elif choice == "never" or env.no_color or not env.stdout_isatty:
        rich_utils.COLOR_SYSTEM = None
    try:
        yield
    finally:
        rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM = saved
        rich_utils.rich_format_help = render


class _Unused:
    """Stands in for a rich class Typer's help module imports but imgclass never renders."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise RuntimeError("imgclass renders help in rich markup mode, without Markdown or rich tracebacks")


def _rich_utils() -> Any:
    """`typer.rich_utils`, imported without rich.markdown (markdown-it) and rich.traceback (pygments).

    That module imports both at its top, about as long as the rest of `predict --help`; they serve
    markup mode "markdown" and pretty tracebacks, neither of which imgclass uses. They are stood in
    for while it loads, then taken out of sys.modules, so a later import gets the real modules.
    """
    if "typer.rich_utils" in sys.modules:
        return sys.modules["typer.rich_utils"]
    stand_ins = {}
    for name, attribute in (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback")):
        if name not in sys.modules:
            stand_ins[name] = ModuleType(name)
            setattr(stand_ins[name], attribute, _Unused)
    sys.modules.update(stand_ins)
    try:
        from typer import rich_utils
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return rich_utils


def _command_name(args: list[str]) -> str:
    words = [a for a in args[:2] if not a.startswith("-")]
    return " ".join(words[:2] if words[:1] in (["models"], ["cache"]) else words[:1]).strip() or ""


# How the CLI words the way out of an OutputRefused (the library names no flags).
REMEDIES = {
    "force": "add --force to replace it",
    "resume": "add --resume to go on with it, or --force to start it again",
    "restart": "choose another path, or add --force to start it again",
    "other": "remove it first, or choose another path",
    "elsewhere": "choose another path",
    "wait": "wait for the other run to end, or choose another path",
}


def flag(name: str) -> str:
    """The command-line flag of a setting a library message names (errors.option): `crop-pct` -> `--crop-pct`."""
    return "--" + name.replace("_", "-")


def message(exc: BaseException) -> str:
    """An exception's one line as the CLI shows it: the library's settings named by their flags."""
    return exc.render(flag) if isinstance(exc, ImgclassError) else str(exc)


def _report(env: Environment, exc: BaseException) -> int:
    code = exit_code_for(exc)
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return code
    if env.debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=env.stderr)
    if isinstance(exc, Interrupted):
        env.err(message(exc))
    elif isinstance(exc, NoImagesFound):
        env.err(f"error: {message(exc)}" + ("; add -r (--recursive) to read them" if exc.nested else ""))
    elif isinstance(exc, OutputRefused):
        env.err(f"error: {message(exc)}; {REMEDIES[exc.remedy]}")
    elif isinstance(exc, ImgclassError):
        env.err(f"error: {message(exc)}")
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
