"""`imgclass predict` and `imgclass batch`: parse, load the classifier, run the job, render."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imgclass.cli import params as p
from imgclass.cli.environment import Environment
from imgclass.cli.jobs import JobRunner, check_not_an_input
from imgclass.cli.options import display, values
from imgclass.errors import UsageError

if TYPE_CHECKING:
    from imgclass.cli.render import ProgressLine
    from imgclass.output.sinks import Sink

PREDICT_EXAMPLES = """\b
Examples:
  imgclass predict cat.jpg dog.png --top 3
  imgclass predict photo.jpg --model resnet50 --format json
  imgclass predict https://example.org/cat.jpg
  imgclass predict clip.mp4 --every 0.5s --summary
  imgclass predict photo.jpg --server http://127.0.0.1:8000   (a running `imgclass serve`)"""

BATCH_EXAMPLES = """\b
Examples:
  imgclass batch photos/ --recursive --output results.jsonl
  find photos -name '*.jpg' | imgclass batch - --format csv > results.csv
  find photos -type f -print0 | imgclass batch - --null -o results.jsonl
  imgclass batch photos/ -m resnet50 -m inception-v3 --tta flip --report report.html -o results.jsonl
  imgclass batch footage/ --video --every 2s -o frames.jsonl --resume
  imgclass batch s3://bucket/photos/ -r --engine ray --ray-address auto -o results.jsonl"""


def predict(
    ctx: typer.Context,
    images: p.Images,
    null: p.Null = False,
    server: p.Server = None,
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
    threads: p.Threads = None,
    batch_size: p.BatchSize = None,
    workers: p.Workers = None,
    allow_truncated: p.AllowTruncated = False,
    max_pixels: p.MaxPixels = None,
    url_timeout: p.UrlTimeout = 30.0,
    every: p.Every = "1s",
    top: p.Top = 5,
    threshold: p.Threshold = None,
    fmt: p.Format = None,
    output: p.Output = None,
    summary: p.Summary = False,
    wide: p.Wide = False,
    groups: p.Groups = None,
    abstain_below: p.AbstainBelow = None,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Classify images, image URLs or video frames and print the top labels ('-' reads paths from stdin)."""
    given = values(locals())
    env = display(ctx, verbose, quiet, color, debug)
    return classify(env, list(given.pop("images")), given, view="predict")


def batch(
    ctx: typer.Context,
    inputs: p.Inputs,
    recursive: p.Recursive = False,
    null: p.Null = False,
    server: p.Server = None,
    resume: p.Resume = False,
    report: p.Report = None,
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
    threads: p.Threads = None,
    batch_size: p.BatchSize = None,
    workers: p.Workers = None,
    engine: p.EngineOpt = p.Engine.local,
    ray_address: p.RayAddress = None,
    actors: p.Actors = None,
    allow_truncated: p.AllowTruncated = False,
    max_pixels: p.MaxPixels = None,
    url_timeout: p.UrlTimeout = 30.0,
    every: p.Every = "1s",
    video: p.Video = False,
    top: p.Top = 5,
    threshold: p.Threshold = None,
    fmt: p.Format = None,
    output: p.Output = None,
    summary: p.Summary = False,
    wide: p.Wide = False,
    groups: p.Groups = None,
    abstain_below: p.AbstainBelow = None,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Classify every image in directories, files, globs or URLs ('-' reads a list from stdin); a record per image."""
    given = values(locals())
    env = display(ctx, verbose, quiet, color, debug)
    inputs_, recursive_, resume_, report_ = (given.pop(k) for k in ("inputs", "recursive", "resume", "report"))
    return classify(env, list(inputs_), given, view="batch", recursive=recursive_, resume=resume_, report=report_)


def classify(env: Environment, inputs: list[str], given: dict[str, Any], *, view: str, recursive: bool = False,
             resume: bool = False, report: Path | None = None) -> int:  # fmt: skip
    server = given.pop("server", None)
    if server:  # a client of `imgclass serve`: nothing below (numpy, ONNX Runtime) is imported
        return _classify_remote(env, server, inputs, given, view=view, recursive=recursive, resume=resume,
                                report=report)  # fmt: skip
    from imgclass.output.sinks import choose_format
    from imgclass.output.targets import check_output, open_target
    from imgclass.tasks.jobs import JobOptions

    job = JobRunner(env, given, "classifying" if view == "batch" else None)
    video = _video_options(inputs, given)
    output = given["output"]
    job.check(inputs, {"--output": output, "--report": report})
    if report is not None and output is not None and report.resolve() == output.resolve():
        raise UsageError("--report and --output name the same file; give the report its own (report.html)")
    fmt = choose_format(given["fmt"], output, bool(env.stdout_isatty))
    summary_sink = _summary_sink(given.pop("summary", False), fmt)
    if resume and fmt in ("csv", "tsv") and video["videos"]:
        raise UsageError(f"--resume of video frames needs jsonl output: {fmt} rows do not say which frame they are")
    _check_wide(given["wide"], fmt, resume)
    existing = check_output(output, fmt, resume)  # nothing is written before the model loads
    classifier = job.load()
    grouping = classifier.grouping(given["groups"]) if given["groups"] is not None else None  # before any output
    target = open_target(output, fmt, resume, env.stdout, existing, classifier.multi_label)
    options = JobOptions(given["top"], given["threshold"], recursive, given["batch_size"], given["workers"],
                         null=given["null"], stdin=env.stdin, groups=grouping, abstain_below=given["abstain_below"],
                         video=video["video"], every=video["every"])  # fmt: skip
    columns = _Columns(
        classifier.multi_label, given["abstain_below"] is not None, given["top"] if given["wide"] else None
    )

    def sink(progress: ProgressLine | None) -> Sink:
        made = _sink(env, fmt, target, view, progress, columns)
        if summary_sink is not None:
            made = _tee(made, summary_sink)
        return made if report is None else _with_report(made, report, classifier, given["workers"])

    summary = job.run(classifier, inputs, sink, options, done=target.done, human=fmt == "table", close=target.close)
    if summary_sink is not None and summary.signal is None:
        from imgclass.cli.render import print_video_summary

        print_video_summary(env, summary_sink.videos())
    return job.finish(summary, "classified", "records")


def _classify_remote(env: Environment, server: str, inputs: list[str], given: dict[str, Any], *, view: str,
                     recursive: bool, resume: bool, report: Path | None) -> int:  # fmt: skip
    from imgclass.cli.remote import check_remote, classify_remote
    from imgclass.output.sinks import choose_format

    check_remote(given, str(given.get("engine", "local")).lower(), resume, report, inputs)
    check_not_an_input(given["output"], inputs)
    _check_wide(given["wide"], choose_format(given["fmt"], given["output"], bool(env.stdout_isatty)), resume)
    wide = given["top"] if given["wide"] else None

    def make_sink(env: Environment, fmt: str, target, view: str, progress, multi_label: bool) -> Sink:
        return _sink(env, fmt, target, view, progress, _Columns(multi_label, False, wide))

    return classify_remote(env, server, inputs, given, view=view, recursive=recursive, make_sink=make_sink)


def _video_options(inputs: list[str], values: dict[str, Any]) -> dict[str, Any]:
    """--every parsed, --video taken; the `video` extra checked when any video can be an input (exit 2 without it)."""
    from imgclass.data.sources import is_video_name
    from imgclass.data.video import parse_every, require_video

    video = bool(values.pop("video", False))
    every = parse_every(values.pop("every", "1s"))
    videos = video or any(is_video_name(item) for item in inputs)
    if videos:
        require_video("video files as inputs")
    return {"video": video, "every": every, "videos": videos}


def _summary_sink(wanted: bool, fmt: str):
    if not wanted:
        return None
    if fmt != "table":
        raise UsageError(f"--summary goes with the table output, not --format {fmt}")
    from imgclass.output.summary import VideoSummary

    return VideoSummary()


def _tee(sink: Sink, extra: Sink) -> Sink:
    from imgclass.output.report import TeeSink

    return TeeSink(sink, extra)


def _check_wide(wide: bool, fmt: str, resume: bool) -> None:
    if wide and fmt not in ("csv", "tsv"):
        raise UsageError(f"--wide is a layout of --format csv or tsv, not {fmt}")
    if wide and resume:
        raise UsageError("--wide files cannot be resumed yet; write a new file (or resume without --wide)")


@dataclass(frozen=True)
class _Columns:
    """What csv/tsv rows carry besides the base columns."""

    multi_label: bool
    abstained: bool  # --abstain-below was given
    wide: int | None  # --wide: this many predictions per row (--top)


def _sink(env: Environment, fmt: str, target, view: str, progress, columns: _Columns):
    from imgclass.cli.render import BatchRows, PredictTable, guarded
    from imgclass.output.sinks import make_sink

    sink: Sink
    if fmt == "table":
        sink = PredictTable(env) if view == "predict" else BatchRows(env)
    else:
        sink = make_sink(fmt, target.stream, header=target.fresh, name=target.name, columns=target.columns,
                         multi_label=columns.multi_label, abstained=columns.abstained,
                         wide=columns.wide or None)  # fmt: skip
    return guarded(env, sink, progress, target.stream is env.stdout)


def _with_report(sink: Sink, path: Path, classifier, workers: int | None) -> Sink:
    from imgclass.inference.pipeline import default_workers
    from imgclass.output.report import ReportOptions, ReportSink, TeeSink

    tta = f" · TTA {classifier.tta}" if classifier.tta != "none" else ""
    options = ReportOptions(
        subtitle=f"{classifier.name} · {classifier.preset}{tta}", workers=workers or default_workers()
    )
    return TeeSink(sink, ReportSink(path, options))
