"""`imgclass evaluate`: check a model and its preprocessing on labelled images of your own."""

from __future__ import annotations

from typing import Any

import typer

from imgclass.cli import params as p
from imgclass.cli.environment import Environment
from imgclass.cli.options import display, values
from imgclass.errors import ExitCode

EVALUATE_EXAMPLES = """\b
Examples:
  imgclass evaluate ILSVRC2012/val --model resnet50     # one folder per WordNet id
  imgclass evaluate my_photos/ --model ./export.onnx --mapping
  imgclass evaluate labels.csv --format json > report.json"""

FAILURES_SHOWN = 20  # failed images listed in the table; --format json lists them all


def evaluate(
    ctx: typer.Context,
    dataset: p.Dataset,
    worst: p.Worst = 10,
    confusions: p.Confusions = 10,
    mapping: p.Mapping = False,
    threshold: p.ScoreThreshold = None,
    groups: p.Groups = None,
    abstain_below: p.AbstainBelow = None,
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
    tta: p.TTAOpt = p.TTA.none,
    weights: p.Weights = None,
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
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Top-1/top-5 accuracy of a model on labelled images: a folder per class, or a CSV/JSONL list of path,label.

    \b
    Class folders (or labels in a list) are named by class index (281), by WordNet id
    (n02123045: an ILSVRC-2012 val folder works as it is) or by label (case and _ ignored).
    Images that fail are counted and listed, not scored; the exit code is then 1.
    A multi-label (sigmoid) model is scored per class: precision and recall at --threshold.
    """
    given = values(locals())
    return _evaluate(display(ctx, verbose, quiet, color, debug), given)


def _evaluate(env: Environment, given: dict[str, Any]) -> int:
    """The evaluate command's work: check the dataset, load, score every image, report."""
    from imgclass.cli.jobs import JobRunner
    from imgclass.data.datasets import check_dataset
    from imgclass.tasks.evaluate import EvaluateOptions, load_dataset
    from imgclass.tasks.evaluate import evaluate as run_evaluation

    dataset, worst, confusions, threshold = given["dataset"], given["worst"], given["confusions"], given["threshold"]
    fmt, mapping = given["fmt"], given["mapping"]
    check_dataset(dataset)  # before any model is resolved or downloaded
    job = JobRunner(env, given, "evaluating")
    groups, abstain_below = given.pop("groups"), given.pop("abstain_below")
    classifier = job.load()
    grouping = classifier.grouping(groups) if groups is not None else None
    data = load_dataset(dataset, classifier)
    options = EvaluateOptions(given["batch_size"], given["workers"], worst, confusions, env.debug, threshold,
                              grouping, abstain_below)  # fmt: skip
    with job.running(len(data.samples)) as progress:
        on_record = (lambda record: progress.advance()) if progress is not None else None
        report = run_evaluation(classifier, data, options, on_record, job.engine)
    if fmt == "json":
        from imgclass.cli.render import print_json

        print_json(env, report.to_dict())
    else:
        show_report(env, report, mapping)
    _notes(env, report)
    if report.signal is not None:
        return 128 + report.signal
    return ExitCode.INPUT_FAILED if report.failed else ExitCode.OK


def _notes(env: Environment, report) -> None:
    if report.failed:
        env.note(f"{report.failed} of {report.images} images failed and were not scored (listed in the report)")
    by_synonym = [m.name for m in report.mapping if m.matched_by == "synonym"]
    if by_synonym:
        env.note(f"{len(by_synonym)} class name(s) matched an ImageNet synonym, not a label: {_names(by_synonym)}; "
                 "--mapping shows the map")  # fmt: skip
    for index, names in _shared(report.mapping).items():
        env.note(f"{_names(names)} are all class {index}; their images are scored together")
    if report.ignored:
        env.note(
            f"{len(report.ignored)} image(s) directly in {report.dataset} are in no class folder and were not scored"
        )
    if report.signal is not None:
        env.err(f"stopped by signal {report.signal}; {report.not_run} of {report.images} images not read")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _shared(mapping) -> dict[int, list[str]]:
    """Classes that more than one folder (or label) maps to."""
    names: dict[int, list[str]] = {}
    for entry in mapping:
        names.setdefault(entry.index, []).append(entry.name)
    return {index: found for index, found in names.items() if len(found) > 1}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _summary(report) -> dict[str, str]:
    failed = f"{report.failed}"
    if report.failed:
        overall = report.correct_top1 / max(1, report.classified + report.failed)
        failed += f" (not scored; top-1 counting them as wrong: {overall:.1%})"
    layout = "folders" if report.layout == "folders" else f"{report.layout} list"
    head = {
        "model": f"{report.model} · {report.preset}",
        "dataset": f"{report.dataset} ({layout}: {_count(report.dataset_classes, 'class', 'classes')}, "
        f"{_count(report.images, 'image', 'images')}; the model has {report.model_classes} classes)",
    }
    if report.multi_label:
        scores = {
            "scores": f"independent (multi-label), a class predicted at >= {report.threshold:g}",
            "precision": f"{_percent(report.precision)}  (micro-averaged over the dataset's classes)",
            "recall": f"{_percent(report.recall)}  ({report.classified} images)",
        }
    else:
        scored = f" of groups ({report.groups})" if report.groups else ""
        scores = {
            "top-1": f"{_percent(report.top1)}  ({report.correct_top1}/{report.classified}){scored}",
            "top-5": f"{_percent(report.top5)}  ({report.correct_top5}/{report.classified}){scored}",
        }
        if report.abstain_below is not None:
            scores["coverage"] = (f"{_percent(report.coverage)}  ({report.answered}/{report.classified} answered "
                                  f"at top probability >= {report.abstain_below:g})")  # fmt: skip
            scores["selective top-1"] = f"{_percent(report.selective_accuracy)}  (on the answered images)"
    speed = f"{report.images_per_s:.1f} images/s ({report.seconds:.1f} s; {report.device}, {report.compute_precision})"
    return {**head, **scores, "failed": failed, "speed": speed}


def show_report(env: Environment, report, mapping: bool) -> None:
    """The report for people: summary lines, then the worst classes, confusions, failures (and the map)."""
    from imgclass.cli.render import print_fields, print_table

    summary = _summary(report)
    print_fields(env, summary, width=max(8, *map(len, summary)))
    if mapping:
        _heading(env, "classes (name → index)")
        names = [(m.name, m.index, m.label, m.matched_by, m.images) for m in report.mapping]
        print_table(
            env,
            (("name", "left"), ("index", "right"), ("label", "left"), ("by", "left"), ("images", "right")),
            names,
            keep="name",
        )
    if report.per_class:
        _heading(env, "per class (precision and recall at the threshold)")
        rows = [(c.index, c.label, c.images, _percent(c.precision), _percent(c.recall)) for c in report.per_class]
        print_table(
            env,
            (("index", "right"), ("label", "left"), ("images", "right"), ("precision", "right"), ("recall", "right")),
            rows,
            keep="label",
        )
    if report.risk_coverage and report.abstain_below is None:
        _heading(env, "risk-coverage (answer only at top probability >= threshold; choose --abstain-below)")
        points = [(f"{at.threshold:g}", at.answered, _percent(at.coverage), _percent(at.accuracy))
                  for at in report.risk_coverage]  # fmt: skip
        columns = (("threshold", "right"), ("answered", "right"), ("coverage", "right"), ("top-1", "right"))
        print_table(env, columns, points, keep="threshold")
    if report.worst_classes:
        _heading(env, "worst groups" if report.groups else "worst classes")
        rows = [(c.index, c.label, c.images, _percent(c.top1), _percent(c.top5)) for c in report.worst_classes]
        print_table(
            env,
            (("index", "right"), ("label", "left"), ("images", "right"), ("top-1", "right"), ("top-5", "right")),
            rows,
            keep="label",
        )
    if report.confusions:
        _heading(env, "most frequent confusions")
        pairs = [
            (f"{c.true_label} ({c.true_index})", f"{c.predicted_label} ({c.predicted_index})", c.count)
            for c in report.confusions
        ]
        print_table(env, (("true", "left"), ("predicted", "left"), ("images", "right")), pairs, keep="true")
    if report.failures:
        _heading(env, "failed images")
        lines = [f"{f.path}: {f.error}" for f in report.failures[:FAILURES_SHOWN]]
        if len(report.failures) > FAILURES_SHOWN:
            lines.append(f"... and {len(report.failures) - FAILURES_SHOWN} more (--format json lists them all)")
        _lines(env, lines)


def _heading(env: Environment, text: str) -> None:
    env.stdout.write(f"\n{text}\n")


def _lines(env: Environment, lines: list[str]) -> None:
    from imgclass._util.text import printable

    for line in lines:
        env.stdout.write(printable(line) + "\n")
    env.stdout.flush()
