"""Text that came from files, models or servers, made safe to show on a terminal.

Control characters (C0, DEL, C1 and the Unicode bidirectional overrides) are shown
as visible escapes, so an escape sequence in a file name or a label cannot retitle
the window or move the cursor. Rich markup is never interpreted: renderers build
`rich.text.Text` objects from these strings, never markup strings.
"""

from __future__ import annotations

import os
import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def printable(text: str) -> str:
    """`text` with every control character shown as \\xNN (or \\uNNNN)."""
    return _UNSAFE.sub(_escape, text)


def display_path(path: str | bytes | os.PathLike) -> str:
    """A printable form of a path: bytes that are not UTF-8 show as surrogate escapes (\\udcff)."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
