"""`imgclass models quantize`: int8 with calibration photos, checked against the fp32 model."""

from __future__ import annotations

import os
from typing import Any

import typer

from imgclass.cli import params as p
from imgclass.cli.environment import Environment
from imgclass.cli.options import display, pop_load_options, values

QUANTIZE_EXAMPLES = """\b
Examples:
  imgclass models quantize resnet50 --calibrate photos/ --output resnet50-int8.onnx
  imgclass models quantize ./export.onnx --calibrate photos/ --name export-int8 --evaluate val/
  imgclass predict cat.jpg --model resnet50-int8.onnx      # preset and labels come with it"""


def quantize(
    ctx: typer.Context,
    calibrate: p.Calibrate,
    source: p.QuantizeSource = None,
    output: p.QuantizeOutput = None,
    name: p.CacheName = None,
    force: p.ForceName = False,
    method: p.QuantizeMethodOpt = p.QuantizeMethod.entropy,
    limit: p.Limit = 500,
    reduce_range: p.ReduceRange = False,
    evaluate_on: p.EvaluateOn = None,
    max_drop: p.MaxDrop = 1.0,
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
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Quantise a float32 model to int8 (ONNX Runtime static QDQ) with calibration photos.

    \b
    Calibration images are preprocessed exactly as `predict` will (the model's preset, or the
    preprocessing flags given), and the int8 file carries that preset, the labels and its
    provenance (source sha256, calibration images, method) in its metadata.
    """
    given = values(locals())
    _quantize(display(ctx, verbose, quiet, color, debug), given)


def _quantize(env: Environment, given: dict[str, Any]) -> None:
    """The quantize command's work: guard the output, calibrate, write, show the comparison."""
    from imgclass.errors import UsageError
    from imgclass.tasks.quantize import AccuracyDrop, QuantizeOptions
    from imgclass.tasks.quantize import quantize as run_quantize

    calibrate, output, name, force = given["calibrate"], given["output"], given["name"], given["force"]
    evaluate_on, fmt = given["evaluate_on"], given["fmt"]
    spec = _model(given["source"], given)
    _, load_options = pop_load_options(given)
    options = QuantizeOptions(method=str(given["method"]), reduce_range=given["reduce_range"], limit=given["limit"],
                              max_drop=given["max_drop"], force=force)  # fmt: skip
    if output is None and name is None:
        raise UsageError("give --output OUT.onnx, --name NAME, or both")
    if output is not None:
        from imgclass.output import guard as g

        read = [str(path) for path in (calibrate, evaluate_on) if path is not None] + [spec]
        g.guard(output, g.MODEL, inputs=g.Inputs.of(read, recursive=True), force=force, option="--output")
    progress = _Progress(env)
    try:
        result = run_quantize(spec, calibrate, output, name, load_options=load_options, options=options,
                              evaluate_on=evaluate_on, progress=progress if env.progress else None)  # fmt: skip
    except AccuracyDrop as err:
        progress.clear()
        _show_comparison(env, err.comparison, fmt)
        raise
    finally:
        progress.clear()
    _show(env, result, fmt)


def _model(source: str | None, values: dict[str, Any]) -> str:
    """MODEL as an argument, or --model / IMGCLASS_MODEL; both on the command line must agree."""
    from imgclass.errors import UsageError

    flags = values.get("model") or ()
    flags = [flags] if isinstance(flags, str) else list(flags)
    if len(flags) + bool(source) > 1:
        raise UsageError(
            f"several models given ({', '.join([*([source] if source else []), *flags])}); quantise one at a time"
        )
    model = source or (flags[0] if flags else None) or os.environ.get("IMGCLASS_MODEL")
    if not model:
        raise UsageError("give the model to quantise: imgclass models quantize MODEL --calibrate DIR --output OUT.onnx")
    values["model"] = None
    return model


class _Progress:
    """One progress line per stage (reading, calibrating, evaluating), on a terminal's stderr."""

    def __init__(self, env: Environment):
        from imgclass.cli.render import ProgressLine

        self.env, self.stage = env, ""
        self.line: ProgressLine | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from imgclass.cli.render import ProgressLine

        line = self.line
        if stage != self.stage or line is None:
            self.clear()
            self.stage, self.line = stage, ProgressLine(self.env, stage)
            line = self.line
            line.start(total)
        line.done = done
        line.draw()

    def clear(self) -> None:
        if self.line is not None:
            self.line.clear()


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _show_comparison(env: Environment, comparison, fmt: str) -> None:
    from imgclass.cli.render import print_json, print_table

    if fmt == "json":
        return print_json(env, {"comparison": comparison.to_dict()})
    c = comparison
    rows = [
        ("top-1", _percent(c.fp32.top1), _percent(c.int8.top1), _points(c.fp32.top1, c.int8.top1)),
        ("top-5", _percent(c.fp32.top5), _percent(c.int8.top5), _points(c.fp32.top5, c.int8.top5)),
        ("model-only images/s", f"{c.fp32.model_only_images_per_s:.1f}", f"{c.int8.model_only_images_per_s:.1f}",
         f"{c.speedup:.2f}x"),
    ]  # fmt: skip
    if c.fp32.top1 is None:
        rows[:2] = [("precision", _percent(c.fp32.multi_precision), _percent(c.int8.multi_precision),
                     _points(c.fp32.multi_precision, c.int8.multi_precision)),
                    ("recall", _percent(c.fp32.recall), _percent(c.int8.recall), _points(c.fp32.recall, c.int8.recall))]  # fmt: skip
    env.stdout.write(f"{c.dataset}: {c.images} labelled images\n")
    print_table(env, (("", "left"), ("fp32", "right"), ("int8", "right"), ("change", "right")), rows, keep="")


def _points(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return ""
    change = round((after - before) * 100, 2)
    return f"{change + 0.0:+.2f} points"  # + 0.0: never "-0.00"


def _show(env: Environment, result, fmt: str) -> None:
    from imgclass.cli.render import print_fields, print_json

    if fmt == "json":
        return print_json(env, result.to_dict())
    prov = result.provenance
    fields = {
        "model": result.source,
        "output": str(result.output) if result.output else "",
        "name": result.name or "",
        "size": f"{result.size_fp32 / 1e6:.1f} MB fp32 -> {result.size_int8 / 1e6:.1f} MB int8",
        "calibration": f"{prov['calibration']['images']} images, {prov['method']}"
        + (f" ({len(result.skipped)} unreadable, skipped)" if result.skipped else ""),
        "kept float": ", ".join(prov["float_nodes"]) or "nothing",
    }
    print_fields(env, {k: v for k, v in fields.items() if v}, width=12)
    if result.comparison is not None:
        _show_comparison(env, result.comparison, fmt)
    for path, error in result.skipped[:5]:
        env.note(f"calibration image skipped: {path}: {error}")
