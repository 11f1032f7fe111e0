"""Turning a command's typed parameters into the library's option records.

The options themselves are declared once in `imgclass.cli.params`; a command gathers
its parameters with `values(locals())` and hands them to `load_classifier`, which
takes the model options out (`pop_load_options`), and to `pop_engine_options`.
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Any

import typer

from imgclass.cli.environment import Environment

_DISPLAY = ("verbose", "quiet", "color", "debug")


def values(params: dict[str, Any]) -> dict[str, Any]:
    """A command's parameters as plain values (an Enum member becomes its string), display options set aside."""
    return {
        name: value.value if isinstance(value, Enum) else value
        for name, value in params.items()
        if name not in (*_DISPLAY, "ctx")
    }


def display(ctx: typer.Context, verbose: bool, quiet: bool, color: str, debug: bool) -> Environment:
    """-v, -q, --color and --debug set the Environment every command renders through; returns it."""
    env: Environment = ctx.obj
    env.verbose, env.quiet, env.color, env.debug = verbose, quiet, str(color), debug
    if debug:
        warnings.simplefilter("default")
    return env


def pop_engine_options(values: dict[str, Any]):
    """Take --engine, --ray-address and --actors out of a command's keyword arguments.

    With a distributed engine --device is the model actors'; the driver's own copy of the
    model (it checks the model and answers -v) runs on the CPU, so a head node without a
    GPU can still send --device cuda work to the nodes that have one.
    """
    from imgclass.engines import EngineOptions

    name = values.pop("engine", "local").lower()
    device = None
    if name != "local" and "device" in values:
        device, values["device"] = values["device"], "cpu"
    return EngineOptions(name, values.pop("ray_address", None), values.pop("actors", None), device)


def pop_models(values: dict[str, Any]) -> tuple[list[str], tuple[float, ...] | None]:
    """Take every --model (several: an ensemble) and --weights out of a command's keyword arguments."""
    models = values.pop("model", None) or ()
    return [models] if isinstance(models, str) else list(models), values.pop("weights", None)


def pop_load_options(values: dict[str, Any]):
    """Take the model and decode options out of a command's keyword arguments (one --model at most)."""
    from imgclass.classifier import LoadOptions
    from imgclass.data.presets import Overrides
    from imgclass.errors import UsageError
    from imgclass.store.download import URL_TIMEOUT

    model = values.pop("model", None)
    if isinstance(model, (tuple, list)):
        if len(model) > 1:
            raise UsageError(f"--model given {len(model)} times: only predict, batch and evaluate average an ensemble")
        model = model[0] if model else None

    overrides = Overrides(**{k: values.pop(k, None) for k in ("size", "resize", "crop_pct", "interpolation", "mean", "std")},
                          bgr=values.pop("bgr", False))  # fmt: skip
    offline = values.pop("offline", False)
    activation = str(values.pop("activation", "auto")).lower()
    return model, LoadOptions(
        preset=values.pop("preset", None),
        overrides=overrides,
        labels=values.pop("labels", None),
        activation=activation if activation != "auto" else None,
        device=values.pop("device", "auto"),
        threads=values.pop("threads", None),
        offline=True if offline else None,
        exact_decode=values.pop("exact_decode", False),
        max_pixels=values.pop("max_pixels", None),
        allow_truncated=values.pop("allow_truncated", False),
        tta=values.pop("tta", None) or "none",
        url_timeout=values.pop("url_timeout", None) or URL_TIMEOUT,
    )
