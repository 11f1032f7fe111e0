"""`imgclass explain`: heat maps of where the model looked, as PNG overlays on the original photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imgclass.cli.environment import Environment
from imgclass.cli.options import decode_options, display_options, force_option, model_options
from imgclass.errors import ExitCode

if TYPE_CHECKING:
    from imgclass.cli.render import ProgressLine

EXPLAIN_EXAMPLES = """\b
Examples:
  imgclass explain coffee.jpg --model mobilenetv2 --output-dir maps/
  imgclass explain photos/*.jpg -m resnet50 --class espresso -o maps/ --npy --report maps/report.html
  imgclass explain cat.png -m ./export.onnx --method occlusion -o maps/"""


@click.command(epilog=EXPLAIN_EXAMPLES)
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--output-dir",
    "-o",
    "output_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the overlays: <name>.<method>.png (and .npy with --npy).",
)
@click.option("--class", "class_", metavar="LABEL|INDEX", help="The class to explain (default: each image's top-1).")
@click.option(
    "--method",
    type=click.Choice(("cam", "occlusion"), case_sensitive=False),
    default="cam",
    show_default=True,
    help="cam: class activation map (GAP + linear heads, one pass); occlusion: any model, one run per patch.",
)
@click.option("--npy", is_flag=True, help="Also write the raw map (on the model's input grid) as .npy.")
@click.option(
    "--colormap",
    default="inferno",
    show_default=True,
    help="A perceptual colour map by name (inferno, magma, viridis, ...).",
)
@click.option(
    "--patch",
    type=click.IntRange(min=1),
    help="Occlusion: side of the hidden square on the input, in pixels (default: 1/7 of it).",
)
@click.option("--stride", type=click.IntRange(min=1), help="Occlusion: step between squares (default: half the patch).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Occlusion: occluded copies per model run.",
)
@click.option(
    "--top", "-k", type=click.IntRange(min=1), default=5, show_default=True, help="Predictions per image in the output."
)
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML page with the heat maps.",
)
@force_option
@model_options
@decode_options
@display_options
@click.pass_obj
def explain(env: Environment, images: tuple[str, ...], output_dir: Path, class_: str | None, method: str, npy: bool,
            colormap: str, patch: int | None, stride: int | None, batch_size: int, top: int, report: Path | None,
            force: bool, **values: Any) -> int:  # fmt: skip
    """Show where the model looked: a heat map per image over the original photo, one JSON line each on stdout.

    \b
    cam needs a network that ends in global average pooling and one linear layer
    (ResNet, Inception v3, MobileNet, EfficientNet, and their int8 exports); for
    other graphs use --method occlusion. The area outside the model's crop is dimmed.
    """
    from imgclass.cli.loading import load_classifier
    from imgclass.data.sources import check_found, check_inputs, expand
    from imgclass.inference.explain import ExplainOptions, colour_table, explain_files

    check_inputs(list(images))
    check_found(list(images))
    colour_table(colormap)  # the extra and the name, before any model is loaded
    paths = list(expand(images))
    _guard(paths, list(images), output_dir, method.lower(), npy, report, force)
    classifier = load_classifier(env, values, background=False)
    options = ExplainOptions(class_, method.lower(), top, None, patch, stride, batch_size, npy, colormap)
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
