"""The exception hierarchy the library raises, the exit-code table, and the one map between them.

The core raises these with a one-line message; only the CLI turns them into a
stderr line and an exit code, through `exit_code_for`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from enum import IntEnum

_OPTION = re.compile(r"\u00ab([a-z][a-z0-9_-]*)\u00bb")


def option(name: str) -> str:
    """How a library message names one of its settings, without naming a command-line flag.

    The message holds a marker; `str(err)` shows the keyword (`crop_pct`), and the CLI, which
    owns the flags, shows the flag (`--crop-pct`) through `ImgclassError.render`.
    """
    return f"\u00ab{name}\u00bb"


class ExitCode(IntEnum):
    """What `imgclass` exits with. Printed verbatim in docs/guide/batch.md; the troubleshooting page is generated from it."""

    OK = 0  # every input was classified
    INPUT_FAILED = 1  # at least one input failed; the others were classified
    USAGE = 2  # bad option or argument, no usable input, a missing optional extra
    MODEL = 3  # the model cannot be found, fetched, verified or loaded, or its sidecar/metadata is broken
    ENVIRONMENT = 4  # the cache is not writable, the disk is full, the output cannot be written
    INTERNAL = 70  # a bug in imgclass: run with --debug for the traceback
    SIGINT = 130  # stopped by Ctrl-C after writing the records in flight
    SIGTERM = 143  # stopped by SIGTERM after writing the records in flight


class ImgclassError(Exception):
    """Base class: `str(err)` is the one line shown to the user (settings named by their keyword)."""

    exit_code = ExitCode.USAGE

    def __str__(self) -> str:
        return _OPTION.sub(lambda m: m.group(1).replace("-", "_"), super().__str__())

    def render(self, flag: Callable[[str], str]) -> str:
        """The message with each setting shown as `flag(name)` (the CLI passes its flag table)."""
        return _OPTION.sub(lambda m: flag(m.group(1)), super().__str__())


class UsageError(ImgclassError):
    """The command line, an option value or the inputs are wrong (exit 2)."""

    exit_code = ExitCode.USAGE


class ModelError(ImgclassError):
    """The model cannot be found, fetched, verified, loaded, or is not an image classifier (exit 3)."""

    exit_code = ExitCode.MODEL


class ConfigError(ModelError):
    """A model's sidecar file or ONNX metadata is broken or names something unknown (exit 3)."""


class InputError(ImgclassError):
    """One input image could not be classified; the batch goes on (exit 1 at the end)."""

    exit_code = ExitCode.INPUT_FAILED


class EnvironmentFault(ImgclassError):
    """The cache, the disk or the output cannot be used (exit 4)."""

    exit_code = ExitCode.ENVIRONMENT


class OutputError(EnvironmentFault):
    """Records cannot be written to the output (disk full, I/O error)."""


class CacheError(EnvironmentFault):
    """The model cache cannot be read or written (read-only, full, damaged registry)."""


class MissingExtra(UsageError):
    """An optional capability needs an extra that is not installed (exit 2)."""

    def __init__(self, extra: str, what: str):
        super().__init__(f"{what} needs the optional extra: pip install 'imgclass[{extra}]'")
        self.extra = extra


_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.EDQUOT,
    errno.EBADF,
    errno.EFBIG,
}


def exit_code_for(exc: BaseException) -> ExitCode:
    """The one place an exception becomes an exit code."""
    if isinstance(exc, ImgclassError):
        return ExitCode(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.SIGINT
    if isinstance(exc, BrokenPipeError):
        return ExitCode.OK
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        return ExitCode.ENVIRONMENT
    return ExitCode.INTERNAL


def describe_os_error(err: OSError) -> str:
    """A short reason for an OSError, without errno numbers: 'no space left on device'."""
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    if err.errno == errno.EROFS:
        return "read-only file system"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.EBADF:
        return "closed"
    if err.errno == errno.EFBIG:
        return "file too large (file size limit reached)"
    return (err.strerror or type(err).__name__).lower()
