"""The model data files (catalog, presets, labels, groups): one copy, in the top-level `models/` folder.

The wheel ships that folder inside the package as `imgclass/models/` (a `package-dir` mapping in
pyproject.toml); a source checkout (`PYTHONPATH=checkout`, `python -m imgclass`, an editable
install, Ray workers started in a checkout) reads `models/` beside the `imgclass/` folder.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def data_dir() -> Path:
    """The folder holding the data files: installed (inside the package) or the checkout's `models/`."""
    installed = _PACKAGE / "models"
    if (installed / "catalog.json").is_file():
        return installed
    checkout = _PACKAGE.parent
    if (checkout / "models" / "catalog.json").is_file() and (checkout / "pyproject.toml").is_file():
        return checkout / "models"
    raise FileNotFoundError(
        f"imgclass's data files (models/catalog.json) are missing beside {_PACKAGE}: reinstall imgclass"
    )


@cache
def load_json(name: str) -> Any:
    """Parse one JSON data file shipped with imgclass."""
    return json.loads((data_dir() / name).read_text(encoding="utf-8"))
