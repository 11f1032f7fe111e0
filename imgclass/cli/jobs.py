"""The one job runner of the commands that read many images: predict/batch, embed and evaluate.

Around its own work every such command does the same: open the engine (a missing extra
exits 2 before any model is fetched), check the inputs and outputs before a model is
resolved or downloaded, load the classifier, run with a progress line on a terminal and
one error line per failed input, and close with the summary, the engine's line and the
signal that stopped the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclass._util.text import printable
from imgclass.cli.environment import Environment
from imgclass.cli.options import pop_engine_options
from imgclass.errors import UsageError

if TYPE_CHECKING:
    from imgclass.classifier import Classifier
    from imgclass.cli.render import ProgressLine
    from imgclass.output.sinks import Sink
    from imgclass.records import Record
    from imgclass.tasks.jobs import JobOptions, Summary


def check_not_an_input(output: Path | None, inputs: list[str], option: str = "--output") -> None:
    """Never overwrite an input: refuse an output that is one of the files given."""
    if output is None or not output.exists():
        return
    for item in inputs:
        try:
            if os.path.isfile(item) and os.path.samefile(item, output):
                raise UsageError(f"{option} {printable(str(output))} is one of the inputs; it would be overwritten")
        except OSError:
            continue


def engine_line(images: int, seconds: float, cluster: str) -> str:
    rate = images / seconds if seconds > 0 else 0.0
    return f"ray: {images} images in {seconds:.1f} s ({rate:.1f} images/s) on {cluster}"


class JobRunner:
    """One command's job: `check`, `load`, then `run` (records) or `running` (a progress frame), then `finish`."""

    def __init__(self, env: Environment, given: dict[str, Any], label: str | None):
        from imgclass.engines import open_engine

        self.env, self.given, self.label = env, given, label
        self.engine = open_engine(pop_engine_options(given))  # a missing extra: exit 2 before any model is fetched
        self.showed_progress = False

    def check(self, inputs: list[str], outputs: dict[str, Path | None] | None = None) -> None:
        """The inputs exist and no output is one of them: before any model is resolved or downloaded."""
        from imgclass.data.sources import check_inputs
        from imgclass.engines import is_uri

        self.engine.check_inputs(inputs)
        if not any(is_uri(item) for item in inputs):
            check_inputs(inputs)
        for option, path in (outputs or {}).items():
            check_not_an_input(path, inputs, option)

    def load(self, background: bool = True) -> Classifier:
        from imgclass.cli.loading import load_classifier

        return load_classifier(self.env, self.given, background)

    @contextmanager
    def running(self, total: int | None = None) -> Iterator[ProgressLine | None]:
        """A progress line on a terminal's stderr for the length of the block (None elsewhere, with -q, or no label)."""
        from imgclass.cli.render import progress_line

        progress = progress_line(self.env, self.label) if self.label else None
        self.showed_progress = progress is not None
        if progress is not None and total is not None:
            progress.start(total)
        try:
            yield progress
        finally:
            if progress is not None:
                progress.clear()

    def run(self, classifier: Classifier, inputs: list[str], sink: Callable[[ProgressLine | None], Sink],
            options: JobOptions, *, done: set[bytes], produce: Callable[..., Any] | None = None, human: bool = False,
            close: Callable[[], None] = lambda: None) -> Summary:  # fmt: skip
        """Run the job into the sink `sink(progress)` builds; `close` (the output) runs however it ends."""
        from imgclass.tasks.jobs import run_job

        try:
            with self.running() as progress:
                options = replace(options, count_first=progress is not None, debug=self.env.debug)
                events = Events(self.env, progress, human)
                return run_job(classifier, inputs, sink(progress), options, events, done, produce, self.engine)
        finally:
            close()

    def finish(self, summary: Summary, done: str, written: str) -> int:
        """The closing lines on stderr ("3 classified, 0 failed"), and the exit code."""
        env = self.env
        if env.verbose or self.showed_progress:
            skipped = f", {summary.skipped} already in the output" if summary.skipped else ""
            env.note(f"{summary.images - summary.failed} {done}, {summary.failed} failed{skipped}")
        if summary.cluster is not None and not env.quiet:
            env.note(engine_line(summary.images, summary.seconds.get("wall", 0.0), summary.cluster.describe()))
        if summary.signal is not None and not summary.broken_pipe:
            env.err(f"stopped by signal {summary.signal}; {summary.images} {written} written")
        return summary.exit_code


class Events:
    """Per-input error lines on stderr (unless the table on the terminal shows them), and progress."""

    def __init__(self, env: Environment, progress: ProgressLine | None, human: bool):
        self.env, self.progress = env, progress
        self.lines = not env.quiet and not (human and env.stderr_isatty)

    def started(self, total: int | None) -> None:
        if self.progress is not None:
            self.progress.start(total)

    def record(self, record: Record) -> None:
        from imgclass.cli.render import shown

        if record.error is not None and self.lines:
            if self.progress is not None:
                self.progress.clear()
            self.env.err(f"{shown(record)}: {record.error}")
        if self.progress is not None:
            self.progress.advance()
