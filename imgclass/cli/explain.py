"""`imgclass explain`: heat maps of where the model looked, as PNG overlays on the original photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imgclass.cli import params as p
from imgclass.cli.environment import Environment
from imgclass.cli.options import display, values
from imgclass.errors import ExitCode

if TYPE_CHECKING:
    from imgclass.cli.render import ProgressLine

EXPLAIN_EXAMPLES = """\b
Examples:
  imgclass explain coffee.jpg --model mobilenetv2 --output-dir maps/
  imgclass explain photos/*.jpg -m resnet50 --class espresso -o maps/ --npy --report maps/report.html
  imgclass explain cat.png -m ./export.onnx --method occlusion -o maps/"""


def explain(
    ctx: typer.Context,
    images: p.Images,
    output_dir: p.OutputDir,
    class_: p.ClassName = None,
    method: p.ExplainMethodOpt = p.ExplainMethod.cam,
    npy: p.Npy = False,
    colormap: p.Colormap = "inferno",
    patch: p.Patch = None,
    stride: p.Stride = None,
    batch_size: p.OcclusionBatch = 16,
    top: p.ExplainTop = 5,
    report: p.ExplainReport = None,
    force: p.ReplaceOutput = False,
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
    device: p.Device = "auto",
    precision: p.PrecisionOpt = p.Precision.f32,
    threads: p.Threads = None,
    allow_truncated: p.AllowTruncated = False,
    max_pixels: p.MaxPixels = None,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Show where the model looked: a heat map per image over the original photo, one JSON line each on stdout.

    \b
    cam needs a network that ends in global average pooling and one linear layer
    (ResNet, Inception v3, MobileNet, EfficientNet, and their int8 exports); for
    other graphs use --method occlusion. The area outside the model's crop is dimmed.
    """
    given = values(locals())
    return _explain(display(ctx, verbose, quiet, color, debug), given)


def _explain(env: Environment, given: dict[str, Any]) -> int:
    """The explain command's work: check and guard, load, write a heat map and a record per image."""
    from imgclass.cli.loading import load_classifier
    from imgclass.data.sources import check_found, check_inputs, expand
    from imgclass.inference.explain import ExplainOptions, colour_table

    images, output_dir, method, npy, report = (given[k] for k in ("images", "output_dir", "method", "npy", "report"))
    colormap, groups, abstain_below = given["colormap"], given["groups"], given["abstain_below"]
    check_inputs(list(images))
    check_found(list(images))
    colour_table(colormap)  # the extra and the name, before any model is loaded
    paths = list(expand(images))
    _guard(paths, list(images), output_dir, str(method), npy, report, given.pop("force"))
    given.pop("groups"), given.pop("abstain_below")
    classifier = load_classifier(env, given, background=False)
    grouping = classifier.grouping(groups) if groups is not None else None
    options = ExplainOptions(given["class_"], str(method), given["top"], None, given["patch"], given["stride"],
                             given["batch_size"], npy, colormap, grouping, abstain_below)  # fmt: skip
    return _explain_each(env, classifier, paths, output_dir, options, report, str(method))


def _explain_each(env: Environment, classifier, paths: list[str], output_dir: Path, options, report: Path | None,
                  method: str) -> int:  # fmt: skip
    """Explain each image, a JSON record on stdout per image; the report at the end, however the run ends."""
    from imgclass.inference.explain import explain_files

    bar = _Bar(env) if env.progress and options.method == "occlusion" else None
    failed, entries = 0, []
    try:
        for written in explain_files(classifier, paths, output_dir, options, bar.for_image if bar else None):
            if bar is not None:
                bar.clear()
            env.stdout.write(json.dumps(written.to_dict(), ensure_ascii=False) + "\n")
            env.stdout.flush()
            if written.record.error is not None:
                failed += 1
                env.err(f"{written.record.path}: {written.record.error}")
            if report is not None:
                entries.append(_entry(written))
    finally:
        if bar is not None:
            bar.clear()
        if report is not None:
            _write_report(report, entries, classifier, method)
    return ExitCode.INPUT_FAILED if failed else ExitCode.OK


def _guard(paths: list[str], images: list[str], folder: Path, method: str, npy: bool, report: Path | None,
           force: bool) -> None:  # fmt: skip
    """Before any work: every heat map (and .npy) and the report may be written (see output.guard)."""
    from imgclass.inference.explain import planned_names
    from imgclass.output import guard as g

    seen = g.Inputs.of(images)
    seen.files |= g.Inputs.of(paths).files  # the images a glob or a folder gave, too
    seen.resolved |= g.Inputs.of(paths).resolved
    stems = planned_names(paths, method)
    g.guard_folder(folder, [f"{stem}.png" for stem in stems], g.HEAT_MAP, inputs=seen, force=force,
                   option="--output-dir")  # fmt: skip
    if npy:
        g.guard_folder(folder, [f"{stem}.npy" for stem in stems], g.RAW_MAP, inputs=seen, force=force,
                       option="--output-dir")  # fmt: skip
    if report is not None:
        g.guard(report, g.REPORT, inputs=seen, force=force, option="--report")


class _Bar:
    """One progress line per image for occlusion's batches."""

    def __init__(self, env: Environment):
        self.env = env
        self.line: ProgressLine | None = None

    def for_image(self, path: str):
        from imgclass._util.text import printable
        from imgclass.cli.render import ProgressLine

        self.clear()
        self.line = ProgressLine(self.env, f"occluding {printable(Path(path).name)}")

        def advance(done: int, total: int) -> None:
            if self.line is not None:
                if self.line.total is None:
                    self.line.start(total)
                self.line.done = done
                self.line.draw()

        return advance

    def clear(self) -> None:
        if self.line is not None:
            self.line.clear()
            self.line = None


def _entry(written):
    from imgclass.output.report import Entry, image_uri

    return Entry(written.record, heatmap=image_uri(written.picture, 192) if written.picture is not None else None)


def _write_report(path: Path, entries: list, classifier, method: str) -> None:
    from imgclass.output.report import ReportOptions, write_report

    write_report(path, entries, ReportOptions(title="imgclass explain", subtitle=f"{classifier.name} · {method}"))
