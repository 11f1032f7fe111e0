"""Measure a model: model-only throughput, end-to-end throughput, latency, where time goes.

The numbers come from one loaded model in one process, side by side, so that
ratios between them are meaningful. Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
