"""Measure a model: model-only throughput, end-to-end throughput, latency, where time goes.

The numbers come from one loaded model in one process, side by side, so that
ratios between them are meaningful. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imgclass.classifier import Classifier
from imgclass.data.images import load_rgb
from imgclass.inference.pipeline import Pipeline, PipelineOptions, default_batch_size, default_workers
from imgclass.store.loader import LoadedModel


@dataclass(frozen=True)
class BenchOptions:
    batch_size: int | None = None  # None: the model's default
    workers: int | None = None
    synthetic: int = 64  # samples for the model-only run
    latency_runs: int = 20


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    arr = np.asarray(values) * 1000.0
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)}


def model_only(model: LoadedModel, batch_size: int, samples: int) -> float:
    """Images per second through the model alone, on batched synthetic input."""
    rng = np.random.default_rng(0)
    shape = (batch_size,) + model.transform.sample_shape
    if model.transform.dtype == "uint8":
        batch = rng.integers(0, 256, size=shape, dtype=np.uint8)
    else:
        batch = rng.standard_normal(shape).astype(np.dtype(model.transform.dtype))
    model.runner.run(batch)  # warm-up
    runs = max(1, samples // batch_size)
    start = time.perf_counter()
    for _ in range(runs):
        model.runner.run(batch)
    return runs * batch_size / (time.perf_counter() - start)


def compare(first: dict, second: dict) -> dict:
    """Two models measured in one process: the second one's figures as ratios of the first's."""
    ratios = {}
    for key in ("model_only_images_per_s", "end_to_end_images_per_s"):
        if first.get(key) and second.get(key):
            ratios[key.replace("_images_per_s", "_ratio")] = first[key] / second[key]
    return ratios


def run(classifier: Classifier, images: Sequence[str], options: BenchOptions) -> dict:
    model = classifier.model
    batch_size = options.batch_size or default_batch_size(model)
    workers = options.workers or default_workers()
    result: dict = {
        "model": model.name,
        "providers": model.providers,
        "input": list(model.transform.sample_shape),
        "batch_size": batch_size,
        "workers": workers,
        "model_only_images_per_s": model_only(model, batch_size, options.synthetic),
    }
    if not images:
        return result
    ranker = model.ranker(5)
    pipeline = Pipeline(model, ranker, PipelineOptions(batch_size, workers, classifier.decode))
    start = time.perf_counter()
    records = list(pipeline.run(images))
    elapsed = time.perf_counter() - start
    stats = pipeline.stats
    latencies = []
    for path in list(images)[: options.latency_runs]:
        t0 = time.perf_counter()
        sample = model.transform(load_rgb(path, classifier.decode))
        ranker.rank(model.runner.run(sample[None]))
        latencies.append(time.perf_counter() - t0)
    result.update(
        images=len(records),
        failed=sum(1 for r in records if r.error),
        end_to_end_images_per_s=len(records) / elapsed,
        ratio_to_model_only=(len(records) / elapsed) / result["model_only_images_per_s"],
        latency_ms=_percentiles(latencies),
        time_s={"decode": stats.decode, "preprocess": stats.preprocess, "inference": stats.inference, "wall": elapsed},
    )
    return result


def device_choices() -> list[tuple[str, str]]:
    """Every (device, precision) this machine runs natively: cpu f32, cuda f32 where ONNX Runtime has it,
    and each OpenVINO device at each precision it computes in (f32 first)."""
    from imgclass.graph import openvino
    from imgclass.graph.runtime import CUDA, available_providers

    choices = [("cpu", "f32")]
    if CUDA in available_providers():
        choices.append(("cuda", "f32"))
    found = openvino.source()
    for target in found.devices if found is not None else ():
        name = "openvino" if target == "CPU" else f"openvino:{target}"
        choices.extend((name, precision) for precision in openvino.native_precisions(target))
    return choices


def across_devices(
    load: Callable[[str, str], Classifier],
    images: Sequence[str],
    options: BenchOptions,
    evaluate_dir: str | None = None,
    remember: bool = True,
    describe: Callable[[Classifier], dict] | None = None,
) -> list[dict]:
    """One row per (device, precision) in `device_choices()`: img/s model-only and end to end, top-1 on
    `evaluate_dir`. `load(device, precision)` loads the model there; `describe(classifier)` adds fields
    to its rows. Each speed is remembered in the cache (keyed like the optimised graphs) for `auto`."""
    rows = []
    for device, precision in device_choices():
        classifier = load(device, precision)
        result = run(classifier, images, options)
        row = {"model": classifier.name, **(describe(classifier) if describe else {}), "device": device,
               "precision": precision, "model_only_images_per_s": result["model_only_images_per_s"],
               "end_to_end_images_per_s": result.get("end_to_end_images_per_s"), "top1": None}  # fmt: skip
        if evaluate_dir is not None:
            from imgclass.tasks.evaluate import evaluate, load_dataset

            report = evaluate(classifier, load_dataset(evaluate_dir, classifier))
            row["top1"], row["evaluated"] = report.top1, report.classified
        if remember:
            _remember(classifier, row["model_only_images_per_s"])
        rows.append(row)
    return rows


def _remember(classifier: Classifier, images_per_s: float) -> None:
    from imgclass.store import index as modelindex
    from imgclass.store.cache import optimized_dir
    from imgclass.store.optimized import remember_speed

    model = classifier.model
    if not modelindex.has_external_data(model.path):
        remember_speed(optimized_dir(), modelindex.sha256_of(model.path), model.device, images_per_s)
