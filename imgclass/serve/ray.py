"""`imgclass serve --engine ray`: the same app as a Ray Serve deployment (placeholder, filled in below)."""

from __future__ import annotations

from imgclass.errors import MissingExtra


def require_ray_serve() -> None:
    """Raise MissingExtra (exit 2) unless Ray Serve can be imported."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise MissingExtra("ray-serve", "imgclass serve --engine ray") from None
