"""Every command-line option, declared once as an `Annotated` alias (the Typer way).

A command lists the options it takes as typed parameters, e.g.
`top: params.Top = 5`, and Typer builds the click command from the signature.
Options are grouped into help panels (`rich_help_panel`) so `--help` can be scanned.
Closed sets are `Enum`s matched case-insensitively; a member is its own string value
(`Choice.__str__`), so the library sees the same strings as before.

Completion callbacks read only the catalog and presets JSON: no numpy, no ONNX Runtime.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer import _click as click  # Typer's vendored click: custom parameter types only
from typer._click import types as click_types
from typer._types import TyperChoice

from imgclass._util.resources import load_json

MODEL, PREPROCESSING, RUNTIME, INPUT, OUTPUT, ROBUSTNESS, DISPLAY = (
    "Model", "Preprocessing", "Runtime", "Input", "Output", "Robustness", "Display",
)  # fmt: skip
DECISION = "Groups and abstaining"

PRESETS = tuple(load_json("presets.json")["presets"])


class Choice(str, Enum):
    """A closed set of words; a member prints, formats and compares as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Interpolation(Choice):
    nearest = "nearest"
    bilinear = "bilinear"
    bicubic = "bicubic"
    lanczos = "lanczos"
    box = "box"
    hamming = "hamming"
    area = "area"
    tf_bilinear = "tf-bilinear"


class Activation(Choice):
    auto = "auto"
    softmax = "softmax"
    sigmoid = "sigmoid"
    logsoftmax = "logsoftmax"
    none = "none"


class TTA(Choice):
    none = "none"
    flip = "flip"
    five_crop = "five-crop"
    ten_crop = "ten-crop"


class RecordFormat(Choice):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"


class ListFormat(Choice):
    table = "table"
    json = "json"


class VectorFormat(Choice):
    npy = "npy"
    jsonl = "jsonl"
    parquet = "parquet"


class Engine(Choice):
    local = "local"
    ray = "ray"


class Color(Choice):
    auto = "auto"
    always = "always"
    never = "never"


class ExplainMethod(Choice):
    cam = "cam"
    occlusion = "occlusion"


class QuantizeMethod(Choice):
    entropy = "entropy"
    percentile = "percentile"
    minmax = "minmax"


# -- parameter types beyond Typer's own (through Typer's vendored click) ------------------------------------------


class DeviceType(click_types.ParamType):
    """auto, cpu, cuda or cuda:N, case-insensitive."""

    name = "device"
    _pattern = re.compile(r"^(auto|cpu|cuda)(:\d+)?$")

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower()
        match = self._pattern.match(text)
        if not match or (match.group(2) and match.group(1) != "cuda"):
            self.fail(f"{value!r}: use auto, cpu, cuda or cuda:N", param, ctx)
        return text


class Numbers(click_types.ParamType):
    """Numbers separated by commas: exactly `count` of them (e.g. one per RGB channel), or any (positive) ones."""

    def __init__(self, name: str, count: int | None = None, example: str = "0.5,0.5,0.5", positive: bool = True):
        self.name, self.count, self.example, self.positive = name, count, example, positive

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name

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


# -- completion (catalog and presets JSON only) ----------------------------------------------------------------------


def complete_model(incomplete: str) -> list[str]:
    """Catalog names and aliases that start with what was typed (a path is left to the shell)."""
    from imgclass.store.catalog import entries

    names: list[str] = []
    for entry in entries():
        names += [entry.name, *entry.aliases]
    low = incomplete.lower()
    return [name for name in dict.fromkeys(names) if name.lower().startswith(low)]


def complete_preset(incomplete: str) -> list[str]:
    return [name for name in (*PRESETS, "auto") if name.startswith(incomplete.lower())]


def complete_device(incomplete: str) -> list[str]:
    return [name for name in ("auto", "cpu", "cuda", "cuda:0", "cuda:1") if name.startswith(incomplete.lower())]


def _choice(values: tuple[str, ...]) -> TyperChoice[str]:
    return TyperChoice(values, case_sensitive=False)


# -- Model ------------------------------------------------------------------------------------------------------------

Models = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="ONNX file, catalog name or alias (default: IMGCLASS_MODEL, else inception-v3).",
                 autocompletion=complete_model, rich_help_panel=MODEL, show_default=False),
]  # fmt: skip
Preset = Annotated[
    str | None,
    typer.Option("--preset", click_type=_choice((*PRESETS, "auto")), autocompletion=complete_preset,
                 rich_help_panel=MODEL, help="Preprocessing preset (see `imgclass models presets`); auto: when "
                 "nothing else says, the one `imgclass models doctor` finds."),
]  # fmt: skip
Labels = Annotated[
    Path | None,
    typer.Option("--labels", help="Labels file: one per line, or JSON (list or id2label).", rich_help_panel=MODEL),
]
ActivationOpt = Annotated[
    Activation,
    typer.Option("--activation", case_sensitive=False, rich_help_panel=MODEL,
                 help="What the outputs mean: softmax, sigmoid (multi-label), logsoftmax, none (probabilities as "
                 "they are); auto reads the graph."),
]  # fmt: skip
Offline = Annotated[
    bool, typer.Option("--offline", envvar="IMGCLASS_OFFLINE", help="Never use the network.", rich_help_panel=MODEL)
]

# -- Preprocessing -----------------------------------------------------------------------------------------------------

Size = Annotated[
    int | None,
    typer.Option("--size", min=8, help="Input size for models with a dynamic spatial size.",
                 rich_help_panel=PREPROCESSING),
]  # fmt: skip
Resize = Annotated[
    int | None,
    typer.Option("--resize", min=1, help="Resize the short side to N before cropping.", rich_help_panel=PREPROCESSING),
]
CropPct = Annotated[
    float | None,
    typer.Option("--crop-pct", min=0, max=1.5, click_type=click_types.FloatRange(0, 1.5, min_open=True),
                 help="Crop fraction: resize to size/crop-pct, then crop.", rich_help_panel=PREPROCESSING),
]  # fmt: skip
InterpolationOpt = Annotated[
    Interpolation | None,
    typer.Option("--interpolation", case_sensitive=False, help="Resampling filter.", rich_help_panel=PREPROCESSING),
]
Mean = Annotated[
    tuple | None,
    typer.Option("--mean", click_type=Numbers("R,G,B", 3), rich_help_panel=PREPROCESSING,
                 help="Per-channel mean in RGB order, e.g. 0.485,0.456,0.406."),
]  # fmt: skip
Std = Annotated[
    tuple | None,
    typer.Option("--std", click_type=Numbers("R,G,B", 3), help="Per-channel std in RGB order.",
                 rich_help_panel=PREPROCESSING),
]  # fmt: skip
Bgr = Annotated[bool, typer.Option("--bgr", help="Feed channels in BGR order.", rich_help_panel=PREPROCESSING)]
ExactDecode = Annotated[
    bool,
    typer.Option("--exact-decode", help="Full-resolution JPEG decode: bit-exact with the framework, slower.",
                 rich_help_panel=PREPROCESSING),
]  # fmt: skip

# -- Robustness (test-time augmentation, ensembles) ---------------------------------------------------------------------

TTAOpt = Annotated[
    TTA,
    typer.Option("--tta", case_sensitive=False, rich_help_panel=ROBUSTNESS,
                 help="Test-time augmentation: average over the image and its mirror (flip), or the standard 5 or "
                 "10 crops."),
]  # fmt: skip
Weights = Annotated[
    tuple | None,
    typer.Option("--weights", click_type=Numbers("W1,W2,...", example="2,1", positive=False), rich_help_panel=ROBUSTNESS,
                 help="With --model given several times (an ensemble): one weight per model (default: equal)."),
]  # fmt: skip

# -- Runtime ---------------------------------------------------------------------------------------------------------

Device = Annotated[
    str,
    typer.Option("--device", click_type=DeviceType(), envvar="IMGCLASS_DEVICE", autocompletion=complete_device,
                 help="Where the model runs.", rich_help_panel=RUNTIME),
]  # fmt: skip
Threads = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Threads for the model (default: all cores).", rich_help_panel=RUNTIME),
]
BatchSize = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Images per model run (default from the model).", rich_help_panel=RUNTIME),
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Decode threads (default: 2, or half the cores up to 8).",
                 rich_help_panel=RUNTIME),
]  # fmt: skip
EngineOpt = Annotated[
    Engine,
    typer.Option("--engine", case_sensitive=False, rich_help_panel=RUNTIME,
                 help="Run here, or as a Ray Data job (pip install 'imgclass\\[ray]')."),
]  # fmt: skip
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", metavar="ADDRESS", rich_help_panel=RUNTIME,
                 help="With --engine ray: the cluster to join (default: RAY_ADDRESS, else a new local instance)."),
]  # fmt: skip
Actors = Annotated[
    int | None,
    typer.Option("--actors", min=1, rich_help_panel=RUNTIME,
                 help="With --engine ray: model actors (default: one per GPU, else half the CPUs)."),
]  # fmt: skip

# -- Input -----------------------------------------------------------------------------------------------------------

AllowTruncated = Annotated[
    bool,
    typer.Option("--allow-truncated", help="Classify what is there in truncated images.", rich_help_panel=INPUT),
]
MaxPixels = Annotated[
    int | None,
    typer.Option("--max-pixels", min=1, help="Refuse images with more pixels (default: Pillow's).",
                 rich_help_panel=INPUT),
]  # fmt: skip
Recursive = Annotated[
    bool, typer.Option("--recursive", "-r", help="Descend into subdirectories.", rich_help_panel=INPUT)
]
Null = Annotated[
    bool,
    typer.Option("--null", "-0", help="The list '-' reads from stdin is NUL-separated (find -print0).",
                 rich_help_panel=INPUT),
]  # fmt: skip
UrlTimeout = Annotated[
    float,
    typer.Option("--url-timeout", click_type=click_types.FloatRange(0, min_open=True), metavar="S", rich_help_panel=INPUT,
                 help="Seconds to fetch an image given as an http(s) URL (connecting and the whole body; at most 50 MB)."),
]  # fmt: skip
Every = Annotated[
    str,
    typer.Option("--every", metavar="INTERVAL", rich_help_panel=INPUT,
                 help="Video files: classify a frame every INTERVAL of presentation time (1s, 0.5s) or every Nth frame (30f)."),
]  # fmt: skip
Video = Annotated[
    bool,
    typer.Option("--video", rich_help_panel=INPUT,
                 help="Directories and globs also list video files (classified frame by frame; the video extra)."),
]  # fmt: skip
Images = Annotated[
    list[str],
    typer.Argument(help="Image files, http(s) URLs or video files ('-' reads paths from stdin).", show_default=False),
]
Inputs = Annotated[
    list[str],
    typer.Argument(help="Files, directories, globs, http(s) URLs or URIs ('-' reads paths from stdin).",
                   show_default=False),
]  # fmt: skip

# -- Output ----------------------------------------------------------------------------------------------------------

Top = Annotated[int, typer.Option("--top", "-k", min=1, help="Predictions per image.", rich_help_panel=OUTPUT)]
Threshold = Annotated[
    float | None,
    typer.Option("--threshold", min=0, max=1, rich_help_panel=OUTPUT,
                 help="Leave out predictions below this probability (default: 0; 0.5 for multi-label models)."),
]  # fmt: skip
Format = Annotated[
    RecordFormat | None,
    typer.Option("--format", "-f", case_sensitive=False, rich_help_panel=OUTPUT,
                 help="Default: table on a terminal, else jsonl (or the --output extension)."),
]  # fmt: skip
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", rich_help_panel=OUTPUT,
                 help="Write records to FILE instead of stdout (a folder: jsonl shards)."),
]  # fmt: skip
Resume = Annotated[
    bool,
    typer.Option(
        "--resume", help="With --output: skip inputs already in FILE, append the rest.", rich_help_panel=OUTPUT
    ),
]
Summary = Annotated[
    bool,
    typer.Option("--summary", rich_help_panel=OUTPUT,
                 help="Table output: after the frames, each video's labels with their first and last time."),
]  # fmt: skip
Report = Annotated[
    Path | None,
    typer.Option("--report", dir_okay=False, rich_help_panel=OUTPUT,
                 help="Also write a self-contained HTML page of the results (thumbnails, top-k bars, filters)."),
]  # fmt: skip
ListFormatOpt = Annotated[
    ListFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.", rich_help_panel=OUTPUT)
]

# -- Decision (issue 23): groups of classes, abstaining, the wide CSV ------------------------------------------------

Groups = Annotated[
    str | None,
    typer.Option("--groups", metavar="coarse|FILE", rich_help_panel=DECISION,
                 help="Rank groups of classes: 'coarse' (dog, cat, bird, vehicle, food, ... from WordNet) or a "
                 "JSON/YAML file mapping each group to its members (labels, indices, WordNet ids, hypernym ids); "
                 "unlisted classes form 'other'."),
]  # fmt: skip
AbstainBelow = Annotated[
    float | None,
    typer.Option("--abstain-below", min=0, max=1, metavar="P", rich_help_panel=DECISION,
                 help="Mark records whose top probability (after --groups) is below P as abstained ('unknown'); "
                 "predictions are kept."),
]  # fmt: skip
Wide = Annotated[
    bool,
    typer.Option("--wide", rich_help_panel=OUTPUT,
                 help="With --format csv or tsv: one row per image, the top-k in columns (label_1, probability_1, ...)."),
]  # fmt: skip

# -- Display ---------------------------------------------------------------------------------------------------------

Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Report model, preset and providers on stderr.", rich_help_panel=DISPLAY),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress, no per-input error lines, no summary.", rich_help_panel=DISPLAY),
]
ColorOpt = Annotated[
    Color,
    typer.Option("--color", case_sensitive=False, help="Colour (auto: on a terminal, unless NO_COLOR is set).",
                 rich_help_panel=DISPLAY),
]  # fmt: skip
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.", rich_help_panel=DISPLAY)]

# -- embed -------------------------------------------------------------------------------------------------------------

VectorOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", dir_okay=False, rich_help_panel=OUTPUT,
                 help="FILE.npy (+ FILE.paths.txt), FILE.jsonl or FILE.parquet (default: jsonl on stdout)."),
]  # fmt: skip
VectorFormatOpt = Annotated[
    VectorFormat | None,
    typer.Option("--format", "-f", case_sensitive=False, help="Default: from the --output extension.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Normalize = Annotated[
    bool, typer.Option("--normalize", help="Scale each vector to unit L2 norm.", rich_help_panel=OUTPUT)
]
VectorResume = Annotated[
    bool,
    typer.Option("--resume", help="With --output .npy or .jsonl: skip images already in it, add the rest.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip

# -- train -------------------------------------------------------------------------------------------------------------

TRAINING = "Training"
TrainData = Annotated[
    Path,
    typer.Argument(
        help="One folder per class, DATA/train and DATA/val, or a CSV/JSONL list of path,label.", show_default=False
    ),
]
ModelOutput = Annotated[
    Path,
    typer.Option("--output", "-o", dir_okay=False, show_default=False, rich_help_panel=OUTPUT,
                 help="The new model (ONNX): the backbone, your classes' head, labels and preprocessing inside."),
]  # fmt: skip
ValSplit = Annotated[
    float,
    typer.Option("--val-split", click_type=click_types.FloatRange(0, 1, min_open=True, max_open=True), rich_help_panel=TRAINING,
                 help="Fraction of each class held out for validation when DATA has no val/ folder."),
]  # fmt: skip
Augment = Annotated[
    int,
    typer.Option("--augment", min=0, rich_help_panel=TRAINING,
                 help="Random-resized, flipped crops per training image, besides the image itself."),
]  # fmt: skip
Seed = Annotated[
    int, typer.Option("--seed", help="Seed of the split, the crops and the folds.", rich_help_panel=TRAINING)
]
Cs = Annotated[
    tuple,
    typer.Option("--c", click_type=Numbers("C,C,...", example="0.1,1,10"), rich_help_panel=TRAINING,
                 help="Inverse regularisation strengths cross-validation chooses from."),
]  # fmt: skip
Folds = Annotated[
    int, typer.Option("--folds", min=2, help="Cross-validation folds (at most).", rich_help_panel=TRAINING)
]
MaxIter = Annotated[int, typer.Option("--max-iter", min=1, help="Solver iterations.", rich_help_panel=TRAINING)]
NoCache = Annotated[
    bool,
    typer.Option("--no-cache", help="Neither read nor keep bottleneck vectors in the cache.", rich_help_panel=TRAINING),
]
ReportFormat = Annotated[
    ListFormat,
    typer.Option("--format", "-f", case_sensitive=False, help="The report's format.", rich_help_panel=OUTPUT),
]

# -- evaluate ----------------------------------------------------------------------------------------------------------

Dataset = Annotated[
    Path,
    typer.Argument(help="A folder per class, or a CSV/JSONL list of path,label.", show_default=False),
]
Worst = Annotated[
    int, typer.Option("--worst", min=0, help="Show the N classes with the lowest top-1.", rich_help_panel=OUTPUT)
]
Confusions = Annotated[
    int,
    typer.Option("--confusions", min=0, help="Show the N most frequent true → predicted mistakes.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Mapping = Annotated[
    bool,
    typer.Option("--mapping", help="Show the folder/label → class index map (always in --format json).",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
ScoreThreshold = Annotated[
    float | None,
    typer.Option("--threshold", min=0, max=1, rich_help_panel=OUTPUT,
                 help="Multi-label models: a class counts as predicted at or above it (default 0.5)."),
]  # fmt: skip

# -- explain -----------------------------------------------------------------------------------------------------------

EXPLAINING = "Explanation"
OutputDir = Annotated[
    Path,
    typer.Option("--output-dir", "-o", file_okay=False, show_default=False, rich_help_panel=OUTPUT,
                 help="Folder for the overlays: <name>.<method>.png (and .npy with --npy)."),
]  # fmt: skip
ClassName = Annotated[
    str | None,
    typer.Option("--class", metavar="LABEL|INDEX", rich_help_panel=EXPLAINING,
                 help="The class to explain (default: each image's top-1)."),
]  # fmt: skip
ExplainMethodOpt = Annotated[
    ExplainMethod,
    typer.Option("--method", case_sensitive=False, rich_help_panel=EXPLAINING,
                 help="cam: class activation map (GAP + linear heads, one pass); occlusion: any model, one run per "
                 "patch."),
]  # fmt: skip
Npy = Annotated[
    bool,
    typer.Option("--npy", help="Also write the raw map (on the model's input grid) as .npy.", rich_help_panel=OUTPUT),
]
Colormap = Annotated[
    str,
    typer.Option("--colormap", help="A perceptual colour map by name (inferno, magma, viridis, ...).",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Patch = Annotated[
    int | None,
    typer.Option("--patch", min=1, rich_help_panel=EXPLAINING,
                 help="Occlusion: side of the hidden square on the input, in pixels (default: 1/7 of it)."),
]  # fmt: skip
Stride = Annotated[
    int | None,
    typer.Option("--stride", min=1, help="Occlusion: step between squares (default: half the patch).",
                 rich_help_panel=EXPLAINING),
]  # fmt: skip
OcclusionBatch = Annotated[
    int,
    typer.Option("--batch-size", min=1, help="Occlusion: occluded copies per model run.", rich_help_panel=RUNTIME),
]
ExplainTop = Annotated[
    int, typer.Option("--top", "-k", min=1, help="Predictions per image in the output.", rich_help_panel=OUTPUT)
]
ExplainReport = Annotated[
    Path | None,
    typer.Option("--report", dir_okay=False, help="Also write a self-contained HTML page with the heat maps.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip

# -- models pull / quantize ------------------------------------------------------------------------------------------

SOURCE = "Source"
PullName = Annotated[str | None, typer.Argument(help="A catalog name or alias.", show_default=False)]
Url = Annotated[str | None, typer.Option("--url", help="Download this URL instead of a catalog model.",
                                         rich_help_panel=SOURCE)]  # fmt: skip
File = Annotated[
    Path | None, typer.Option("--file", help="Import a model file you already have.", rich_help_panel=SOURCE)
]
AsName = Annotated[str | None, typer.Option("--name", help="Name to use the pulled model by.", rich_help_panel=OUTPUT)]
Sha256 = Annotated[
    str | None, typer.Option("--sha256", help="Expected sha256 of the download.", rich_help_panel=SOURCE)
]
Force = Annotated[
    bool, typer.Option("--force", help="Replace a model already cached under that name.", rich_help_panel=OUTPUT)
]
ModelName = Annotated[str, typer.Argument(autocompletion=complete_model, show_default=False)]
ModelSpec = Annotated[
    str, typer.Argument(help="ONNX file, catalog name or alias.", autocompletion=complete_model, show_default=False)
]

QUANTIZING = "Quantisation"
QuantizeSource = Annotated[
    str | None, typer.Argument(metavar="MODEL", autocompletion=complete_model, show_default=False)
]
Calibrate = Annotated[
    Path,
    typer.Option("--calibrate", show_default=False, rich_help_panel=INPUT,
                 help="A folder of photos like the ones the model will see (100-500 is plenty; read recursively)."),
]  # fmt: skip
QuantizeOutput = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the int8 model to this file.", rich_help_panel=OUTPUT)
]
CacheName = Annotated[
    str | None,
    typer.Option("--name", help="Also put the int8 model in the cache under this name.", rich_help_panel=OUTPUT),
]
ForceName = Annotated[
    bool, typer.Option("--force", help="Replace a cached model of that --name.", rich_help_panel=OUTPUT)
]
QuantizeMethodOpt = Annotated[
    QuantizeMethod,
    typer.Option("--method", case_sensitive=False, rich_help_panel=QUANTIZING,
                 help="How activation ranges are calibrated (minmax is fastest; entropy kept the most accuracy here)."),
]  # fmt: skip
Limit = Annotated[
    int, typer.Option("--limit", min=1, help="Use at most N calibration images.", rich_help_panel=QUANTIZING)
]
ReduceRange = Annotated[
    bool,
    typer.Option("--reduce-range", help="7-bit weights, for CPUs without VNNI where int8 products can saturate.",
                 rich_help_panel=QUANTIZING),
]  # fmt: skip
EvaluateOn = Annotated[
    Path | None,
    typer.Option("--evaluate", rich_help_panel=QUANTIZING,
                 help="Labelled images (as `imgclass evaluate` reads them): compare fp32 and int8 before writing."),
]  # fmt: skip
MaxDrop = Annotated[
    float,
    typer.Option("--max-drop", min=0, rich_help_panel=QUANTIZING,
                 help="With --evaluate: refuse to write (exit 3) when top-1 falls by more points than this."),
]  # fmt: skip

# -- bench ---------------------------------------------------------------------------------------------------------

BenchImages = Annotated[
    Path | None,
    typer.Option("--images", exists=True, help="A folder of images for the end-to-end run.", rich_help_panel=INPUT),
]
Synthetic = Annotated[
    int, typer.Option("--synthetic", min=1, help="Synthetic samples for the model-only run.", rich_help_panel=INPUT)
]
Compare = Annotated[
    str,
    typer.Option("--compare", metavar="MODEL|auto|none", autocompletion=complete_model, rich_help_panel=MODEL,
                 help="Measure another model side by side; auto: the other precision (int8/fp32) of this model when "
                 "it is here."),
]  # fmt: skip

# -- root ----------------------------------------------------------------------------------------------------------


def _show_version(ctx: typer.Context, value: bool) -> None:
    if value:
        from imgclass._util.version import __version__

        ctx.obj.stdout.write(f"imgclass {__version__}\n")
        raise typer.Exit(0)


Version = Annotated[
    bool,
    typer.Option("--version", is_eager=True, callback=_show_version, help="Show the version and exit."),
]


# -- imgclass serve, and the client side (--server on predict and batch) -------------------------------------------

SERVING = "Serving"

Server = Annotated[
    str | None,
    typer.Option("--server", metavar="URL", envvar="IMGCLASS_SERVER", rich_help_panel=SERVING,
                 help="Send the images to a running `imgclass serve` at URL instead of loading a model here "
                      "(env IMGCLASS_SERVER; its token from IMGCLASS_TOKEN)."),
]  # fmt: skip
ServeName = Annotated[
    str | None,
    typer.Option("--name", rich_help_panel=SERVING,
                 help="The model's name in /v2/models/NAME (default: the catalog name or the file's stem)."),
]  # fmt: skip
Host = Annotated[
    str,
    typer.Option("--host", rich_help_panel=SERVING, help="Address to listen on; any but a loopback address needs --token."),
]  # fmt: skip
Port = Annotated[
    int, typer.Option("--port", min=0, max=65535, rich_help_panel=SERVING, help="Port to listen on (0: any free one).")
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="IMGCLASS_TOKEN", rich_help_panel=SERVING, show_default=False,
                 help="Bearer token every request but the health probes must carry (env IMGCLASS_TOKEN)."),
]  # fmt: skip
MaxBatch = Annotated[
    int,
    typer.Option(
        "--max-batch", min=1, rich_help_panel=SERVING, help="Images run through the model as one batch at most."
    ),
]
MaxDelayMs = Annotated[
    float,
    typer.Option("--max-delay-ms", min=0, max=10_000, rich_help_panel=SERVING,
                 help="How long the first image of a batch waits for others."),
]  # fmt: skip
MaxQueue = Annotated[
    int,
    typer.Option("--max-queue", min=1, rich_help_panel=SERVING,
                 help="Images admitted at once; more are answered 503 with Retry-After."),
]  # fmt: skip
MaxBodyMb = Annotated[
    float,
    typer.Option("--max-body-mb", min=0.001, max=1024, rich_help_panel=SERVING,
                 help="Largest request body in MiB; more is answered 413."),
]  # fmt: skip
RequestTimeout = Annotated[
    float,
    typer.Option("--timeout", min=0.1, max=3600, rich_help_panel=SERVING,
                 help="Seconds a request may take; more is answered 504."),
]  # fmt: skip
ServeEngine = Annotated[
    Engine,
    typer.Option("--engine", case_sensitive=False, rich_help_panel=SERVING,
                 help="Serve here, or as a Ray Serve deployment (pip install 'imgclass\\[ray-serve]')."),
]  # fmt: skip
Replicas = Annotated[
    int, typer.Option("--replicas", min=1, rich_help_panel=SERVING, help="With --engine ray: model replicas.")
]
