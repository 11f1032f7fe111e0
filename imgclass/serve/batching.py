"""Dynamic batching: images from concurrent requests run through the model together.

A request is admitted (or refused with `Overloaded` when the queue is full:
the bound counts every image decoding, waiting or running), its images are
decoded and preprocessed on a thread pool with the library's own decoder and
transforms, then queued. One task takes the first queued image, waits up to
`max_delay` for more (up to `max_batch`), and runs them on the model's one
thread. A request that goes away (its client disconnected, it timed out) leaves
its images out of the batch and frees its places in the queue.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imgclass.errors import ImgclassError

if TYPE_CHECKING:
    import numpy as np

    from imgclass.classifier import Classifier
    from imgclass.serve.metrics import Metrics


class Overloaded(Exception):
    """The queue cannot take a request's images now (HTTP 503 with Retry-After)."""


@dataclass
class Outcome:
    """One image's result: a row of probabilities over the labels, or the error a record would carry."""

    probabilities: np.ndarray | None = None
    error: str | None = None


@dataclass
class _Queued:
    sample: Any
    future: asyncio.Future
    since: float


class Batcher:
    """One classifier, one model thread, a decode pool, and a bounded queue between them."""

    def __init__(self, classifier: Classifier, metrics: Metrics, max_batch: int = 8, max_delay: float = 0.005,
                 max_queue: int = 64, workers: int | None = None):  # fmt: skip
        from imgclass.inference.pipeline import default_workers

        self.classifier = classifier
        self.metrics = metrics
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay, max_queue
        self.admitted = 0
        self.ready = False
        self._decode = ThreadPoolExecutor(
            max_workers=workers or default_workers(), thread_name_prefix="imgclass-decode"
        )
        self._model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgclass-model")
        self._queue: asyncio.Queue[_Queued] | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the batch loop, then run one warm-up batch: the server is ready after it."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._model, self._warm_up)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._decode.shutdown(wait=False, cancel_futures=True)
        self._model.shutdown(wait=True)

    def _warm_up(self) -> None:
        from PIL import Image

        sample = self.classifier.scorer.prepare(Image.new("RGB", (320, 320), (128, 128, 128)))
        self.classifier.scorer.probabilities([sample])

    @property
    def classes(self) -> int:
        return len(self.classifier.labels)

    async def classify(self, images: list[tuple[bytes, str]]) -> list[Outcome]:
        """An Outcome per (encoded image, name), in order. Raises Overloaded when the queue is full."""
        if self.admitted + len(images) > self.max_queue:
            raise Overloaded(f"{self.admitted} images in the queue, room for {self.max_queue}")
        self.admitted += len(images)
        try:
            loop = asyncio.get_running_loop()
            prepared = await asyncio.gather(
                *(loop.run_in_executor(self._decode, self._prepare, d, n) for d, n in images)
            )
            futures: list[asyncio.Future | None] = []
            for item in prepared:
                if isinstance(item, Outcome):
                    futures.append(None)
                    continue
                future = loop.create_future()
                assert self._queue is not None
                self._queue.put_nowait(_Queued(item, future, time.perf_counter()))
                futures.append(future)
            waiting = [f for f in futures if f is not None]
            if waiting:
                await asyncio.gather(*waiting)
            outcomes = [item if f is None else f.result() for item, f in zip(prepared, futures, strict=True)]
            self.metrics.outcome(len(outcomes), sum(o.error is not None for o in outcomes))
            return outcomes
        finally:
            self.admitted -= len(images)

    def _prepare(self, data: bytes, name: str) -> Any:
        """The classifier's samples for one encoded image (decode threads), or an error Outcome."""
        from imgclass.data.images import decode_rgb

        try:
            return self.classifier.scorer.prepare(decode_rgb(data, name, self.classifier.decode))
        except ImgclassError as err:
            message, prefix = str(err), f"{name}: "
            return Outcome(error=message[len(prefix) :] if message.startswith(prefix) else message)
        except Exception as err:  # noqa: BLE001 - a decoder bug fails this image, not the server
            return Outcome(error=f"unexpected error: {type(err).__name__}: {err}")

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_delay
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            batch = [item for item in batch if not item.future.done()]  # their requests went away
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Queued]) -> None:
        start = time.perf_counter()
        waits = [start - item.since for item in batch]
        try:
            rows = await asyncio.get_running_loop().run_in_executor(self._model, self._infer, [i.sample for i in batch])
        except Exception as err:  # noqa: BLE001 - a failed run fails its images, not the server
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            rows = [Outcome(error=f"inference failed: {text}")] * len(batch)
        self.metrics.batch(len(batch), time.perf_counter() - start, waits)
        for item, row in zip(batch, rows, strict=True):
            if not item.future.done():
                item.future.set_result(row)

    def _infer(self, samples: list[Any]) -> list[Outcome]:
        import numpy as np

        from imgclass.inference.pipeline import NON_FINITE

        probs = self.classifier.scorer.probabilities(samples)
        finite = np.isfinite(probs).all(axis=1)
        return [Outcome(row) if ok else Outcome(error=NON_FINITE) for row, ok in zip(probs, finite, strict=True)]
