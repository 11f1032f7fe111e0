"""What `imgclass models info` reports: catalog facts, and for a local file what loading would decide.

It uses the same plan as loading (`model.make_plan`), so `models info`, `-v` and
`Classifier.info` never disagree; it never downloads and never starts a session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgclass.store import cache, catalog
from imgclass.store import index as modelindex
from imgclass.store import registry as store
from imgclass.store.loader import ModelSettings, make_plan


def _local_path(spec: str, info: dict[str, Any]) -> Path | None:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    registered = cache.registry().get(spec)
    if registered is not None:
        info.update(sha256=registered.sha256, size=registered.size, source=store.safe_origin(registered.origin))
        return registered.path if registered.path.is_file() else None
    entry = catalog.find(spec)
    if entry is not None:
        return store.cached_path(entry) if store.is_cached(entry) else None
    return store.resolve(spec, offline=True).path  # raises ModelError naming what was tried


def describe(spec: str) -> dict[str, Any]:
    """Catalog entry (if any), and for a local or cached file its signature, preset and labels."""
    entry = catalog.find(spec)
    info: dict[str, Any] = {"name": spec}
    if entry is not None:
        info.update(entry.to_dict())
    path = _local_path(spec, info)
    info["cached"] = path is not None
    if path is None:
        return info
    plan = make_plan(path, info["name"], ModelSettings(), entry.preset if entry else None)
    described = plan.describe()
    described.pop("name")
    info.update(described, sha256=info.get("sha256") or modelindex.sha256_of(path), size=path.stat().st_size)
    if "precision" not in info:
        from imgclass.tasks.quantize import model_precision

        info["precision"] = model_precision(path, spec)
    return info
