"""Access to the data files shipped in `imgclass/models/` (the package `imgclass.models`)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_json(name: str) -> Any:
    """Parse one JSON data file shipped with the package."""
    return json.loads(resources.files("imgclass.models").joinpath(name).read_text(encoding="utf-8"))
