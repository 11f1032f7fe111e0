"""Where a batch runs: `local` (decode threads and one model in this process) or `ray` (a Ray Data job).

Every front end that classifies many inputs goes through an engine, so `batch`
(and later `evaluate` and `embed`) get the same records whichever one runs them:

    from imgclass.engines import EngineOptions, open_engine

    with open_engine(EngineOptions("ray", actors=4)) as engine:   # connects, or starts a local Ray
        for record in engine.classify(clf, engine.expand(["s3://bucket/photos/"], recursive=True)):
            ...

`open_engine` connects before a job installs its signal handlers and disconnects
after; `classify` yields Records in input order, error records for bad inputs,
and has `.stats`; `embedder(clf)` is what `imgclass embed` runs (Embeddings). Nothing here imports Ray: `imgclass.engines.ray` does, and only
when the `ray` engine is opened (without the `imgclass[ray]` extra: MissingExtra).
"""

from __future__ import annotations

import os

from imgclass.engines.base import (
    ENGINES,
    Cluster,
    Engine,
    EngineOptions,
    Records,
    RunOptions,
    is_uri,
)
from imgclass.errors import MissingExtra, UsageError

__all__ = [
    "ENGINES",
    "Cluster",
    "Engine",
    "EngineOptions",
    "Records",
    "RunOptions",
    "is_uri",
    "open_engine",
    "require_ray",
]


def require_ray() -> None:
    """Raise MissingExtra (exit 2) unless Ray Data can be imported."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingExtra("ray", "«engine» ray") from None


def open_engine(options: EngineOptions = EngineOptions()) -> Engine:
    """The engine `options.name` names; use it as a context manager (Ray connects on enter)."""
    if options.name == "local":
        if options.address is not None or options.actors is not None:
            raise UsageError("«ray-address» and «actors» need «engine» ray")
        return Engine()
    if options.name != "ray":
        raise UsageError(f"«engine» {options.name!r}: choose one of {', '.join(ENGINES)}")
    require_ray()
    from imgclass.engines.ray import RayEngine

    return RayEngine(
        options.address or os.environ.get("RAY_ADDRESS") or None, options.actors, options.device, options.precision
    )
