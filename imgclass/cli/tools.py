"""`imgclass bench` and `imgclass info`: measurements and the environment, for bug reports."""

from __future__ import annotations

import os

import typer

from imgclass.cli import params as p
from imgclass.cli.options import display, values
from imgclass.cli.render import print_fields, print_json

BENCH_EXAMPLES = """\b
Examples:
  imgclass bench --model resnet50 --images photos/ --format json
  imgclass bench --model resnet50-int8.onnx --compare resnet50   # int8 against fp32"""


def bench(
    ctx: typer.Context,
    images: p.BenchImages = None,
    synthetic: p.Synthetic = 64,
    compare_with: p.Compare = "auto",
    model: p.Models = None,
    preset: p.Preset = None,
    labels: p.Labels = None,
    activation: p.ActivationOpt = p.Activation.auto,
    offline: p.Offline = False,
    size: p.Size = None,
    resize: p.Resize = None,
    crop_pct: p.CropPct = None,
    interpolation: p.InterpolationOpt = None,
    mean: p.Mean = None,
    std: p.Std = None,
    bgr: p.Bgr = False,
    exact_decode: p.ExactDecode = False,
    device: p.Device = "auto",
    threads: p.Threads = None,
    batch_size: p.BatchSize = None,
    workers: p.Workers = None,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Model-only and end-to-end throughput, latency percentiles and the time split."""
    given = values(locals())
    env = display(ctx, verbose, quiet, color, debug)
    for name in ("images", "synthetic", "compare_with", "fmt"):
        given.pop(name)
    from imgclass.cli.loading import load_classifier
    from imgclass.data.sources import expand
    from imgclass.tasks import bench as benchmark
    from imgclass.tasks.quantize import counterpart, model_precision

    same_options = dict(given)  # the compared model is loaded with the same options
    classifier = load_classifier(env, given, background=False)
    paths = list(expand([str(images)])) if images else []
    settings = benchmark.BenchOptions(given["batch_size"], given["workers"], synthetic)
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


INFO_EXAMPLES = "\b\nExample:\n  imgclass info --format json"


def info(
    ctx: typer.Context,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Versions, execution providers, threads and the cache folders."""
    env = display(ctx, verbose, quiet, color, debug)
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
