"""Options shared by several commands, each declared once (the sqlite-utils way: stacked decorators).

A command wears the groups it needs (`@model_options`, `@record_options`, ...) and
hands its keyword arguments to `load_options(...)` / `job_options(...)`, which
build the library's own option records. Closed sets are click Choices, matched
case-insensitively, so `--help` lists them.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from imgclass._util.resources import load_json
from imgclass.data.presets import INTERPOLATIONS
from imgclass.data.tta import TTA_MODES
from imgclass.graph.activation import ACTIVATIONS
from imgclass.output.sinks import FORMATS

PRESETS = tuple(load_json("presets.json")["presets"])
LIST_FORMATS = ("table", "json")


class DeviceType(click.ParamType):
    """auto, cpu, cuda, cuda:N, openvino or openvino:CPU|GPU[.N]|NPU, case-insensitive (the library's one parser)."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N|openvino|openvino:GPU|openvino:NPU]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from imgclass.errors import UsageError
        from imgclass.graph.runtime import parse_device

        text = str(value).strip().lower()
        try:
            parse_device(text)
        except UsageError:
            self.fail(f"{value!r}: use auto, cpu, cuda, cuda:N, openvino or openvino:GPU|NPU", param, ctx)
        return text


class Numbers(click.ParamType):
    """Numbers separated by commas: exactly `count` of them (e.g. one per RGB channel), or any (positive) ones."""

    def __init__(self, name: str, count: int | None = None, example: str = "0.5,0.5,0.5", positive: bool = True):
        self.name, self.count, self.example, self.positive = name, count, example, positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(float(v) for v in str(value).replace(" ", ",").split(",") if v)
        except ValueError:
            numbers = ()
        if self.count is not None and len(numbers) != self.count:
            self.fail(f"{value!r}: give {self.count} numbers, e.g. {self.example}", param, ctx)
        if self.count is None and (not numbers or (self.positive and any(not n > 0 for n in numbers))):
            kind = "positive numbers" if self.positive else "numbers"
            self.fail(f"{value!r}: give {kind} separated by commas, e.g. {self.example}", param, ctx)
        return numbers


def Triple() -> Numbers:  # noqa: N802 - reads as the type it builds
    return Numbers("R,G,B", 3)


def _stack(*decorators: Callable) -> Callable:
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _choice(values: tuple[str, ...]) -> click.Choice:
    return click.Choice(values, case_sensitive=False)


model_options = _stack(
    click.option(
        "--model",
        "-m",
        multiple=True,
        help="ONNX file, catalog name or alias (default: IMGCLASS_MODEL, else inception-v3).",
    ),
    click.option("--preset", type=_choice(PRESETS), help="Preprocessing preset (see `imgclass models presets`)."),
    click.option("--size", type=click.IntRange(min=8), help="Input size for models with a dynamic spatial size."),
    click.option("--resize", type=click.IntRange(min=1), help="Resize the short side to N before cropping."),
    click.option(
        "--crop-pct",
        type=click.FloatRange(0, 1.5, min_open=True),
        help="Crop fraction: resize to size/crop-pct, then crop.",
    ),
    click.option("--interpolation", type=_choice(INTERPOLATIONS), help="Resampling filter."),
    click.option("--mean", type=Triple(), help="Per-channel mean in RGB order, e.g. 0.485,0.456,0.406."),
    click.option("--std", type=Triple(), help="Per-channel std in RGB order."),
    click.option("--bgr", is_flag=True, help="Feed channels in BGR order."),
    click.option(
        "--labels", type=click.Path(path_type=Path), help="Labels file: one per line, or JSON (list or id2label)."
    ),
    click.option(
        "--activation",
        type=_choice(("auto", *ACTIVATIONS)),
        default="auto",
        show_default=True,
        help="What the outputs mean: softmax, sigmoid (multi-label), logsoftmax, none (probabilities as they are); auto reads the graph.",
    ),  # fmt: skip
    click.option(
        "--device",
        type=DeviceType(),
        default="auto",
        envvar="IMGCLASS_DEVICE",
        show_default=True,
        help="Where the model runs.",
    ),
    click.option(
        "--precision",
        type=_choice(("f32", "bf16", "f16")),
        default="f32",
        envvar="IMGCLASS_PRECISION",
        show_default=True,
        help="What the model computes in: bf16/f16 only with --device openvino, only where the hardware has it "
        "(imgclass info lists it); f32 matches the CPU provider within 1e-4.",
    ),
    click.option("--threads", type=click.IntRange(min=1), help="Threads for the model (default: all cores)."),
    click.option(
        "--exact-decode", is_flag=True, help="Full-resolution JPEG decode: bit-exact with the framework, slower."
    ),
    click.option("--offline", is_flag=True, envvar="IMGCLASS_OFFLINE", help="Never use the network."),
)

decode_options = _stack(
    click.option("--allow-truncated", is_flag=True, help="Classify what is there in truncated images."),
    click.option(
        "--max-pixels", type=click.IntRange(min=1), help="Refuse images with more pixels (default: Pillow's)."
    ),
)

scoring_options = _stack(
    click.option("--tta", type=_choice(TTA_MODES), default="none", show_default=True,
                 help="Test-time augmentation: average over the image and its mirror (flip), or the standard 5 or 10 crops."),
    click.option("--weights", type=Numbers("W1,W2,...", example="2,1", positive=False), help="With --model given several times (an ensemble): one weight per model (default: equal)."),
)  # fmt: skip

run_options = _stack(
    click.option("--batch-size", type=click.IntRange(min=1), help="Images per model run (default from the model)."),
    click.option(
        "--workers", type=click.IntRange(min=1), help="Decode threads (default: 2, or half the cores up to 8)."
    ),
)

record_options = _stack(
    click.option(
        "--top", "-k", type=click.IntRange(min=1), default=5, show_default=True, help="Predictions per image."
    ),
    click.option(
        "--threshold",
        type=click.FloatRange(0, 1),
        help="Leave out predictions below this probability (default: 0; 0.5 for multi-label models).",
    ),
    click.option(
        "--format",
        "-f",
        "fmt",
        type=_choice(FORMATS),
        help="Default: table on a terminal, else jsonl (or the --output extension).",
    ),
    click.option(
        "--output",
        "-o",
        type=click.Path(path_type=Path),
        help="Write records to FILE instead of stdout (a folder: jsonl shards).",
    ),
)

engine_options = _stack(
    click.option(
        "--engine",
        type=_choice(("local", "ray")),
        default="local",
        show_default=True,
        help="Run here, or as a Ray Data job (pip install 'imgclass[ray]').",
    ),
    click.option(
        "--ray-address",
        metavar="ADDRESS",
        help="With --engine ray: the cluster to join (default: RAY_ADDRESS, else a new local instance).",
    ),
    click.option(
        "--actors",
        type=click.IntRange(min=1),
        help="With --engine ray: model actors (default: one per GPU, else half the CPUs).",
    ),
)


def pop_engine_options(values: dict[str, Any]):
    """Take --engine, --ray-address and --actors out of a command's keyword arguments.

    With a distributed engine --device is the model actors'; the driver's own copy of the
    model (it checks the model and answers -v) runs on the CPU, so a head node without a
    GPU can still send --device cuda work to the nodes that have one.
    """
    from imgclass.engines import EngineOptions

    name = values.pop("engine", "local").lower()
    device = precision = None
    if name != "local" and "device" in values:
        device, values["device"] = values["device"], "cpu"
        precision, values["precision"] = values.get("precision"), "f32"
    return EngineOptions(name, values.pop("ray_address", None), values.pop("actors", None), device, precision)


list_format_option = click.option(
    "--format", "-f", "fmt", type=_choice(LIST_FORMATS), default="table", show_default=True, help="Output format."
)

_DISPLAY = ("verbose", "quiet", "color", "debug")


def display_options(function: Callable) -> Callable:
    """-v, -q, --color and --debug: they set the Environment and are not passed on."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        env = click.get_current_context().obj
        for name in _DISPLAY:
            setattr(env, name, kwargs.pop(name))
        if env.debug:
            warnings.simplefilter("default")
        return function(*args, **kwargs)

    return _stack(
        click.option("--verbose", "-v", is_flag=True, help="Report model, preset and providers on stderr."),
        click.option("--quiet", "-q", is_flag=True, help="No progress, no per-input error lines, no summary."),
        click.option(
            "--color",
            type=_choice(("auto", "always", "never")),
            default="auto",
            show_default=True,
            help="Colour (auto: on a terminal, unless NO_COLOR is set).",
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors."),
    )(wrapper)


def pop_models(values: dict[str, Any]) -> tuple[list[str], tuple[float, ...] | None]:
    """Take every --model (several: an ensemble) and --weights out of a command's keyword arguments."""
    models = values.pop("model", None) or ()
    return [models] if isinstance(models, str) else list(models), values.pop("weights", None)


def pop_load_options(values: dict[str, Any]):
    """Take the model and decode options out of a command's keyword arguments (one --model at most)."""
    from imgclass.classifier import LoadOptions
    from imgclass.data.presets import Overrides
    from imgclass.errors import UsageError

    model = values.pop("model", None)
    if isinstance(model, (tuple, list)):
        if len(model) > 1:
            raise UsageError(f"--model given {len(model)} times: only predict, batch and evaluate average an ensemble")
        model = model[0] if model else None

    overrides = Overrides(**{k: values.pop(k, None) for k in ("size", "resize", "crop_pct", "interpolation", "mean", "std")},
                          bgr=values.pop("bgr", False))  # fmt: skip
    offline = values.pop("offline", False)
    activation = str(values.pop("activation", "auto")).lower()
    return model, LoadOptions(
        preset=values.pop("preset", None),
        overrides=overrides,
        labels=values.pop("labels", None),
        activation=activation if activation != "auto" else None,
        device=values.pop("device", "auto"),
        precision=values.pop("precision", None) or "f32",
        threads=values.pop("threads", None),
        offline=True if offline else None,
        exact_decode=values.pop("exact_decode", False),
        max_pixels=values.pop("max_pixels", None),
        allow_truncated=values.pop("allow_truncated", False),
        tta=values.pop("tta", None) or "none",
    )


def listing_options(function: Callable) -> Callable:
    """What every listing command wears: --format table|json, the display options, the Environment."""
    return _stack(list_format_option, display_options, click.pass_obj)(function)


def classify_options(function: Callable) -> Callable:
    """The options `predict` and `batch` share: model, decoding, batching, records, display."""
    return _stack(model_options, scoring_options, decode_options, run_options, record_options, display_options,
                  click.pass_obj)(function)  # fmt: skip
