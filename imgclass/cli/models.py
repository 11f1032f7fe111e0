"""`imgclass models ...`: list, presets, info, pull, remove, path, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from imgclass._util.text import printable
from imgclass.cli import params as p
from imgclass.cli.options import display, values
from imgclass.cli.render import print_fields, print_json, print_table
from imgclass.errors import ExitCode, UsageError

models = typer.Typer(
    name="models",
    help="List, inspect, pull, verify and remove models.",
    epilog="\b\nExamples:\n  imgclass models list\n  imgclass models pull resnet50",
)


@models.command("list", epilog="\b\nExample:\n  imgclass models list --format json")
def models_list(
    ctx: typer.Context,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """The models imgclass knows by name, and whether each is cached."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.store import registry as store

    rows = store.listing()
    if fmt == "json":
        return print_json(env, rows)
    columns = [("name", "left"), ("aliases", "left"), ("family", "left"), ("precision", "left"), ("size", "right"),
               ("top-1", "right"), ("preset", "left"), ("cached", "left")]  # fmt: skip
    cells = []
    for row in rows:
        top1 = (row.get("accuracy") or {}).get("top1")
        cells.append([row["name"], ", ".join(row["aliases"]), row["family"], row.get("precision") or "",
                      f"{row['size'] / 1e6:.1f} MB", f"{top1:.2f}" if top1 else "", row["preset"] or "",
                      "yes" if row["cached"] else "no"])  # fmt: skip
    print_table(env, columns, cells, keep="name")


@models.command("presets", epilog="\b\nExample:\n  imgclass models presets --format json")
def models_presets(
    ctx: typer.Context,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """The built-in preprocessing presets."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.data.presets import builtin_presets

    presets = builtin_presets()
    if fmt == "json":
        return print_json(env, [p.to_dict() for p in presets.values()])
    print_fields(env, {p.name: p.description for p in presets.values()}, width=16)


@models.command(
    "info", epilog="\b\nExamples:\n  imgclass models info inception-v3\n  imgclass models info ./export.onnx -f json"
)
def models_info(
    ctx: typer.Context,
    model: p.ModelSpec,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Inputs, outputs, detected preset, classes, checksum and provenance of a model (never downloads)."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.tasks.info import describe

    info = describe(model)
    return print_json(env, info) if fmt == "json" else print_fields(env, info, width=16)


@models.command("pull", epilog="\b\nExamples:\n  imgclass models pull resnet50\n"
                "  imgclass models pull --file ./resnet50-v1-12.onnx --name resnet50-v1-12")  # fmt: skip
def models_pull(
    ctx: typer.Context,
    name: p.PullName = None,
    url: p.Url = None,
    file: p.File = None,
    as_name: p.AsName = None,
    sha256: p.Sha256 = None,
    force: p.Force = False,
    offline: p.Offline = False,
    preset: p.Preset = None,
    labels: p.Labels = None,
    size: p.Size = None,
    resize: p.Resize = None,
    crop_pct: p.CropPct = None,
    interpolation: p.InterpolationOpt = None,
    mean: p.Mean = None,
    std: p.Std = None,
    bgr: p.Bgr = False,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Fetch a catalog model, a URL, or import a local file into the cache.

    With --file, the model's sidecar (MODEL.json, preprocessor_config.json, config.json) and the
    preprocessing options (--preset, --crop-pct, --labels, ...) are written into the cached copy's
    metadata, so it is preprocessed the same when used by name.
    """
    env = display(ctx, verbose, quiet, color, debug)
    chosen = values({"preset": preset, "labels": labels, "size": size, "resize": resize, "crop_pct": crop_pct,
                     "interpolation": interpolation, "mean": mean, "std": std, "bgr": bgr})  # fmt: skip
    from imgclass.cli.loading import download_bar
    from imgclass.store import catalog
    from imgclass.store import registry as store

    if sum(x is not None for x in (name, url, file)) != 1:
        raise UsageError("give one of: NAME, --url URL --name NAME, --file PATH --name NAME")
    offline = offline or store.offline_from_env()
    if url is not None or file is not None:
        if not as_name:
            raise UsageError("--url and --file need --name NAME")
        if url is not None and offline:
            raise UsageError("--url cannot be used offline")
        settings = _import_settings(chosen, file is not None)
        result = (store.pull_url(url, as_name, sha256, download_bar(env), force) if url is not None
                  else store.import_file(file, as_name, force, settings))  # type: ignore[arg-type]  # fmt: skip
        env.stdout.write(f"{result if isinstance(result, Path) else result.path}\n")
        return
    _import_settings(chosen, False)
    entry = catalog.find(name)  # type: ignore[arg-type]
    if entry is None:
        raise UsageError(f"{name}: not in the catalog (see: imgclass models list); use --url or --file for others")
    env.stdout.write(f"{store.pull_entry(entry, offline, download_bar(env), replace_damaged=True)}\n")


def _import_settings(chosen: dict[str, Any], importing: bool):
    """The preprocessing options of `models pull`, as settings for --file (refused without it)."""
    from imgclass.cli.options import pop_load_options
    from imgclass.store.loader import ModelSettings

    given = sorted(k for k, v in chosen.items() if v not in (None, False))
    _, options = pop_load_options(dict(chosen))
    if not importing:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags}: only with --file (a catalog model or a URL keeps its own preprocessing)")
        return None
    if options.preset == "auto":
        raise UsageError("--preset auto: give the preset to write (`imgclass models doctor FILE` finds it)")
    labels_file = Path(options.labels) if options.labels is not None else None
    return ModelSettings(preset=options.preset, overrides=options.overrides, labels_file=labels_file)


@models.command(
    "doctor",
    epilog="\b\nExamples:\n  imgclass models doctor ./export.onnx\n  imgclass models doctor ./export.onnx -f json",
)
def models_doctor(
    ctx: typer.Context,
    model: p.ModelSpec,
    offline: p.Offline = False,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Which preprocessing a model expects: run it on photos with known answers under every preset.

    The evidence is the probability the model gives each photo's known class (espresso, a cat, a
    rocket; public-domain photos shipped with imgclass) under each built-in preset. The preset in
    use is kept when it is close to the best; otherwise the best is named. Put it in a sidecar
    (MODEL.json: {"preset": NAME}) or import the model with `imgclass models pull --file MODEL
    --name NAME --preset NAME`. ImageNet-1k models only; exit 3 when no preset gives the answers.
    """
    env = display(ctx, verbose, quiet, color, debug)
    import imgclass
    from imgclass.inference.doctor import diagnose

    diagnosis = diagnose(imgclass.load(model, offline=True if offline else None).model)
    if fmt == "json":
        print_json(env, diagnosis.to_dict())
    else:
        photos = list(diagnosis.best.probabilities)
        columns = [("preset", "left"), ("mean", "right"), *((name, "right") for name in photos)]
        rows = [[e.preset, f"{e.mean:.3f}", *(f"{e.probabilities[n]:.3f}" for n in photos)] for e in diagnosis.evidence]
        print_table(env, columns, rows, keep="preset")
        env.stdout.write(printable(f"recommended: {diagnosis.recommended} ({diagnosis.reason})") + "\n")
    return ExitCode.OK if diagnosis.confident else ExitCode.MODEL


@models.command("remove", epilog="\b\nExample:\n  imgclass models remove resnet50")
def models_remove(
    ctx: typer.Context,
    name: p.ModelName,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Delete a model from the cache, with the optimised graphs built from it."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.store import registry as store

    for path in store.remove(name):
        env.stdout.write(f"removed {path}\n")


@models.command("path", epilog='\b\nExample:\n  ls "$(imgclass models path)"')
def models_path(ctx: typer.Context) -> None:
    """Print the folder cached models live in (the `models` folder `imgclass info` shows)."""
    env = ctx.obj
    from imgclass.store.cache import models_dir

    env.stdout.write(f"{models_dir()}\n")


@models.command("verify", epilog="\b\nExample:\n  imgclass models verify --format json")
def models_verify(
    ctx: typer.Context,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Re-hash every cached model and optimised graph; exit 3 if any is damaged."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.store import registry as store

    report = store.verify()
    if fmt == "json":
        print_json(env, report)
    else:
        for row in report:
            text = f"{'ok' if row['ok'] else 'DAMAGED':8} {row['name']:28} {row['problem'] or row['path']}"
            env.stdout.write(printable(text) + "\n")
    damaged = [r for r in report if not r["ok"]]
    for row in damaged:
        env.err(f"{row['name']}: damaged ({row['problem']}); run: {row['remedy']}")
    return ExitCode.MODEL if damaged else ExitCode.OK


from imgclass.cli.quantize import QUANTIZE_EXAMPLES  # noqa: E402 - registered last, after the group exists
from imgclass.cli.quantize import quantize as _quantize  # noqa: E402

models.command("quantize", epilog=QUANTIZE_EXAMPLES)(_quantize)
