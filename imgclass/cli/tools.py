"""`imgclass bench` and `imgclass info`: measurements and the environment, for bug reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from imgclass.cli.environment import Environment
from imgclass.cli.options import (
    display_options,
    list_format_option,
    listing_options,
    model_options,
    run_options,
)
from imgclass.cli.render import print_fields, print_json


@click.command(epilog="\b\nExamples:\n  imgclass bench --model resnet50 --images photos/ --format json\n"
               "  imgclass bench --model resnet50-int8.onnx --compare resnet50   # int8 against fp32")  # fmt: skip
@click.option(
    "--images", type=click.Path(path_type=Path, exists=True), help="A folder of images for the end-to-end run."
)
@click.option(
    "--synthetic",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Synthetic samples for the model-only run.",
)
@click.option(
    "--compare",
    "compare_with",
    default="auto",
    show_default=True,
    metavar="MODEL|auto|none",
    help="Measure another model side by side; auto: the other precision (int8/fp32) of this model when it is here.",
)
@model_options
@run_options
@list_format_option
@display_options
@click.pass_obj
def bench(env: Environment, images: Path | None, synthetic: int, compare_with: str, fmt: str, **values: Any) -> None:
    """Model-only and end-to-end throughput, latency percentiles and the time split."""
    from imgclass.cli.loading import load_classifier
    from imgclass.data.sources import check_found, expand
    from imgclass.tasks import bench as benchmark
    from imgclass.tasks.quantize import counterpart, model_precision

    if images is not None:
        check_found([str(images)])  # before any model is loaded
    same_options = dict(values)  # the compared model is loaded with the same options
    classifier = load_classifier(env, values, background=False)
    paths = list(expand([str(images)])) if images else []
    settings = benchmark.BenchOptions(values["batch_size"], values["workers"], synthetic)
    result = {
        **benchmark.run(classifier, paths, settings),
        "precision": model_precision(classifier.model.path, classifier.name),
    }
    other = {"auto": None, "none": None}.get(compare_with.lower(), compare_with)
    if compare_with.lower() == "auto":
        other = counterpart(classifier.model.path, classifier.name)
    if other:
        second = load_classifier(env, {**same_options, "model": (other,)}, background=False)
        theirs = {
            **benchmark.run(second, paths, settings),
            "precision": model_precision(second.model.path, second.name),
        }
        ours = result.copy()
        result = {**ours, "compared_with": theirs, "ratios": benchmark.compare(ours, theirs)}
        if {ours["precision"], theirs["precision"]} == {"int8", "fp32"}:
            int8, fp32 = (ours, theirs) if ours["precision"] == "int8" else (theirs, ours)
            result["int8_vs_fp32"] = benchmark.compare(int8, fp32)
    return print_json(env, result) if fmt == "json" else print_fields(env, result, width=26)


@click.command(epilog="\b\nExample:\n  imgclass info --format json")
@listing_options
def info(env: Environment, fmt: str) -> None:
    """Versions, execution providers, threads and the cache folders."""
    import platform

    import numpy
    import onnxruntime as ort
    import PIL

    from imgclass._util.version import __version__
    from imgclass.graph.runtime import default_threads
    from imgclass.store.cache import folders

    data = {
        "imgclass": __version__,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "providers_available": ort.get_available_providers(),
        "device_default": os.environ.get("IMGCLASS_DEVICE", "auto"),
        "threads": default_threads(),
        **{f"cache_{k}" if k != "home" else "cache": str(v) for k, v in folders().items()},
    }
    return print_json(env, data) if fmt == "json" else print_fields(env, data)
