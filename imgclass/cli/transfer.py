"""`imgclass embed` and `imgclass train`: bottleneck vectors, and a new head for your own classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from imgclass.cli import params as p
from imgclass.cli.classify import job_header
from imgclass.cli.environment import Environment
from imgclass.cli.options import display, values

EMBED_EXAMPLES = """\b
Examples:
  imgclass embed photos/ -r --model resnet50 --output vectors.npy    # + vectors.paths.txt
  imgclass embed photos/*.jpg --normalize --output vectors.jsonl --resume"""

TRAIN_EXAMPLES = """\b
Examples:
  imgclass train flowers/ --model inception-v3 --output flowers.onnx
  imgclass train data/ --augment 4 --val-split 0.25 --format json > report.json
  imgclass predict rose.jpg --model flowers.onnx"""

FAILURES_SHOWN = 20


def _load(env: Environment, values: dict[str, Any]):
    from imgclass.cli.loading import load_classifier

    classifier = load_classifier(env, values)
    head = classifier.bottleneck.head  # ModelError (exit 3) when the graph has no bottleneck
    if env.verbose:
        env.note(f"bottleneck {head.pooled.name} ({head.dim} values, {head.pool} of {head.feature_map.name}, "
                 f"then {head.linear})")  # fmt: skip
    return classifier


def embed(
    ctx: typer.Context,
    inputs: p.Inputs,
    output: p.VectorOutput = None,
    fmt: p.VectorFormatOpt = None,
    normalize: p.Normalize = False,
    recursive: p.Recursive = False,
    resume: p.VectorResume = False,
    force: p.ReplaceOutput = False,
    model: p.Models = None,
    preset: p.Preset = None,
    labels: p.Labels = None,
    activation: p.ActivationOpt = p.Activation.auto,
    offline: p.Offline = False,
    size: p.Size = None,
    resize: p.Resize = None,
    crop_pct: p.CropPct = None,
    interpolation: p.InterpolationOpt = None,
    mean: p.Mean = None,
    std: p.Std = None,
    bgr: p.Bgr = False,
    exact_decode: p.ExactDecode = False,
    device: p.Device = "auto",
    precision: p.PrecisionOpt = p.Precision.f32,
    threads: p.Threads = None,
    batch_size: p.BatchSize = None,
    workers: p.Workers = None,
    engine: p.EngineOpt = p.Engine.local,
    ray_address: p.RayAddress = None,
    actors: p.Actors = None,
    allow_truncated: p.AllowTruncated = False,
    max_pixels: p.MaxPixels = None,
    url_timeout: p.UrlTimeout = 30.0,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """One bottleneck vector per image: the pooled features the model's classifier reads ('-' reads paths from stdin).

    \b
    .npy: a float32 array, row i for line i of FILE.paths.txt (failed images get no row).
    .jsonl: {"path", "model", "vector", "error"} per image, failures included.
    .parquet: the same columns (needs: pip install 'imgclass\\[parquet]').
    """
    given = values(locals())
    return _embed_job(display(ctx, verbose, quiet, color, debug), given)


def _embed_job(env: Environment, given: dict[str, Any]) -> int:
    """The embed command's work: check inputs and output, load, write one vector per image."""
    from imgclass.cli.jobs import JobRunner
    from imgclass.output.vectors import open_vectors, require_pyarrow, vector_format

    inputs, output, recursive = given["inputs"], given["output"], given["recursive"]
    resume, normalize, force = given["resume"], given["normalize"], given.pop("force")
    job = JobRunner(env, given, "embedding")
    job.check(list(inputs), recursive)
    kind = vector_format(given["fmt"], output)
    if kind == "parquet":
        require_pyarrow()  # before any model is loaded
    lock = guard_vectors(output, kind, list(inputs), recursive, force, resume)
    try:
        classifier = _load(env, given)
        if lock is not None:
            header = job_header(classifier, "vectors", format=kind, normalize=normalize)
            if resume:
                lock.check(header)
            lock.commit(header)
        target = open_vectors(output, kind, resume, env.stdout, classifier.bottleneck.dim, classifier.name)
        return _embed(env, job, classifier, target, list(inputs), output, kind, recursive, normalize, given)
    finally:
        if lock is not None:
            lock.release()


def guard_vectors(output: Path | None, fmt: str, inputs: list[str], recursive: bool, force: bool, resume: bool):
    """Before any work: the vectors file (and an .npy's paths list) may be written; the lock on it, held."""
    import os

    from imgclass.output import guard as g
    from imgclass.output.vectors import paths_file

    if output is None:
        return None
    seen = g.Inputs.of(inputs, recursive)
    kind = {"npy": g.VECTORS_NPY, "jsonl": g.VECTORS_JSONL, "parquet": g.VECTORS_PARQUET}[fmt]
    g.guard(output, kind, inputs=seen, force=force, resume=resume, option="--output")
    if fmt == "npy":
        g.guard(paths_file(output), g.PATHS_LIST, inputs=seen, force=force, resume=resume, option="--output")
    if os.path.exists(output) and not os.path.isfile(output):
        return None  # /dev/null, a pipe: nothing to lock
    return g.JobLock(output, "--output").acquire()


def _embed(env: Environment, job, classifier, target, inputs: list[str], output: Path | None, fmt: str,
           recursive: bool, normalize: bool, given: dict[str, Any]) -> int:  # fmt: skip
    from imgclass.cli.render import guarded
    from imgclass.output.vectors import resume_key
    from imgclass.tasks.jobs import JobOptions

    done = {line.encode("utf-8") for line in target.sink.done} if fmt == "npy" else target.done
    options = JobOptions(recursive=recursive, batch_size=given["batch_size"], workers=given["workers"],
                         stdin=env.stdin, key=resume_key(fmt))  # fmt: skip
    job.data_on_stdout = output is None
    summary = job.run(classifier, inputs, lambda progress: guarded(env, target.sink, progress, output is None),
                      options, done=done, produce=job.engine.embedder(classifier, normalize), close=target.close)  # fmt: skip
    return job.finish(summary, f"embedded ({classifier.bottleneck.dim} values each)", "images")


def train(
    ctx: typer.Context,
    data: p.TrainData,
    output: p.ModelOutput,
    val_split: p.ValSplit = 0.2,
    augment: p.Augment = 2,
    seed: p.Seed = 0,
    cs: p.Cs = (0.01, 0.1, 1.0, 10.0, 100.0),
    folds: p.Folds = 5,
    max_iter: p.MaxIter = 1000,
    no_cache: p.NoCache = False,
    force: p.ReplaceOutput = False,
    model: p.Models = None,
    preset: p.Preset = None,
    labels: p.Labels = None,
    activation: p.ActivationOpt = p.Activation.auto,
    offline: p.Offline = False,
    size: p.Size = None,
    resize: p.Resize = None,
    crop_pct: p.CropPct = None,
    interpolation: p.InterpolationOpt = None,
    mean: p.Mean = None,
    std: p.Std = None,
    bgr: p.Bgr = False,
    exact_decode: p.ExactDecode = False,
    device: p.Device = "auto",
    precision: p.PrecisionOpt = p.Precision.f32,
    threads: p.Threads = None,
    batch_size: p.BatchSize = None,
    workers: p.Workers = None,
    allow_truncated: p.AllowTruncated = False,
    max_pixels: p.MaxPixels = None,
    url_timeout: p.UrlTimeout = 30.0,
    fmt: p.ReportFormat = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Train a classifier for your own classes on a model's frozen bottleneck; write a standalone ONNX model.

    \b
    DATA: one folder per class (the folder name is the label), or DATA/train and DATA/val.
    Without val/, --val-split of each class is held out (seeded, stratified). A class needs
    at least 5 training images. The head is a multinomial logistic regression, its C chosen
    by cross-validation; bottleneck vectors are cached, so a second run with other settings
    does not run the model again. `imgclass predict x.jpg --model OUTPUT` then prints your labels.
    """
    given = values(locals())
    return _train(display(ctx, verbose, quiet, color, debug), given)


def _train(env: Environment, given: dict[str, Any]) -> int:
    """The train command's work: guard the output, read the data, fit the head, report."""
    from imgclass.errors import ExitCode
    from imgclass.output import guard as g
    from imgclass.tasks.train import TrainOptions, read_training_data, require_sklearn
    from imgclass.tasks.train import train as train_head

    require_sklearn()
    data, output, fmt = given["data"], given["output"], given["fmt"]
    val_split, seed = given["val_split"], given["seed"]
    g.guard(output, g.MODEL, inputs=g.Inputs.of([data], recursive=True), force=given.pop("force"), option="--output")
    split = read_training_data(data, val_split, seed)  # refusals before any model is loaded
    classifier = _load(env, given)
    options = TrainOptions(val_split, given["augment"], seed, given["cs"], given["folds"], given["max_iter"],
                           not given["no_cache"], given["batch_size"], given["workers"], env.debug)  # fmt: skip
    from imgclass.cli.render import progress_line

    progress = progress_line(env, "features")
    try:
        result = train_head(classifier, split, output, options, _TrainEvents(progress))
    finally:
        if progress is not None:
            progress.clear()
    report = result.report
    if fmt == "json":
        from imgclass.cli.render import print_json

        print_json(env, report.to_dict())
    elif report.signal is None:
        show_train_report(env, report)
    if report.signal is not None:
        env.err(f"stopped by signal {report.signal} while reading features; no model written")
        return 128 + report.signal
    if report.failed:
        env.note(f"{report.failed} unreadable image(s) skipped (listed in the report); model written to {output}")
        return ExitCode.INPUT_FAILED
    env.note(f"model written to {output}; try: imgclass predict IMAGE --model {output}")
    return ExitCode.OK


class _TrainEvents:
    def __init__(self, progress):
        self.progress = progress

    def started(self, total: int) -> None:
        if self.progress is not None:
            self.progress.start(total)

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance()


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _summary(report) -> dict[str, str]:
    best = report.cv_scores.get(f"{report.c:g}", {})
    correct = sum(report.confusion[i][i] for i in range(len(report.confusion)))
    head = report.bottleneck
    return {
        "model": f"{report.model} → {report.output}",
        "dataset": f"{report.dataset} ({report.layout}; {len(report.classes)} classes: {report.train_images} training "
        f"images × {1 + report.augment} views, {report.val_images} validation images)",
        "bottleneck": f"{head['pooled']} ({report.dim} values; {head['pool']}, then {head['linear']})",
        "C": f"{report.c:g} ({report.folds}-fold CV: accuracy {_percent(best.get('accuracy'))}, "
        f"log-loss {best.get('log_loss', float('nan')):.3f})",
        "val top-1": f"{_percent(report.val_top1)}  ({correct}/{report.val_images})",
        "skipped": f"{report.failed} unreadable image(s)",
        "cache": f"{report.cache['hits']} vectors read, {report.cache['computed']} computed by the model"
        + ("" if report.cache["enabled"] else " (cache off)"),
        "seconds": ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()),
    }


def show_train_report(env: Environment, report) -> None:
    from imgclass.cli.learn import _heading, _lines
    from imgclass.cli.render import print_fields, print_table

    print_fields(env, _summary(report), width=10)
    _heading(env, "per class (validation)")
    rows = [(str(i), c.label, str(c.train_images), str(c.val_images), _percent(c.precision), _percent(c.recall))
            for i, c in enumerate(report.per_class)]  # fmt: skip
    columns = (("index", "right"), ("label", "left"), ("train", "right"), ("val", "right"),
               ("precision", "right"), ("recall", "right"))  # fmt: skip
    print_table(env, columns, rows, keep="label")
    _heading(env, "confusion matrix (rows: true class, columns: predicted class index)")
    header = (("true", "left"), *((str(i), "right") for i in range(len(report.classes))))
    matrix = [
        (f"{i} {label}", *row) for i, (label, row) in enumerate(zip(report.classes, report.confusion, strict=True))
    ]
    print_table(env, header, matrix, keep="true")
    if report.failures:
        _heading(env, "skipped images")
        lines = [f"{path}: {error}" for path, error in report.failures[:FAILURES_SHOWN]]
        if len(report.failures) > FAILURES_SHOWN:
            lines.append(f"... and {len(report.failures) - FAILURES_SHOWN} more (--format json lists them all)")
        _lines(env, lines)
