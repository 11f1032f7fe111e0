"""The work a distributed run hands out, with no engine in it: decode a block, run the model on a batch.

`prepare_batch` runs in stateless tasks: it reads each input (a local path or an
object store URI), decodes it with the same code and options as a local run
(draft decoding included) and applies the model's Transform. `ModelWorker` is the
stateful part: it loads the model once (one ONNX Runtime session per worker) and
turns batches of samples into records. Both take and return plain dicts of numpy
columns, so any batch engine can drive them; they are tested without one.

Columns: index (int64, the input's position), path (the path as records show it),
location (bytes: an absolute path or a URI), raw (base64 of a name that is not UTF-8, else ""),
then ok / error / sample from `prepare_batch`, then record (a pickled Record or Embedding a row)
from `ModelWorker`.
"""

from __future__ import annotations

import os
import pickle
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from imgclass.data.images import DecodeOptions, decode_rgb, display_path, load_rgb
from imgclass.data.transforms import Transform
from imgclass.errors import ImgclassError
from imgclass.inference.pipeline import _reason, image_error, inference_failure

Batch = dict[str, np.ndarray]


def locate(path: str) -> bytes:
    """Where a worker finds an input: URIs as they are, local paths made absolute (workers have their own cwd)."""
    from imgclass.engines.base import is_uri

    return os.fsencode(path if is_uri(path) else os.path.abspath(path))


def _read(location: str, decode: DecodeOptions):
    from imgclass.engines.base import is_uri

    if is_uri(location):
        from imgclass.engines.storage import read_uri

        return decode_rgb(read_uri(location, location), location, decode)
    return load_rgb(location, decode)


def _prepare_one(location: str, out: np.ndarray, transform: Transform, decode: DecodeOptions, debug: bool):
    """(error or None, decode seconds, preprocess seconds); the sample goes into `out`."""
    start = time.perf_counter()
    try:
        img = _read(location, decode)
        decoded = time.perf_counter()
        transform(img, out=out)
        return None, decoded - start, time.perf_counter() - decoded
    except ImgclassError as err:
        return _reason(str(err), display_path(location)), time.perf_counter() - start, 0.0
    except Exception as err:  # noqa: BLE001 - a decoder bug must not end the job
        detail = traceback.format_exc() if debug else ""
        return f"unexpected error: {type(err).__name__}: {err}{detail}", time.perf_counter() - start, 0.0


def prepare_batch(batch: Batch, transform: Transform, decode: DecodeOptions, debug: bool = False) -> Batch:
    """Decode and preprocess a block of inputs; a bad input is a row with ok=False and its reason."""
    count = len(batch["index"])
    raw = batch["raw"] if "raw" in batch else np.full(count, "", dtype=object)
    samples = np.zeros((count,) + transform.sample_shape, dtype=np.dtype(transform.dtype))
    errors, timings = [], np.zeros((count, 2))
    for i in range(count):
        location = os.fsdecode(bytes(batch["location"][i]))
        error, timings[i, 0], timings[i, 1] = _prepare_one(location, samples[i], transform, decode, debug)
        errors.append(error or "")
    ok = np.array([not e for e in errors], dtype=bool)
    return {
        "index": np.asarray(batch["index"], dtype=np.int64),
        "path": np.asarray(batch["path"], dtype=object),
        "raw": np.asarray(raw, dtype=object),
        "ok": ok,
        "error": np.array(errors, dtype=object),
        "sample": samples,
        "decode_s": timings[:, 0],
        "preprocess_s": timings[:, 1],
    }


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the driver's model: the same spec and options, and the name records give it."""

    spec: str
    options: Any  # imgclass.LoadOptions
    name: str
    top: int = 5
    threshold: float | None = None
    task: str = "classify"  # or "embed": bottleneck vectors
    normalize: bool = False  # embed: unit L2 norm
    grouping: Any = None  # imgclass.graph.ranking.Grouping, resolved on the driver
    abstain_below: float | None = None

    @classmethod
    def of(
        cls, classifier: Any, top: int, threshold: float | None, threads: int | None, device: str | None,
        task: str = "classify", normalize: bool = False,
    ) -> ModelSpec:  # fmt: skip
        """From a loaded Classifier: its file by absolute path, labels too, and this worker's threads/device.

        The file is already resolved (pulled, verified) on the driver, so workers never use the network.
        """
        options = classifier.options
        changes: dict[str, Any] = {"threads": threads, "offline": True}
        if options.labels is not None:
            changes["labels"] = type(options.labels)(os.path.abspath(options.labels))
        choice = classifier.model.preset
        if options.preset is None and choice.source.startswith("catalog"):
            # the file alone does not say what the catalog does; overrides are applied again on top
            changes["preset"] = choice.preset.name.split("+", 1)[0]
        if device is not None:
            changes["device"] = device
        path = os.path.abspath(str(classifier.model.path))
        return cls(path, replace(options, **changes), classifier.model.name, top, threshold, task, normalize)


class ModelWorker:
    """One model, loaded once per worker process; called on batches of prepared samples.

    It makes what the local pipeline's outputs make (`pipeline.Ranked`: a Record per image,
    `embedding.EmbedOutputs`: an Embedding), with the same error rules, and returns each
    pickled in the `record` column.
    """

    def __init__(self, model: ModelSpec):
        import imgclass
        from imgclass.inference.pipeline import Ranked

        self.classifier = imgclass.load(model.spec, options=model.options, background=True)
        self.classifier.model.name = model.name  # records name the model as the driver's run does
        self.outputs: Any
        if model.task == "embed":
            from imgclass.inference.embedding import EmbedOutputs

            self.outputs = EmbedOutputs(self.classifier.bottleneck, model.normalize)
        else:
            ranker = self.classifier.model.ranker(model.top, model.threshold, model.grouping, model.abstain_below)
            self.outputs = Ranked(self.classifier.model, ranker)
        self.pid = os.getpid()

    def __call__(self, batch: Batch) -> Batch:
        ok = np.asarray(batch["ok"], dtype=bool)
        good = np.flatnonzero(ok)
        results: dict[int, Any] = {}  # a result per image, or an error string (a non-finite output)
        failure = None
        start = time.perf_counter()
        if len(good):
            self.outputs.ready()  # a model that cannot load fails the job (exit 3), it fails no image
            try:
                samples = np.ascontiguousarray(np.asarray(batch["sample"])[good])
                results = dict(zip(good.tolist(), self.outputs.run(samples), strict=True))
            except Exception as err:  # noqa: BLE001 - a failed run fails its images, not the job
                failure = inference_failure(err)
        seconds = time.perf_counter() - start
        raw = batch["raw"] if "raw" in batch else [""] * len(ok)
        records = []
        for i, path in enumerate(batch["path"]):
            result = results.get(i)
            error = image_error(None if ok[i] else str(batch["error"][i]), failure, result)
            kept = result if error is None else None
            records.append(pickle.dumps(self.outputs.record(None, str(path), kept, error or None, str(raw[i]) or None)))
        count = max(1, len(ok))
        return {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "record": np.array(records, dtype=object),
            "decode_s": np.asarray(batch["decode_s"], dtype=np.float64),
            "preprocess_s": np.asarray(batch["preprocess_s"], dtype=np.float64),
            "inference_s": np.full(len(ok), seconds / count),
            "worker": np.full(len(ok), self.pid, dtype=np.int64),
        }
