"""`imgclass predict` and `imgclass batch`: parse, load the classifier, run the job, render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from imgclass.cli.environment import Environment
from imgclass.cli.options import classify_options, engine_options, pop_engine_options
from imgclass.errors import UsageError
from imgclass.output.sinks import Sink
from imgclass.records import Record

PREDICT_EXAMPLES = """\b
Examples:
  imgclass predict cat.jpg dog.png --top 3
  imgclass predict photo.jpg --model resnet50 --format json"""

BATCH_EXAMPLES = """\b
Examples:
  imgclass batch photos/ --recursive --output results.jsonl
  find photos -name '*.jpg' | imgclass batch - --format csv > results.csv
  find photos -type f -print0 | imgclass batch - --null -o results.jsonl
  imgclass batch photos/ -m resnet50 -m inception-v3 --tta flip --report report.html -o results.jsonl
  imgclass batch s3://bucket/photos/ -r --engine ray --ray-address auto -o results.jsonl"""


null_option = click.option(
    "--null", "-0", is_flag=True, help="The list '-' reads from stdin is NUL-separated (find -print0)."
)


@click.command(epilog=PREDICT_EXAMPLES)
@click.argument("images", nargs=-1, required=True)
@null_option
@classify_options
def predict(env: Environment, images: tuple[str, ...], **values: Any) -> int:
    """Classify one or more images and print the top labels ('-' reads paths from stdin)."""
    return classify(env, list(images), values, view="predict")


@click.command(epilog=BATCH_EXAMPLES)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--recursive", "-r", is_flag=True, help="Descend into subdirectories.")
@click.option("--resume", is_flag=True, help="With --output: skip inputs already in FILE, append the rest.")
@null_option
@engine_options
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML page of the results (thumbnails, top-k bars, filters).",
)
@classify_options
def batch(
    env: Environment, inputs: tuple[str, ...], recursive: bool, resume: bool, report: Path | None, **values: Any
) -> int:
    """Classify every image in directories, files or globs ('-' reads paths from stdin); one record per image."""
    return classify(env, list(inputs), values, view="batch", recursive=recursive, resume=resume, report=report)


def classify(env: Environment, inputs: list[str], values: dict[str, Any], *, view: str, recursive: bool = False,
             resume: bool = False, report: Path | None = None) -> int:  # fmt: skip
    from imgclass.data.sources import check_found, check_inputs
    from imgclass.engines import is_uri, open_engine
    from imgclass.output.guard import Inputs
    from imgclass.output.sinks import choose_format

    engine = open_engine(pop_engine_options(values))  # a missing extra is exit 2 before any model is fetched
    engine.check_inputs(inputs)
    if not any(is_uri(item) for item in inputs):
        check_inputs(inputs)  # before any model is resolved or downloaded
        check_found(inputs, recursive)
    fmt = choose_format(values["fmt"], values["output"], bool(env.stdout_isatty))
    if resume and values["output"] is None:
        raise UsageError("--resume needs --output FILE")
    lock = guard_records(values["output"], report, Inputs.of(inputs, recursive), values.pop("force"), resume)
    try:
        return _classify(env, inputs, values, fmt, lock, view=view, recursive=recursive, resume=resume,
                         report=report, engine=engine)  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _classify(env: Environment, inputs: list[str], values: dict[str, Any], fmt: str, lock, *, view: str,
              recursive: bool, resume: bool, report: Path | None, engine) -> int:  # fmt: skip
    from imgclass.cli.loading import load_classifier
    from imgclass.cli.render import progress_line
    from imgclass.output.targets import check_output, open_target
    from imgclass.tasks.jobs import JobOptions, run_job

    existing = check_output(values["output"], fmt, resume)  # nothing is written before the model loads
    classifier = load_classifier(env, values)
    if lock is not None:
        job = job_header(classifier, "records", format=fmt, top=values["top"], threshold=values["threshold"],
                         tta=classifier.tta)  # fmt: skip
        if resume:
            lock.check(job)
        lock.commit(job)
    target = open_target(values["output"], fmt, resume, env.stdout, existing, classifier.multi_label)
    progress = progress_line(env, data_on_stdout=target.stream is env.stdout) if view == "batch" else None
    options = JobOptions(values["top"], values["threshold"], recursive, values["batch_size"], values["workers"],
                         count_first=progress is not None, debug=env.debug, null=values["null"],
                         stdin=env.stdin)  # fmt: skip
    try:
        sink = _sink(env, fmt, target, view, progress, classifier.multi_label)
        if report is not None:
            sink = _with_report(sink, report, classifier, values["workers"])
        events = _Events(env, progress, human=fmt == "table")
        summary = run_job(classifier, inputs, sink, options, events, target.done, engine=engine)
    finally:
        if progress is not None:
            progress.clear()
        target.close()
    if env.verbose or progress is not None or (view == "batch" and env.progress):
        skipped = f", {summary.skipped} already in the output" if summary.skipped else ""
        env.note(f"{summary.images - summary.failed} classified, {summary.failed} failed{skipped}")
    if summary.cluster is not None and not env.quiet:
        env.note(engine_line(summary.images, summary.seconds.get("wall", 0.0), summary.cluster.describe()))
    if summary.signal is not None and not summary.broken_pipe:
        env.err(f"stopped by signal {summary.signal}; {summary.images} records written")
    return summary.exit_code


def job_header(classifier, kind: str, **options: Any) -> dict[str, Any]:
    """What --resume compares: the model's bytes (by sha256), its preset, and the options that shape the output."""
    from imgclass.store.index import sha256_of

    return {"kind": kind, "model": classifier.name, "model_sha256": [sha256_of(m.path) for m in classifier.members],
            "preset": classifier.preset, **options}  # fmt: skip


def guard_records(output: Path | None, report: Path | None, inputs, force: bool, resume: bool):
    """Before any work: --output and --report may be written (see output.guard); the lock on --output, held."""
    from imgclass.output.guard import RECORDS, REPORT, SHARD, JobLock, guard, guard_folder
    from imgclass.output.shards import shard_files

    if report is not None:
        if output is not None and report.resolve() == output.resolve():
            raise UsageError("--report and --output name the same file; give the report its own (report.html)")
        guard(report, REPORT, inputs=inputs, force=force, option="--report")
    if output is None:
        return None
    if output.is_dir() and not output.is_symlink():
        guard_folder(output, [p.name for _, p in shard_files(output)], SHARD, inputs=inputs, force=resume,
                     option="--output")  # fmt: skip
        return JobLock(output, "--output", output / ".imgclass-job").acquire()
    guard(output, RECORDS, inputs=inputs, force=force, resume=resume, option="--output")
    if not os.path.isfile(output) and os.path.exists(output):
        return None  # /dev/null, a pipe: nothing to lock
    return JobLock(output, "--output").acquire()


def engine_line(images: int, seconds: float, cluster: str) -> str:
    rate = images / seconds if seconds > 0 else 0.0
    return f"ray: {images} images in {seconds:.1f} s ({rate:.1f} images/s) on {cluster}"


def _sink(env: Environment, fmt: str, target, view: str, progress, multi_label: bool):
    from imgclass.cli.render import BatchRows, PredictTable, guarded
    from imgclass.output.sinks import make_sink

    sink: Sink
    if fmt == "table":
        sink = PredictTable(env) if view == "predict" else BatchRows(env)
    else:
        sink = make_sink(fmt, target.stream, header=target.fresh, name=target.name, columns=target.columns,
                         multi_label=multi_label)  # fmt: skip
    return guarded(env, sink, progress, target.stream is env.stdout)


def _with_report(sink: Sink, path: Path, classifier, workers: int | None) -> Sink:
    from imgclass.inference.pipeline import default_workers
    from imgclass.output.report import ReportOptions, ReportSink, TeeSink

    tta = f" · TTA {classifier.tta}" if classifier.tta != "none" else ""
    options = ReportOptions(
        subtitle=f"{classifier.name} · {classifier.preset}{tta}", workers=workers or default_workers()
    )
    return TeeSink(sink, ReportSink(path, options))


class _Events:
    """Per-input error lines on stderr (unless the table on the terminal shows them), and progress."""

    def __init__(self, env: Environment, progress, human: bool):
        self.env, self.progress = env, progress
        self.lines = not env.quiet and not (human and env.stderr_isatty)

    def started(self, total: int | None) -> None:
        if self.progress is not None:
            self.progress.start(total)

    def record(self, record: Record) -> None:
        if record.error is not None and self.lines:
            if self.progress is not None:
                self.progress.clear()
            self.env.err(f"{record.path}: {record.error}")
        if self.progress is not None:
            self.progress.advance()
