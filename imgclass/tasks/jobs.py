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
from imgclass.data.sources import frame_key, is_video_name, path_key
from imgclass.data.video import Every, VideoOptions, expand_frames
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
    video: bool = False  # folders and globs list video files too (a video named on its own always counts)
    every: Every = Every()  # which frames of a video are classified


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


def _listed(inputs: Iterable[str], options: JobOptions, engine: Engine) -> Iterable[str]:
    stdin = options.stdin if options.stdin is not None else sys.stdin
    video = {"video": True} if options.video else {}  # an engine without video support never sees the flag
    return engine.expand(inputs, recursive=options.recursive, stdin=stdin, null=options.null, **video)


def _pending(paths: Iterable[str], options: JobOptions, done: set[bytes], summary: Summary,
             max_pixels: int | None, frames: bool) -> Iterator[Any]:  # fmt: skip
    """The inputs to run: paths and URLs, and (`frames`) the sampled frames of video files; those in `done` skipped.

    Frames are decoded here, one at a time, as the pipeline asks for them; a frame already
    in the output is skipped before it is converted.
    """

    def wanted(path: str, index: int) -> bool:
        if done and frame_key(path_key(path), index) in done:
            summary.skipped += 1
            return False
        return True

    items = expand_frames(paths, VideoOptions(options.every, max_pixels), wanted) if frames else paths
    for item in items:
        whole = item if isinstance(item, str) else item.path if item.index is None else None  # a file, not a frame
        if done and whole is not None and path_key(whole) in done:
            summary.skipped += 1
            continue
        yield item


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
        listed = _listed(inputs, options, engine)
        frames = produce is None  # classification takes video files frame by frame; embeddings take images only
        if options.count_first:
            listed = list(listed)
            frames = frames and any(is_video_name(path) for path in listed)  # frames are never listed ahead
        paths: Iterable[Any] = _pending(listed, options, done, summary, classifier.decode.max_pixels, frames)
        if options.count_first and not frames:
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
