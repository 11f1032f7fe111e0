"""Test-time augmentation's names and view counts (no heavy imports: the CLI's --help lists them).

The views themselves are made in `imgclass.inference.scoring`.
"""

from __future__ import annotations

from imgclass.errors import UsageError

TTA_MODES = ("none", "flip", "five-crop", "ten-crop")
VIEWS = {"none": 1, "flip": 2, "five-crop": 5, "ten-crop": 10}  # samples per image


def check_tta(tta: str | None) -> str:
    """A TTA name, lower-cased ("none" for None or ""); UsageError for an unknown one."""
    name = (tta or "none").strip().lower()
    if name not in VIEWS:
        raise UsageError(f"«tta» {tta!r}: use {', '.join(TTA_MODES)}")
    return name
