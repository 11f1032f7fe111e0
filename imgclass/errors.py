"""Exception types that carry a one-line message and the exit code they map to.

The core raises these; only the CLI turns them into stderr lines and exit codes.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class ImgclassError(Exception):
    """Base class: `str(err)` is the one line shown to the user."""

    exit_code = EXIT_USAGE


class UsageError(ImgclassError):
    """The command line or an option value is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class ModelError(ImgclassError):
    """The model cannot be found, fetched, loaded, or is not an image classifier (exit 3)."""

    exit_code = EXIT_MODEL


class InputError(ImgclassError):
    """One input image could not be classified; the batch goes on (exit 1 at the end)."""

    exit_code = EXIT_INPUT_FAILED
