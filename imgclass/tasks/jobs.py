"""A batch job: classify inputs into an output, resumable, stoppable by signals, always whole.

The CLI's `predict` and `batch` are this job with a renderer attached. The job
skips inputs an output already holds (--resume), turns SIGINT/SIGTERM into a
stop that lets the records in flight be written, writes each record through the
sink, and closes the sink in `finally` so a JSON array is valid however the run
ends. It reports to an `Events` object (progress, per-input errors) and returns
a Summary; it prints nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from imgclass._util.interrupt import stop_on_signals
from imgclass.classifier import Classifier
from imgclass.data.sources import path_key
from imgclass.engines import Cluster, Engine, RunOptions
from imgclass.errors import ExitCode
from imgclass.output.sinks import Sink


class Events(Protocol):
    """What a front end hears from a running job."""

    def started(self, total: int | None) -> None: ...
    def record(self, record: Any) -> None: ...


@dataclass(frozen=True)
class JobOptions:
    top: int = 5
    threshold: float | None = None  # None: the model's default (0.5 multi-label, else 0)
    recursive: bool = False
    batch_size: int | None = None
    workers: int | None = None
    count_first: bool = False  # list every input before starting, so progress has a total
    debug: bool = False
    null: bool = False  # the list on stdin ('-') is NUL-separated
    stdin: Any = None  # where '-' reads from (default: sys.stdin)
    groups: Any = None  # rank groups of classes: "coarse", a group file, a mapping, a Grouping
    abstain_below: float | None = None  # records whose top probability is below it say abstained


@dataclass
class Summary:
    images: int = 0
    failed: int = 0
    skipped: int = 0  # already in the output (--resume)
    signal: int | None = None
    broken_pipe: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # decode, preprocess, inference (summed), wall
    cluster: Cluster | None = None  # what a distributed engine ran on

    @property
    def exit_code(self) -> int:
        if self.signal is not None and not self.broken_pipe:
            return 128 + self.signal
        return ExitCode.INPUT_FAILED if self.failed else ExitCode.OK


def _pending(inputs: Iterable[str], options: JobOptions, engine: Engine, done: set[bytes], summary: Summary
             ) -> Iterator[str]:  # fmt: skip
    stdin = options.stdin if options.stdin is not None else sys.stdin
    for path in engine.expand(inputs, recursive=options.recursive, stdin=stdin, null=options.null):
        if done and path_key(path) in done:
            summary.skipped += 1
            continue
        yield path


def run_job(
    classifier: Classifier,
    inputs: Iterable[str],
    sink: Sink,
    options: JobOptions,
    events: Events,
    done: set[bytes],
    produce: Callable[..., Any] | None = None,
    engine: Engine | None = None,
) -> Summary:
    """Classify `inputs` into `sink` on `engine` (default: local); `done` holds the inputs (`sources.path_key`)
    the output already has.

    `produce`: what makes the records, called like `classifier.classify` without top/threshold
    (e.g. `engine.embedder(classifier, normalize=True)` writes vectors instead).
    """
    engine = engine or Engine()
    with engine:  # a distributed engine connects before the signal handlers go in, and leaves after
        summary = Summary(cluster=engine.cluster)
        paths: Iterable[str] = _pending(inputs, options, engine, done, summary)
        if options.count_first:
            paths = list(paths)
        events.started(len(paths) if isinstance(paths, list) else None)
        with stop_on_signals() as stop:
            start = time.perf_counter()
            records = _records(classifier, paths, options, produce, engine, stop.event)
            try:
                _write_all(records, sink, events, summary)
            except BrokenPipeError:
                summary.broken_pipe = True
                stop.event.set()
            summary.signal = stop.signal
            stats = records.stats
            summary.seconds = {"decode": stats.decode, "preprocess": stats.preprocess, "inference": stats.inference,
                               "wall": time.perf_counter() - start}  # fmt: skip
    return summary


def _records(classifier: Classifier, paths: Iterable[str], options: JobOptions, produce: Callable[..., Any] | None,
             engine: Engine, stop: threading.Event) -> Any:  # fmt: skip
    if produce is None:
        run = RunOptions(options.top, options.threshold, options.batch_size, options.workers, options.debug,
                         options.groups, options.abstain_below)  # fmt: skip
        return engine.classify(classifier, paths, run, stop)
    return produce(paths, batch_size=options.batch_size, workers=options.workers, stop=stop, expand_inputs=False,
                   debug=options.debug)  # fmt: skip


def _write_all(records: Iterable[Any], sink: Sink, events: Events, summary: Summary) -> None:
    started = False
    try:
        for record in records:
            if not started:  # nothing is written before the model has run once
                sink.start()
                started = True
            sink.write(record)
            summary.images += 1
            summary.failed += record.error is not None
            events.record(record)
        if not started:
            sink.start()
            started = True
    finally:
        if started:
            sink.close()
