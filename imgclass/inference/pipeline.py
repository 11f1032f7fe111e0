"""The batch pipeline: decode and preprocess in a thread pool while the model runs.

The only module that knows about concurrency. Inputs are decoded by worker
threads (Pillow and numpy release the GIL), gathered into batches in input
order, run through the model on the calling thread, and yielded as records in
input order. Queues are bounded: memory does not grow with the number of inputs.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from imgclass._util.text import first_line
from imgclass.data.images import DecodeOptions, decode_rgb, display_path, load_rgb
from imgclass.data.sources import is_url, path_bytes
from imgclass.data.video import Frame, at_frame
from imgclass.errors import ImgclassError, InputError
from imgclass.graph.ranking import Ranker
from imgclass.graph.runtime import default_threads
from imgclass.records import Record
from imgclass.store.download import UrlPolicy
from imgclass.store.loader import LoadedModel


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
    urls: UrlPolicy = field(default_factory=UrlPolicy)  # how an input named by an http(s) URL is fetched


@dataclass
class _Prepared:
    path: str
    sample: Any = None  # the model's sample, or what Outputs.prepare gives
    error: str | None = None
    raw: str | None = None  # path_bytes of a name that is not UTF-8
    item: Any = None  # the input as given: a path, or an object with `.path` (and `.view(image)`)


class Outputs(Protocol):
    """What a run makes of the model: ranked predictions (`Ranked`, the default) or anything else, per image."""

    def ready(self) -> None:
        """Wait for the model; raises its load error (a model that cannot load ends the run, exit 3)."""

    def run(self, batch: np.ndarray) -> list[Any]:
        """One result per sample of `batch` (a string is an error for that sample)."""
        ...

    def record(self, item: Any, path: str, result: Any, error: str | None, raw: str | None = None) -> Any:
        """What the pipeline yields for one input (`result` is None when `error` is set)."""

    # Optional, for outputs that need other samples than the model's transform gives
    # (several models, several views of each image: imgclass.inference.scoring.Scored):
    #     prepare(image) -> sample   on the decode threads, instead of model.transform(image)
    #     stack(samples) -> batch    what `run` is given, instead of the samples stacked


def _reason(message: str, path: str) -> str:
    """The record keeps the reason alone; the path is in the record already."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def inference_failure(err: BaseException) -> str:
    """The error every image of a batch gets when running the batch failed (the batch fails, not the job)."""
    return f"inference failed: {first_line(err)}"


def image_error(decode_error: str | None, failure: str | None, result: Any) -> str | None:
    """The one rule, local and Ray alike: a decode error, else the batch's failure, else a non-finite result."""
    if decode_error:
        return decode_error
    if failure:
        return failure
    return result if isinstance(result, str) else None


NON_FINITE = "the model's output is not finite (NaN or infinity) for this image; check the model and «mean»/«std»"


def rank_finite(ranker: Ranker, outputs: np.ndarray) -> list:
    """Ranked predictions per row; a row with NaN or infinite outputs or probabilities gets NON_FINITE instead.

    A row that is not finite has no meaningful ranking: it is an error for that input,
    never an empty list of predictions.
    """
    finite = np.isfinite(outputs).all(axis=1)
    if finite.all():
        finite = np.isfinite(ranker.probabilities(outputs)).all(axis=1)
    if finite.all():
        return ranker.rank(outputs)
    ranked: list = [NON_FINITE] * len(outputs)
    rows = np.flatnonzero(finite)
    if len(rows):
        for row, preds in zip(rows, ranker.rank(outputs[rows]), strict=True):
            ranked[row] = preds
    return ranked


class Ranked:
    """The classifier's own outputs, ranked into a Record per image (non-finite rows are errors)."""

    def __init__(self, model: LoadedModel, ranker: Ranker):
        self.model, self.ranker = model, ranker

    def ready(self) -> None:
        self.model.runner  # noqa: B018 - raises the model's load error

    def run(self, batch: np.ndarray) -> list[Any]:
        return rank_finite(self.ranker, self.model.runner.run(batch))

    def record(self, item: Any, path: str, result: Any, error: str | None, raw: str | None = None) -> Record:
        model = self.model
        abstained = getattr(result, "abstained", None) if error is None else None
        record = Record(path, model.name, model.preset.preset.name, list(result or []), error, model.multi_label, raw,
                        abstained=abstained)  # fmt: skip
        return at_frame(record, item)


def fetch_image(url: str, policy: UrlPolicy) -> bytes:
    """An image's bytes from an http(s) URL; InputError with the reason when it cannot be fetched."""
    from imgclass.store.download import DownloadError, fetch_bytes

    try:
        return fetch_bytes(url, policy)
    except DownloadError as err:
        raise InputError(f"cannot fetch: {err}") from None


def default_workers() -> int:
    """Decode threads: two on small machines (they share the cores with the model), more on big ones."""
    return max(2, min(8, default_threads() // 2))


def default_batch_size(model: LoadedModel) -> int:
    """Several images a run on a dynamic batch axis; the model's own size when it is fixed."""
    return model.signature.batch or 8


_END = object()


class _Feeder:
    """Inputs listed on a thread of their own, so that a slow source (a list on stdin, a
    huge or hung folder) never keeps the run from noticing a stop."""

    def __init__(self, paths: Iterable[str], size: int, stop: threading.Event):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop, self._closed, self._ended = stop, threading.Event(), False
        thread = threading.Thread(target=self._run, args=(paths,), name="imgclass-inputs", daemon=True)
        thread.start()

    def _put(self, item: object) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self, paths: Iterable[str]) -> None:
        try:
            for path in paths:
                if self._closed.is_set():
                    return
                self._put(path)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(err)
        else:
            self._put(_END)

    def next(self, block: bool) -> str | None:
        """The next path; None at the end, when stopped, or (not blocking) when none is ready yet."""
        while not self._ended:
            try:
                item = self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
            except queue.Empty:
                if block and not self._stop.is_set():
                    continue
                return None
            if item is _END:
                self._ended = True
            elif isinstance(item, BaseException):
                self._ended = True
                raise item
            else:
                return item
        return None

    def close(self) -> None:
        self._closed.set()


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
        self._buffer = np.empty(
            (options.batch_size,) + model.transform.sample_shape, dtype=np.dtype(model.transform.dtype)
        )
        self._transform = getattr(self.outputs, "prepare", model.transform)

    def _load(self, item: Any, path: str, shown: str) -> Any:
        """The decoded image of an input: a file, an http(s) URL, or a video frame decoded already."""
        if isinstance(item, Frame):
            return item.image()
        if is_url(path):
            return decode_rgb(fetch_image(path, self.options.urls), shown, self.options.decode)
        return load_rgb(path, self.options.decode)

    def _prepare(self, item: Any) -> _Prepared:
        view = getattr(item, "view", None)  # an augmented view of an image: `.path` and `.view(image)`
        path = item.path if view is not None or isinstance(item, Frame) else item
        shown, raw = display_path(path), path_bytes(path)
        try:
            start = time.perf_counter()
            img = self._load(item, path, shown)
            if view is not None:
                img = view(img)
            decoded = time.perf_counter()
            sample = self._transform(img)
            self.stats.add_prepare(decoded - start, time.perf_counter() - decoded)
            return _Prepared(shown, sample, raw=raw, item=item)
        except ImgclassError as err:
            return _Prepared(shown, error=_reason(str(err), shown), raw=raw, item=item)
        except Exception as err:  # noqa: BLE001 - a decoder bug must not end the batch
            detail = traceback.format_exc() if self.options.debug else ""
            message = f"unexpected error: {type(err).__name__}: {err}{detail}"
            return _Prepared(shown, error=message, raw=raw, item=item)

    def run(self, paths: Iterable[Any]) -> Iterator[Any]:
        batch_size = self.options.batch_size
        window = max(2 * batch_size, batch_size + 2 * self.options.workers)
        pending: deque[Future] = deque()
        feeder = _Feeder(paths, window, self.stop)
        pool = ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="imgclass-decode")
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgclass-model")

        def top_up(block: bool) -> None:
            while len(pending) < window and not self.stop.is_set():
                path = feeder.next(block=block and not pending)
                if path is None:
                    return
                pending.append(pool.submit(self._prepare, path))

        try:
            while not self.stop.is_set():
                top_up(block=True)  # waits (for a slow list on stdin, say) only when nothing is pending
                if not pending or not self._ready(pending[0]):
                    break
                # Take the next image, then whatever else is already decoded. The model starts
                # as soon as there is work, and batches fill up by themselves once decoding
                # runs ahead of the model.
                chunk = [pending.popleft().result()]
                while pending and len(chunk) < batch_size and pending[0].done():
                    chunk.append(pending.popleft().result())
                top_up(block=False)
                while not self.model.wait_ready(0.1):  # a cold start can take a while: a stop must not wait
                    if self.stop.is_set():
                        return
                yield from self._classify(chunk)
            if not self.stop.is_set():
                self.outputs.ready()  # surfaces a model that cannot load even when no image decoded
        finally:
            # Never wait for a decode in progress: a stop is honoured at once.
            feeder.close()
            pool.shutdown(wait=False, cancel_futures=True)
            self._model_thread.shutdown(wait=False)

    def _ready(self, future: Future) -> bool:
        """Wait for `future`, but give up as soon as the run is stopped (a signal must not wait for a decode)."""
        while not future.done():
            if self.stop.is_set():
                return False
            wait([future], timeout=0.1)
        return True

    def _infer(self, batch: np.ndarray) -> list[Any]:
        """Run the model on its own thread, so that a second signal ends the run even mid-batch."""
        future = self._model_thread.submit(self.outputs.run, batch)
        wait([future])
        return future.result()

    def _classify(self, chunk: list[_Prepared]) -> Iterator[Any]:
        good = [item for item in chunk if item.sample is not None]
        results: dict[int, Any] = {}  # a result per image, or an error string (NON_FINITE)
        failure = None
        if good:
            self.outputs.ready()  # a model that cannot load ends the run (exit 3), it fails no image
            stack = getattr(self.outputs, "stack", None)
            if stack is not None:
                batch = stack([item.sample for item in good])
            else:
                batch = self._buffer[: len(good)]
                for i, item in enumerate(good):
                    batch[i] = item.sample
            start = time.perf_counter()
            try:
                ranked = self._infer(batch)
                results = {id(item): preds for item, preds in zip(good, ranked, strict=True)}
            except Exception as err:  # noqa: BLE001 - a failed run fails its images, not the batch
                failure = inference_failure(err)
            self.stats.inference += time.perf_counter() - start
        for item in chunk:
            error = image_error(item.error, failure if item.sample is not None else None, results.get(id(item)))
            self.stats.images += 1
            if error:
                self.stats.failed += 1
                yield self.outputs.record(item.item, item.path, None, error, item.raw)
            else:
                yield self.outputs.record(item.item, item.path, results[id(item)], None, item.raw)
