"""The batch pipeline: decode and preprocess in a thread pool while the model runs.

The only module that knows about concurrency. Inputs are decoded by worker
threads (Pillow and numpy release the GIL), gathered into batches in input
order, run through the model on the calling thread, and yielded as records in
input order. Queues are bounded: memory does not grow with the number of inputs.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from imgclass.errors import ImgclassError
from imgclass.images import DecodeOptions, display_path, load_rgb
from imgclass.model import LoadedModel
from imgclass.postprocess import Ranker
from imgclass.records import Record
from imgclass.runtime import default_threads


@dataclass
class Stats:
    """Where the time went, summed over all inputs (seconds)."""

    images: int = 0
    failed: int = 0
    decode: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_prepare(self, decode: float, preprocess: float) -> None:
        with self._lock:
            self.decode += decode
            self.preprocess += preprocess


@dataclass(frozen=True)
class PipelineOptions:
    batch_size: int = 8
    workers: int = 2
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    debug: bool = False


@dataclass
class _Prepared:
    path: str
    sample: np.ndarray | None = None
    error: str | None = None
    item: Any = None  # the input as given: a path, or an object with `.path` (and `.view(image)`)


class Outputs(Protocol):
    """What a run makes of the model: ranked predictions (`Ranked`, the default) or anything else, per image."""

    def ready(self) -> None:
        """Wait for the model; raises its load error (a model that cannot load ends the run, exit 3)."""

    def run(self, batch: np.ndarray) -> list[Any]:
        """One result per sample of `batch`."""
        ...

    def record(self, item: Any, path: str, result: Any, error: str | None) -> Any:
        """What the pipeline yields for one input (`result` is None when `error` is set)."""


class Ranked:
    """The classifier's own outputs, ranked into a Record per image."""

    def __init__(self, model: LoadedModel, ranker: Ranker):
        self.model, self.ranker = model, ranker

    def ready(self) -> None:
        self.model.runner  # noqa: B018 - raises the model's load error

    def run(self, batch: np.ndarray) -> list[Any]:
        return self.ranker.rank(self.model.runner.run(batch))

    def record(self, item: Any, path: str, result: Any, error: str | None) -> Record:
        model = self.model
        return Record(path, model.name, model.preset.preset.name, result or [], error, model.multi_label)


def _reason(message: str, path: str) -> str:
    """The record keeps the reason alone; the path is in the record already."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def default_workers() -> int:
    """Decode threads: two on small machines (they share the cores with the model), more on big ones."""
    return max(2, min(8, default_threads() // 2))


def default_batch_size(model: LoadedModel) -> int:
    """Several images a run on a dynamic batch axis; the model's own size when it is fixed."""
    return model.signature.batch or 8


class Pipeline:
    """Decode, preprocess and run inputs in order; `outputs` says what a run yields (default: ranked Records).

    An input is a path, or an object with `.path` and `.view(image) -> image`, applied to the
    decoded image before the model's transform (training augmentation).
    """

    def __init__(self, model: LoadedModel, ranker: Ranker | None, options: PipelineOptions,
                 stop: threading.Event | None = None, outputs: Outputs | None = None):  # fmt: skip
        self.model = model
        self.ranker = ranker
        self.outputs: Outputs = outputs or Ranked(model, ranker or model.ranker(5))
        self.options = options
        self.stop = stop or threading.Event()
        self.stats = Stats()
        self._buffer = np.empty((options.batch_size,) + model.transform.sample_shape, dtype=np.dtype(model.transform.dtype))

    def _prepare(self, item: Any) -> _Prepared:
        view = getattr(item, "view", None)  # an augmented view of an image: `.path` and `.view(image)`
        path = item.path if view is not None else item
        shown = display_path(path)
        try:
            start = time.perf_counter()
            img = load_rgb(path, self.options.decode)
            if view is not None:
                img = view(img)
            decoded = time.perf_counter()
            sample = self.model.transform(img)
            self.stats.add_prepare(decoded - start, time.perf_counter() - decoded)
            return _Prepared(shown, sample, item=item)
        except ImgclassError as err:
            return _Prepared(shown, error=_reason(str(err), shown), item=item)
        except Exception as err:  # noqa: BLE001 - a decoder bug must not end the batch
            detail = traceback.format_exc() if self.options.debug else ""
            return _Prepared(shown, error=f"unexpected error: {type(err).__name__}: {err}{detail}", item=item)

    def run(self, paths: Iterable[Any]) -> Iterator[Any]:
        batch_size = self.options.batch_size
        window = max(2 * batch_size, batch_size + 2 * self.options.workers)
        source = iter(paths)
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="imgclass-decode") as pool:

            def top_up() -> None:
                while len(pending) < window and not self.stop.is_set():
                    path = next(source, None)
                    if path is None:
                        return
                    pending.append(pool.submit(self._prepare, path))

            try:
                top_up()
                while pending and not self.stop.is_set():
                    # Wait for the next image only; then take whatever else is already decoded.
                    # The model starts as soon as there is work, and batches fill up by
                    # themselves once decoding runs ahead of the model.
                    chunk = [pending.popleft().result()]
                    while pending and len(chunk) < batch_size and pending[0].done():
                        chunk.append(pending.popleft().result())
                    top_up()
                    yield from self._classify(chunk)
                if not self.stop.is_set():
                    self.outputs.ready()  # surfaces a model that cannot load even when no image decoded
            finally:
                for future in pending:
                    future.cancel()

    def _classify(self, chunk: list[_Prepared]) -> Iterator[Any]:
        good = [item for item in chunk if item.sample is not None]
        results: dict[int, Any] = {}
        failure = None
        if good:
            self.outputs.ready()  # a model that cannot load ends the run (exit 3), it fails no image
            batch = self._buffer[: len(good)]
            for i, item in enumerate(good):
                batch[i] = item.sample
            start = time.perf_counter()
            try:
                ranked = self.outputs.run(batch)
                results = {id(item): preds for item, preds in zip(good, ranked, strict=True)}
            except Exception as err:  # noqa: BLE001 - a failed run fails its images, not the batch
                failure = f"inference failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
            self.stats.inference += time.perf_counter() - start
        for item in chunk:
            error = item.error or (failure if item.sample is not None else None)
            self.stats.images += 1
            if error:
                self.stats.failed += 1
                yield self.outputs.record(item.item, item.path, None, error)
            else:
                yield self.outputs.record(item.item, item.path, results[id(item)], None)
