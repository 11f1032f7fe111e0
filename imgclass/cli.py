"""The command line: parse arguments, call the core, hand records to a sink, map errors to exit codes.

Heavy modules (numpy, onnxruntime, Pillow) are imported inside the commands that
need them, so `imgclass --help` and `imgclass models list` answer at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from typing import Annotated

from imgclass import __version__
from imgclass.errors import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_USAGE,
    ImgclassError,
    UsageError,
)
from imgclass.terminal import err_line, stderr_is_terminal

app = typer.Typer(
    name="imgclass",
    help="Classify images with ONNX exports of Inception v3 and ResNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
models_app = typer.Typer(help="List, inspect, pull and remove models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgclass {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Classify images with ONNX exports of Inception v3 and ResNet."""


# --- shared options ---------------------------------------------------------------------

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", envvar="IMGCLASS_MODEL", help="ONNX file, catalog name or alias (default: inception-v3)."),
]
PresetOpt = Annotated[Optional[str], typer.Option(help="Preprocessing preset (see `imgclass models presets`).")]
SizeOpt = Annotated[Optional[int], typer.Option(help="Input size for models with a dynamic spatial size.")]
ResizeOpt = Annotated[Optional[int], typer.Option(help="Resize the short side to N before cropping.")]
CropPctOpt = Annotated[Optional[float], typer.Option("--crop-pct", help="Crop fraction: resize to size/crop-pct, then crop.")]
InterpOpt = Annotated[Optional[str], typer.Option(help="nearest, bilinear, bicubic, lanczos, box, hamming, area, tf-bilinear.")]
MeanOpt = Annotated[Optional[str], typer.Option(help="Per-channel mean in RGB order, e.g. 0.485,0.456,0.406.")]
StdOpt = Annotated[Optional[str], typer.Option(help="Per-channel std in RGB order.")]
BgrOpt = Annotated[bool, typer.Option("--bgr", help="Feed channels in BGR order.")]
LabelsOpt = Annotated[Optional[Path], typer.Option(help="Labels file: one per line, or JSON (list or id2label).")]
TopOpt = Annotated[int, typer.Option("--top", "-k", help="How many predictions per image.")]
ThresholdOpt = Annotated[float, typer.Option(help="Leave out predictions below this probability.")]
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="table, json, jsonl, csv or tsv (default: table on a terminal, else jsonl)."),
]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write records to FILE instead of stdout.")]
DeviceOpt = Annotated[str, typer.Option(envvar="IMGCLASS_DEVICE", help="auto, cpu, cuda or cuda:N.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Threads for the model (default: all cores).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Images per model run (default from the model).")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="Decode threads (default: 2, or half the cores up to 8).")]
ExactOpt = Annotated[
    bool, typer.Option("--exact-decode", help="Full-resolution JPEG decode and full resize: bit-exact, slower.")
]
TruncOpt = Annotated[bool, typer.Option("--allow-truncated", help="Classify what is there in truncated images.")]
MaxPixelsOpt = Annotated[Optional[int], typer.Option("--max-pixels", help="Refuse images with more pixels (default: Pillow's).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", envvar="IMGCLASS_OFFLINE", help="Never use the network.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Report model, preset and providers on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")]


def _floats3(text: str | None, option: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UsageError(f"{option} {text!r}: give three numbers, e.g. 0.5,0.5,0.5")
    return values  # type: ignore[return-value]


def _progress_for_pull():
    from imgclass.terminal import DownloadBar

    return DownloadBar() if stderr_is_terminal() else None


def _load(
    model: str | None,
    preset: str | None,
    overrides,
    labels: Path | None,
    device: str,
    threads: int | None,
    offline: bool,
    pipelined: bool = False,
    exact: bool = True,
):
    """Resolve --model and load it; `pipelined` overlaps session start-up with decoding."""
    from imgclass import catalog, store
    from imgclass.cache import optimized_dir
    from imgclass.model import ModelSettings, load_model
    from imgclass.runtime import parse_device

    spec = model or catalog.default_model()
    settings = ModelSettings(
        preset=preset,
        overrides=overrides,
        labels_file=labels,
        device=parse_device(device),
        threads=threads,
        optimized_dir=optimized_dir(),
        background_session=pipelined,
        spinning=not pipelined,
        exact=exact,
    )
    resolved = store.resolve(spec, offline=offline or store.offline_from_env(), progress=_progress_for_pull())
    catalog_preset = resolved.entry.preset if resolved.entry else None
    return load_model(resolved.path, resolved.name, settings, catalog_preset, resolved.sha256)


@contextmanager
def _signals(stop: threading.Event) -> Iterator[dict]:
    """SIGINT/SIGTERM finish the records in flight, then stop; a second one stops at once."""
    state = {"signal": None}

    def handler(signum, frame):
        if state["signal"] is not None:
            raise KeyboardInterrupt
        state["signal"] = signum
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _open_output(output: Path | None, fmt: str, resume: bool):
    from imgclass.output import recorded_paths

    if output is None:
        if resume:
            raise UsageError("--resume needs --output FILE")
        sys.stdout.reconfigure(errors="backslashreplace")
        return sys.stdout, set(), True
    done = recorded_paths(output, fmt) if resume else set()
    fresh = not (resume and output.exists() and output.stat().st_size > 0)
    try:
        handle = open(output, "a" if resume else "w", encoding="utf-8", newline="", errors="backslashreplace")
    except OSError as err:
        raise UsageError(f"--output {output}: {err.strerror or err}") from None
    return handle, done, fresh


@dataclass
class ClassifyArgs:
    """Everything `predict` and `batch` were given, by option name."""

    inputs: List[str]
    model: str | None
    preset: str | None
    size: int | None
    resize: int | None
    crop_pct: float | None
    interpolation: str | None
    mean: str | None
    std: str | None
    bgr: bool
    labels: Path | None
    top: int
    threshold: float
    fmt: str | None
    output: Path | None
    device: str
    threads: int | None
    batch_size: int | None
    workers: int | None
    exact_decode: bool
    allow_truncated: bool
    max_pixels: int | None
    offline: bool
    verbose: bool
    debug: bool
    recursive: bool = False
    resume: bool = False
    show_progress: bool = False


def _classify(a: ClassifyArgs) -> int:
    from imgclass.images import DEFAULT_MAX_PIXELS, DecodeOptions
    from imgclass.output import FORMATS, format_from_extension, make_sink
    from imgclass.pipeline import Pipeline, PipelineOptions, default_batch_size, default_workers
    from imgclass.presets import Overrides
    from imgclass.sources import expand

    if a.top < 1:
        raise UsageError("--top must be at least 1")
    if not 0.0 <= a.threshold <= 1.0:
        raise UsageError("--threshold must be between 0 and 1")
    if (a.batch_size is not None and a.batch_size < 1) or (a.workers is not None and a.workers < 1):
        raise UsageError("--batch-size and --workers must be at least 1")
    fmt = a.fmt
    if fmt is None:
        fmt = (format_from_extension(a.output) or "jsonl") if a.output else ("table" if sys.stdout.isatty() else "jsonl")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    overrides = Overrides(
        size=a.size,
        resize=a.resize,
        crop_pct=a.crop_pct,
        interpolation=a.interpolation,
        mean=_floats3(a.mean, "--mean"),
        std=_floats3(a.std, "--std"),
        bgr=a.bgr,
    )
    paths_iter = expand(a.inputs, recursive=a.recursive)
    loaded = _load(a.model, a.preset, overrides, a.labels, a.device, a.threads, a.offline, pipelined=True,
                   exact=a.exact_decode)
    if a.verbose:
        info = loaded.describe()
        err_line(
            f"model {info['name']} ({info['path']}); preset {info['preset']} [{info['preset_source']}]; "
            f"input {info['signature']['layout']} {info['input_size'][0]}x{info['input_size'][1]} "
            f"{info['signature']['dtype']}; {info['classes']} classes"
            f"{' (background at 0)' if info['background_class'] else ''}; labels {info['labels']}; "
            f"providers {', '.join(info['providers'])}"
        )
    stream, done, fresh = _open_output(a.output, fmt, a.resume)
    if done:
        from imgclass.images import display_path

        paths_iter = (p for p in paths_iter if display_path(p) not in done)
    bar = None
    if a.show_progress and stderr_is_terminal():
        from imgclass.terminal import BatchBar

        paths = list(paths_iter)
        paths_iter = iter(paths)
        bar = BatchBar(len(paths))
    options = PipelineOptions(
        batch_size=a.batch_size or default_batch_size(loaded),
        workers=a.workers or default_workers(),
        decode=DecodeOptions(
            max_pixels=a.max_pixels if a.max_pixels is not None else DEFAULT_MAX_PIXELS,
            allow_truncated=a.allow_truncated,
            draft_min_short_side=None if a.exact_decode else loaded.transform.min_decode_side,
        ),
        debug=a.debug,
    )
    stop = threading.Event()
    pipeline = Pipeline(loaded, loaded.ranker(a.top, a.threshold), options, stop)
    sink = make_sink(fmt, stream, header=fresh)
    failed = 0
    broken_pipe = False
    started = False
    with _signals(stop) as caught:
        try:
            if bar:
                bar.__enter__()
            for record in pipeline.run(paths_iter):
                if not started:  # nothing is written before the model has run once
                    sink.start()
                    started = True
                sink.write(record)
                if record.error is not None:
                    failed += 1
                    err_line(f"{record.path}: {record.error}")
                if bar:
                    bar.advance()
            if not started:
                sink.start()
            sink.close()
        except BrokenPipeError:
            broken_pipe = True
            stop.set()
            _silence_stdout()
        finally:
            if bar:
                bar.__exit__(None, None, None)
            if a.output is not None:
                stream.close()
    stats = pipeline.stats
    if a.verbose or (a.show_progress and stderr_is_terminal()):
        err_line(f"{stats.images - stats.failed} classified, {stats.failed} failed")
    if caught["signal"] is not None and not broken_pipe:
        err_line(f"stopped by signal {caught['signal']}; {stats.images} records written")
        return 128 + caught["signal"]
    return EXIT_INPUT_FAILED if failed else EXIT_OK


def _silence_stdout() -> None:
    """After the reader went away: point stdout at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _shared_options(
    model: ModelOpt = None,
    preset: PresetOpt = None,
    size: SizeOpt = None,
    resize: ResizeOpt = None,
    crop_pct: CropPctOpt = None,
    interpolation: InterpOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    bgr: BgrOpt = False,
    labels: LabelsOpt = None,
    top: TopOpt = 5,
    threshold: ThresholdOpt = 0.0,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    exact_decode: ExactOpt = False,
    allow_truncated: TruncOpt = False,
    max_pixels: MaxPixelsOpt = None,
    offline: OfflineOpt = False,
    verbose: VerboseOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The options `predict` and `batch` share, declared once (see _with_shared_options)."""


def _with_shared_options(command):
    """Give `command(..., **options)` the shared options as real parameters, for Typer to parse."""
    import inspect

    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD]
    shared = inspect.signature(_shared_options, eval_str=True).parameters.values()
    command.__signature__ = inspect.Signature([*own, *shared])
    return command


@app.command()
@_with_shared_options
def predict(
    images: Annotated[List[str], typer.Argument(help="Image files ('-' reads paths from stdin).")],
    **options,
) -> None:
    """Classify one or more images and print the top labels."""
    raise typer.Exit(_classify(ClassifyArgs(inputs=images, **options)))


@app.command()
@_with_shared_options
def batch(
    inputs: Annotated[List[str], typer.Argument(help="Directories, files or globs ('-' reads paths from stdin).")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subdirectories.")] = False,
    resume: Annotated[bool, typer.Option(help="With --output: skip inputs already in FILE, append the rest.")] = False,
    **options,
) -> None:
    """Classify every image in directories, files or globs; one record per image."""
    raise typer.Exit(_classify(ClassifyArgs(inputs, recursive=recursive, resume=resume, show_progress=True, **options)))


# --- models -----------------------------------------------------------------------------

ListFormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json.")]


def _print_json(data) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _check_list_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: choose table or json")


@models_app.command("list")
def models_list(fmt: ListFormatOpt = "table") -> None:
    """The models imgclass knows by name, and whether each is cached."""
    from imgclass import cache, catalog, store

    _check_list_format(fmt)
    rows = [{**e.to_dict(), "cached": store.is_cached(e), "path": str(store.cached_path(e))} for e in catalog.entries()]
    rows += [
        {"name": r.name, "aliases": [], "family": "", "file": r.file, "urls": [], "sha256": r.sha256, "size": r.size,
         "preset": None, "labels": None, "license": None, "source": r.origin, "accuracy": None,
         "cached": r.path.is_file(), "path": str(r.path)}
        for r in cache.registry().values()
    ]
    if fmt == "json":
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("name", "aliases", "family", "size", "top-1", "preset", "cached"):
        table.add_column(column, justify="right" if column in ("size", "top-1") else "left")
    for row in rows:
        top1 = (row.get("accuracy") or {}).get("top1")
        table.add_row(
            row["name"], ", ".join(row["aliases"]), row["family"], f"{row['size'] / 1e6:.1f} MB",
            f"{top1:.2f}" if top1 else "", row["preset"] or "", "yes" if row["cached"] else "no",
        )
    Console().print(table)


@models_app.command("presets")
def models_presets(fmt: ListFormatOpt = "table") -> None:
    """The built-in preprocessing presets."""
    from imgclass.presets import builtin_presets

    _check_list_format(fmt)
    presets = builtin_presets()
    if fmt == "json":
        _print_json([p.to_dict() for p in presets.values()])
        return
    for p in presets.values():
        typer.echo(f"{p.name:16} {p.description}")


@models_app.command("info")
def models_info(
    model: Annotated[str, typer.Argument(help="Catalog name, alias, pulled name or ONNX file.")],
    fmt: ListFormatOpt = "table",
    offline: OfflineOpt = False,
) -> None:
    """Inputs, outputs, detected preset, classes, checksum and provenance of a model."""
    from imgclass import cache, catalog, store
    from imgclass.labels import background_offset, choose_labels
    from imgclass.model import inspect_file, input_size
    from imgclass.presets import choose_preset

    _check_list_format(fmt)
    entry = catalog.find(model)
    info: dict = {"name": model}
    if entry is not None:
        info.update(entry.to_dict())
    path = Path(model).expanduser()
    if not path.is_file():
        registered = cache.registry().get(model)
        if registered is not None:
            path = registered.path
            info.update({"sha256": registered.sha256, "size": registered.size, "source": registered.origin})
        elif entry is not None and store.is_cached(entry):
            path = store.cached_path(entry)
        elif entry is not None:
            path = None
        else:
            path = store.resolve(model, offline=True).path
    info["cached"] = path is not None
    if path is not None:
        signature = inspect_file(path)
        choice = choose_preset(path, signature, None, entry.preset if entry else None)
        labels = choose_labels(path, signature.metadata, None, signature.classes)
        height, width = input_size(signature, choice, None, path)
        info.update(
            path=str(path),
            sha256=info.get("sha256") or cache.sha256_file(path),
            size=path.stat().st_size,
            signature=signature.describe(),
            input_size=[height, width],
            preset=choice.preset.name,
            preset_source=choice.source,
            preprocessing=choice.preset.to_dict(),
            labels=labels.source,
            background_class=bool(signature.classes and background_offset(signature.classes, labels, str(path))),
        )
    if fmt == "json":
        _print_json(info)
        return
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        typer.echo(f"{key:16} {value}")


@models_app.command("pull")
def models_pull(
    name: Annotated[Optional[str], typer.Argument(help="Catalog name or alias.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Download this URL instead of a catalog model.")] = None,
    file: Annotated[Optional[Path], typer.Option(help="Import a model file you already have.")] = None,
    as_name: Annotated[Optional[str], typer.Option("--name", help="Name to use the pulled model by.")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="Expected sha256 of the download.")] = None,
    offline: OfflineOpt = False,
) -> None:
    """Fetch a catalog model, a URL, or import a local file into the cache."""
    from imgclass import catalog, store

    if sum(x is not None for x in (name, url, file)) != 1:
        raise UsageError("give one of: NAME, --url URL --name NAME, --file PATH --name NAME")
    if url is not None or file is not None:
        if not as_name:
            raise UsageError("--url and --file need --name NAME")
        if url is not None:
            if offline or store.offline_from_env():
                raise UsageError("--url cannot be used offline")
            result = store.pull_url(url, as_name, sha256, _progress_for_pull())
            typer.echo(str(result.path))
        else:
            result = store.import_file(file, as_name)
            typer.echo(str(result if isinstance(result, Path) else result.path))
        return
    entry = catalog.find(name)
    if entry is None:
        raise UsageError(f"{name}: not in the catalog (see: imgclass models list); use --url or --file for others")
    typer.echo(str(store.pull_entry(entry, offline or store.offline_from_env(), _progress_for_pull())))


@models_app.command("remove")
def models_remove(name: Annotated[str, typer.Argument(help="Catalog or pulled name.")]) -> None:
    """Delete a model from the cache."""
    from imgclass import store

    for path in store.remove(name):
        typer.echo(f"removed {path}")


@models_app.command("path")
def models_path() -> None:
    """Print the cache directory."""
    from imgclass.cache import models_dir

    typer.echo(str(models_dir()))


@models_app.command("verify")
def models_verify(fmt: ListFormatOpt = "table") -> None:
    """Re-hash every cached model; exit 1 if any is damaged."""
    from imgclass import store

    _check_list_format(fmt)
    report = store.verify()
    if fmt == "json":
        _print_json(report)
    else:
        for row in report:
            typer.echo(f"{'ok' if row['ok'] else 'DAMAGED':8} {row['name']:28} {row['problem'] or row['path']}")
    damaged = [r for r in report if not r["ok"]]
    for row in damaged:
        err_line(f"{row['name']}: damaged ({row['problem']}); run: imgclass models remove {row['name']} && imgclass models pull {row['name']}")
    raise typer.Exit(EXIT_INPUT_FAILED if damaged else EXIT_OK)


# --- bench ----------------------------------------------------------------------------


@app.command()
def bench(
    model: ModelOpt = None,
    images: Annotated[Optional[Path], typer.Option(help="A folder of images for the end-to-end run.")] = None,
    synthetic: Annotated[int, typer.Option(help="Synthetic samples for the model-only run.")] = 64,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    exact_decode: ExactOpt = False,
    preset: PresetOpt = None,
    offline: OfflineOpt = False,
    fmt: ListFormatOpt = "table",
) -> None:
    """Model-only and end-to-end throughput, latency percentiles and the time split."""
    from imgclass import bench as benchmark
    from imgclass.images import DecodeOptions
    from imgclass.pipeline import default_batch_size, default_workers
    from imgclass.presets import Overrides
    from imgclass.sources import expand

    _check_list_format(fmt)
    if synthetic < 1:
        raise UsageError("--synthetic must be at least 1")
    loaded = _load(model, preset, Overrides(), None, device, threads, offline, exact=exact_decode)
    paths = list(expand([str(images)])) if images else []
    options = benchmark.BenchOptions(
        batch_size=batch_size or default_batch_size(loaded),
        workers=workers or default_workers(),
        synthetic=synthetic,
        decode=DecodeOptions(draft_min_short_side=None if exact_decode else loaded.transform.min_decode_side),
    )
    result = benchmark.run(loaded, paths, options)
    if fmt == "json":
        _print_json(result)
        return
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        typer.echo(f"{key:26} {value}")


# --- info -------------------------------------------------------------------------------


@app.command()
def info(fmt: ListFormatOpt = "table") -> None:
    """Versions, execution providers, threads and the cache directory."""
    import platform

    import numpy
    import onnxruntime as ort
    import PIL

    from imgclass.cache import home
    from imgclass.runtime import default_threads

    _check_list_format(fmt)
    data = {
        "imgclass": __version__,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "providers_available": ort.get_available_providers(),
        "device_default": os.environ.get("IMGCLASS_DEVICE", "auto"),
        "threads": default_threads(),
        "cache": str(home()),
    }
    if fmt == "json":
        _print_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key:20} {', '.join(value) if isinstance(value, list) else value}")


def main() -> None:
    """Console-script entry point: one line on stderr and a stable exit code for every failure."""
    debug = "--debug" in sys.argv
    try:
        app()  # standalone: usage errors exit 2 with click's message, typer.Exit carries our codes
    except ImgclassError as err:
        if debug:
            import traceback

            traceback.print_exc()
        err_line(f"error: {err}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_OK)
