"""The ray engine: a batch as a Ray Data job, giving the same records as a local run.

    inputs (listed on the driver: folders, globs, stdin lists, object store URIs)
      -> blocks of (index, path, location)                          ray.data.from_arrow
      -> read + decode + preprocess, one block a task               map_batches(prepare_batch)
      -> one ONNX Runtime session per actor, --batch-size a call    map_batches(ModelWorker, ActorPoolStrategy)
      -> records, back on the driver in input order                 iter_batches(preserve_order)

Order and exactly-once: every row carries its input's index; the driver emits
records strictly by index, drops a repeat and fails the job on a gap, so a task
Ray retried after a worker died cannot show up twice or go missing unnoticed.
Ray retries tasks (TASK_RETRIES) and restarts killed actors (ACTOR_RESTARTS).
The driver writes the output (through the same sinks as a local run), so
--resume, formats and signals behave as they do locally.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from imgclass._util.text import first_line, printable
from imgclass.data.sources import expand, path_bytes
from imgclass.engines.base import Cluster, Engine, RunOptions, is_uri
from imgclass.engines.work import ModelSpec, ModelWorker, locate, prepare_batch
from imgclass.errors import EnvironmentFault, ImgclassError, UsageError
from imgclass.inference.pipeline import Stats, default_batch_size

if TYPE_CHECKING:
    from imgclass.classifier import Classifier

TASK_RETRIES = 5  # a decode task whose worker process died is run again this many times
ACTOR_RESTARTS = 10  # a model actor whose process died is restarted (and its batch retried) this often
MAX_BLOCK_ROWS = 32  # inputs a decode task takes: small enough to spread and to retry cheaply
_QUIET_LOGGERS = ("ray", "ray.data", "ray.util")


class RayJobError(EnvironmentFault):
    """The Ray cluster could not be reached, or the job failed for a reason that is not one input (exit 4)."""


class RayEngine(Engine):
    name = "ray"

    def __init__(
        self, address: str | None = None, actors: int | None = None, device: str | None = None,
        precision: str | None = None,
    ):  # fmt: skip
        if actors is not None and actors < 1:
            raise UsageError("«actors» must be at least 1")
        self.address = address
        self.actors = actors
        self.device = device  # None: the classifier's own --device
        self.precision = precision  # None: the classifier's own precision
        self.started = False
        self._handlers: dict[int, Any] = {}

    def __enter__(self) -> RayEngine:
        """Connect to `address`, or start a local instance; reuse a connection this process already has."""
        import ray

        if threading.current_thread() is threading.main_thread():
            self._handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
            if self.address is None:
                kwargs.update(address="local", include_dashboard=False)
            else:
                kwargs["address"] = self.address
            with _quiet(), _backend_errors_quiet():
                try:
                    ray.init(**kwargs)
                except Exception as err:  # noqa: BLE001 - Ray raises many kinds here; all mean "no cluster"
                    where = f"at {printable(self.address)}" if self.address else "locally"
                    raise RayJobError(f"cannot start or reach Ray {where}: {first_line(err)}") from None
            self.started = True
        self.cluster = _cluster()
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        try:
            if self.started:
                with _quiet():
                    ray.shutdown()
                self.started = False
        finally:
            for signum, handler in self._handlers.items():
                signal.signal(signum, handler)  # ray.init sets its own SIGTERM handler

    def check_inputs(self, inputs: list[str]) -> None:
        """Object store URIs are read here; http(s) URLs and video files are the local engine's."""
        from imgclass.data.sources import is_url, is_video_name

        for item in inputs:
            if is_url(item) or is_video_name(item):
                kind = "http(s) URLs" if is_url(item) else "video files"
                raise UsageError(f"{printable(item)}: {kind} are read by the local engine only")

    def expand(self, inputs: Iterable[str], recursive: bool = False, stdin: Any = None, null: bool = False,
               video: bool = False) -> Iterator[str]:  # fmt: skip
        """Local inputs as `sources.expand` lists them; object store URIs listed through pyarrow."""
        from imgclass.engines.storage import list_uri

        if video:
            raise UsageError("video files are read by the local engine only")
        seen: set[str] = set()
        for item in inputs:
            if is_uri(item):
                found: Iterable[str] = list_uri(item, recursive)
            else:
                found = expand([item], recursive=recursive, stdin=stdin, null=null)
            for path in found:
                if path not in seen:
                    seen.add(path)
                    yield path

    def classify(
        self, classifier: Classifier, paths: Iterable[str], options: RunOptions = RunOptions(),
        stop: threading.Event | None = None,
    ) -> RayRecords:  # fmt: skip
        if self.cluster is None:
            raise RuntimeError("use the ray engine inside `with open_engine(...)`")
        if options.batch_size is not None and options.batch_size < 1:
            raise UsageError("«batch-size» must be at least 1")
        if not classifier.scorer.plain:
            raise UsageError("«engine» ray runs one model without «tta»; ensembles and «tta» run with «engine» local")
        return RayRecords(self, classifier, paths, options, stop or threading.Event())

    def embedder(self, classifier: Classifier, normalize: bool = False) -> Callable[..., RayRecords]:
        """Called like `classifier.embed` by `jobs.run_job`: Embeddings from the actors, in input order."""

        def produce(paths: Iterable[str], *, batch_size: int | None = None, workers: int | None = None,
                    stop: threading.Event | None = None, debug: bool = False, **_: Any) -> RayRecords:  # fmt: skip
            options = RunOptions(batch_size=batch_size, workers=workers, debug=debug)
            records = self.classify(classifier, paths, options, stop)
            records.task, records.normalize = "embed", normalize
            return records

        return produce

    def placement(self, device: str, threads: int | None) -> tuple[int, int, int, str]:
        """(actors, CPUs per actor, GPUs per actor, device in the actor) for this cluster, --device and --threads.

        A cluster that reports no CPUs yet (an autoscaler starting from zero) is left to Ray to grow.
        """
        assert self.cluster is not None
        device = (self.device or device).lower()
        cpus, gpus = self.cluster.cpus, self.cluster.gpus
        if device.startswith("cuda") and gpus < 1:
            raise UsageError(f"«device» {device}: the Ray cluster has no GPUs")
        use_gpu = device.startswith("cuda") or (device == "auto" and gpus >= 1)
        threads = 1 if use_gpu else (threads or 1)
        actors = self.actors or (int(gpus) if use_gpu else max(1, int(cpus) // 2))
        if cpus and actors * threads > cpus - 1:
            raise UsageError(
                f"«actors» {actors} with {threads} thread(s) each needs {actors * threads} CPUs and one more "
                f"for decoding; the Ray cluster has {cpus:g}"
            )
        if use_gpu and actors > gpus:
            raise UsageError(f"«actors» {actors} with a GPU each: the Ray cluster has {gpus:g} GPUs")
        return actors, threads, 1 if use_gpu else 0, "cuda" if use_gpu else "cpu"


def _cluster() -> Cluster:
    import ray

    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return Cluster(nodes=nodes, cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Ray's INFO lines, progress bars and deprecation notes stay off the terminal for the run."""
    loggers = {name: logging.getLogger(name) for name in _QUIET_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        for logger in loggers.values():
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, logger in loggers.items():
                logger.setLevel(levels[name])


@contextlib.contextmanager
def _backend_errors_quiet() -> Iterator[None]:
    """The driver's own Ray core logs only fatal errors on stderr (unless RAY_BACKEND_LOG_LEVEL says otherwise).

    Ray Data's actor pool trips a core warning logged as an error on every run
    ('constructor arguments in the object store and max_restarts > 0'); the level is
    read when the driver connects, so it is set for `ray.init` and put back after.
    """
    if "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    try:
        with _stderr_silenced():  # where the core announces the level it just read
            yield
    finally:
        os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null meanwhile (C++ logging writes there, not to sys.stderr)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Ordered output, no progress bars, no stats dump: set for the run, restored after."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    wanted = {"enable_progress_bars": False, "enable_auto_log_stats": False, "print_on_execution_start": False}
    saved = {key: getattr(ctx, key) for key in wanted if hasattr(ctx, key)}
    preserve = ctx.execution_options.preserve_order
    for key in saved:
        setattr(ctx, key, wanted[key])
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(ctx, key, value)
        ctx.execution_options.preserve_order = preserve


def _bound_worker(spec: ModelSpec) -> type:
    """A ModelWorker class with the spec inside it: no constructor arguments for Ray to keep around."""

    class ImgclassModel(ModelWorker):
        def __init__(self) -> None:
            super().__init__(spec)

    return ImgclassModel


def _cause(err: BaseException) -> ImgclassError | None:
    """The imgclass error (a model that will not load on a worker, say) behind a Ray exception, if any."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and len(seen) < 12 and current not in seen:
        seen.append(current)
        original = getattr(current, "cause", None)
        if isinstance(original, ImgclassError):
            return original
        if isinstance(current, ImgclassError) and type(current).__module__.startswith("imgclass"):
            return current
        current = original if isinstance(original, BaseException) else (current.__cause__ or current.__context__)
    return _named_cause(err)


def _named_cause(err: BaseException) -> ImgclassError | None:
    """An actor that failed to start reports its error as text only: 'imgclass.errors.ModelError: ...'."""
    import re

    from imgclass import errors

    found = re.findall(r"imgclass\.errors\.(\w+): ([^\n]+)", str(err))
    if not found:
        return None
    name, message = found[-1]
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, ImgclassError)) or kind is errors.MissingExtra:
        return None
    return kind(message.strip())


class RayRecords:
    """The records of one ray run, in input order; `stats` and `workers` fill in as they come."""

    def __init__(self, engine: RayEngine, classifier: Classifier, paths: Iterable[str], options: RunOptions,
                 stop: threading.Event):  # fmt: skip
        self.engine, self.classifier, self.options, self.stop = engine, classifier, options, stop
        self._paths = paths
        self.stats = Stats()
        self.workers: set[int] = set()  # model actor processes that returned records (more than --actors: restarts)
        self.actors = 0
        self.seconds = 0.0
        self.task, self.normalize = "classify", False  # "embed": Embeddings (bottleneck vectors)

    def __iter__(self) -> Iterator[Any]:
        paths = list(self._paths)
        if not paths:
            self.classifier.model.runner  # noqa: B018 - a model that cannot load fails the run, as locally
            return
        start = time.perf_counter()
        try:
            for _, record in self._ordered(self._batches(paths), len(paths)):
                yield record
                if self.stop.is_set():
                    break
        finally:
            self.seconds = time.perf_counter() - start
            if self.engine.cluster is not None:
                self.engine.cluster.extra["actor_processes"] = len(self.workers)

    def _dataset(self, paths: list[str]):
        import pyarrow as pa
        import ray.data

        clf, opts = self.classifier, self.options
        actors, threads, gpus, device = self.engine.placement(clf.options.device, clf.options.threads)
        self.actors = actors
        if self.engine.cluster is not None:
            self.engine.cluster.actors = actors
        spec = ModelSpec.of(clf, opts.top, opts.threshold, threads, device, self.task, self.normalize,
                            self.engine.precision)  # fmt: skip
        if opts.groups is not None or opts.abstain_below is not None:
            grouping = clf.grouping(opts.groups) if opts.groups is not None else None
            spec = replace(spec, grouping=grouping, abstain_below=opts.abstain_below)
        rows = max(1, min(MAX_BLOCK_ROWS, math.ceil(len(paths) / max(2.0, 2 * self.engine.cluster.cpus))))  # type: ignore[union-attr]
        tables = [
            pa.table({
                "index": pa.array(range(start, min(start + rows, len(paths))), pa.int64()),
                "path": pa.array([_shown(p) for p in paths[start : start + rows]], pa.string()),
                "location": pa.array([locate(p) for p in paths[start : start + rows]], pa.binary()),
                "raw": pa.array([path_bytes(p) or "" for p in paths[start : start + rows]], pa.string()),
            })
            for start in range(0, len(paths), rows)
        ]  # fmt: skip
        batch_size = opts.batch_size or default_batch_size(clf.model)
        ds: Any = ray.data.from_arrow(tables)
        ds = ds.map_batches(
            prepare_batch, fn_kwargs={"transform": clf.model.transform, "decode": clf.decode, "debug": opts.debug},
            batch_size=None, batch_format="numpy", num_cpus=1, max_retries=TASK_RETRIES,
        )  # fmt: skip
        return ds.map_batches(
            _bound_worker(spec), batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads, num_gpus=gpus,
            max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS,
        )  # fmt: skip

    def _batches(self, paths: list[str]) -> Iterator[dict]:
        with _quiet(), _data_context():
            batches = iter(self._dataset(paths).iter_batches(batch_size=None, batch_format="numpy"))
            try:
                while True:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        return
                    except ImgclassError:
                        raise  # a second Ctrl-C (Interrupted), raised by the signal handler
                    except Exception as err:  # noqa: BLE001 - Ray's many failure types: one message
                        cause = _cause(err)
                        if cause is not None:
                            raise cause from None  # a model that will not load on a worker: exit 3, as locally
                        raise RayJobError(f"the Ray job failed: {first_line(err)}") from None
                    yield batch
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()

    def _ordered(self, batches: Iterator[dict], total: int) -> Iterator[tuple[int, dict]]:
        """Rows by input index, each once: a repeat (a retried task) is dropped, a gap fails the job."""
        import pickle

        following, waiting = 0, {}
        for batch in batches:
            self.workers.update(int(w) for w in batch["worker"])
            for i, index in enumerate(batch["index"].tolist()):
                if index < following or index in waiting:
                    continue
                waiting[index] = pickle.loads(batch["record"][i])  # from our own actors
                self._account(batch, i, waiting[index])
            while following in waiting:
                yield following, waiting.pop(following)
                following += 1
            if self.stop.is_set():
                return
        if following != total:
            raise RayJobError(f"the Ray job returned {following} of {total} records; run again with «resume»")

    def _account(self, batch: dict, i: int, record: Any) -> None:
        stats = self.stats
        stats.images += 1
        stats.failed += record.error is not None
        stats.decode += float(batch["decode_s"][i])
        stats.preprocess += float(batch["preprocess_s"][i])
        stats.inference += float(batch["inference_s"][i])


def _shown(path: str) -> str:
    from imgclass.data.images import display_path

    return display_path(path)
