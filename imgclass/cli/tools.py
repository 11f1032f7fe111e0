"""`imgclass bench` and `imgclass info`: measurements and the environment, for bug reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from imgclass.cli import params as p
from imgclass.cli.options import display, values
from imgclass.cli.render import print_fields, print_json

BENCH_EXAMPLES = """\b
Examples:
  imgclass bench --model resnet50 --images photos/ --format json
  imgclass bench --model resnet50-int8.onnx --compare resnet50   # int8 against fp32
  imgclass bench --model resnet50 --compare devices --images photos/ --evaluate val/"""


def bench(
    ctx: typer.Context,
    images: p.BenchImages = None,
    synthetic: p.Synthetic = 64,
    compare_with: p.Compare = "auto",
    evaluate_dir: p.BenchEvaluate = None,
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
    precision: p.PrecisionOpt = p.Precision.f32,
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
    for name in ("images", "synthetic", "compare_with", "fmt", "evaluate_dir"):
        given.pop(name)
    from imgclass.data.sources import check_found, expand
    from imgclass.errors import UsageError
    from imgclass.tasks import bench as benchmark

    if evaluate_dir is not None and compare_with.lower() != "devices":
        raise UsageError("--evaluate goes with --compare devices")
    if images is not None:
        check_found([str(images)])  # before any model is loaded
    same_options = dict(given)  # the compared model is loaded with the same options
    paths = list(expand([str(images)])) if images else []
    settings = benchmark.BenchOptions(given["batch_size"], given["workers"], synthetic)
    if compare_with.lower() == "devices":
        return _bench_devices(env, same_options, paths, settings, evaluate_dir, str(fmt))
    result = _bench_models(env, given, same_options, paths, settings, compare_with)
    return print_json(env, result) if fmt == "json" else print_fields(env, result, width=26)


def _bench_models(env, given: dict[str, Any], same_options: dict[str, Any], paths: list[str], settings: Any,
                  compare_with: str) -> dict[str, Any]:  # fmt: skip
    """The model's figures, and beside them its counterpart's (--compare auto: int8 <-> fp32, or a model named)."""
    from imgclass.cli.loading import load_classifier
    from imgclass.tasks import bench as benchmark
    from imgclass.tasks.quantize import counterpart, model_precision

    classifier = load_classifier(env, given, background=False)
    result = {
        **benchmark.run(classifier, paths, settings),
        "precision": model_precision(classifier.model.path, classifier.name),
    }
    other = {"auto": None, "none": None}.get(compare_with.lower(), compare_with)
    if compare_with.lower() == "auto":
        other = counterpart(classifier.model.path, classifier.name)
    if not other:
        return result
    second = load_classifier(env, {**same_options, "model": (other,)}, background=False)
    theirs = {**benchmark.run(second, paths, settings), "precision": model_precision(second.model.path, second.name)}
    ours = result.copy()
    result = {**ours, "compared_with": theirs, "ratios": benchmark.compare(ours, theirs)}
    if {ours["precision"], theirs["precision"]} == {"int8", "fp32"}:
        int8, fp32 = (ours, theirs) if ours["precision"] == "int8" else (theirs, ours)
        result["int8_vs_fp32"] = benchmark.compare(int8, fp32)
    return result


def _bench_devices(env, values: dict[str, Any], paths: list[str], settings: Any, evaluate_dir: Path | None,
                   fmt: str) -> None:  # fmt: skip
    """`bench --compare devices`: a row per model x device x precision, side by side."""
    from imgclass.cli.loading import load_classifier
    from imgclass.cli.render import print_table
    from imgclass.tasks import bench as benchmark
    from imgclass.tasks.quantize import counterpart, model_precision

    first = load_classifier(env, dict(values), background=False)
    models = [values.get("model")]
    other = counterpart(first.model.path, first.name)
    if other:
        models.append([other])
    rows: list[dict] = []
    for model in models:

        def load(device: str, precision: str, model: Any = model) -> Any:
            return load_classifier(env, {**values, "model": model, "device": device, "precision": precision},
                                   background=False)  # fmt: skip

        rows += benchmark.across_devices(load, paths, settings, str(evaluate_dir) if evaluate_dir else None,
                                         describe=lambda c: {"weights": model_precision(c.model.path, c.name)})  # fmt: skip
    if fmt == "json":
        return print_json(env, {"rows": rows})
    columns = [("model", "left"), ("weights", "left"), ("device", "left"), ("precision", "left"),
               ("model-only img/s", "right"), ("end-to-end img/s", "right"), ("top-1", "right")]  # fmt: skip
    table = [(r["model"], r["weights"], r["device"], r["precision"], f"{r['model_only_images_per_s']:.1f}",
              "-" if r["end_to_end_images_per_s"] is None else f"{r['end_to_end_images_per_s']:.1f}",
              "-" if r["top1"] is None else f"{r['top1']:.1%}") for r in rows]  # fmt: skip
    print_table(env, columns, table, keep="model")


_INFO_KEYS = {"provider": "openvino", "cpu_features": "cpu_features"}

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
    from imgclass.graph import openvino
    from imgclass.graph.runtime import default_threads
    from imgclass.store.cache import folders

    data = {
        "imgclass": __version__,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "providers_available": ort.get_available_providers(),
        **{_INFO_KEYS.get(k, f"openvino_{k}"): v for k, v in openvino.describe().items()},
        "device_default": os.environ.get("IMGCLASS_DEVICE", "auto"),
        "threads": default_threads(),
        **{f"cache_{k}" if k != "home" else "cache": str(v) for k, v in folders().items()},
    }
    return print_json(env, data) if fmt == "json" else print_fields(env, data)
