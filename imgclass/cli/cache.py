"""`imgclass cache ...`: see what the cache holds and prune what can be rebuilt."""

from __future__ import annotations

import typer

from imgclass.cli import params as p
from imgclass.cli.options import display
from imgclass.cli.render import print_json

cache = typer.Typer(
    name="cache",
    help="Show and clean the cache: models, optimised graphs, inspection data.",
    epilog="\b\nExamples:\n  imgclass cache list\n  imgclass cache prune",
)


def _mb(size: int) -> str:
    return f"{size / 1e6:9.1f} MB"


@cache.command("list", epilog="\b\nExample:\n  imgclass cache list --format json")
def cache_list(
    ctx: typer.Context,
    fmt: p.ListFormatOpt = p.ListFormat.table,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Every file in the cache by kind, with sizes and totals."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.store import cache as store_cache

    held = store_cache.inventory()
    if fmt == "json":
        return print_json(env, {"folders": {k: str(v) for k, v in store_cache.folders().items()}, **held})
    for kind, items in held.items():
        env.stdout.write(f"{kind:10} {len(items):4} files {_mb(sum(i['size'] for i in items))}\n")
        for item in items:
            env.stdout.write(f"  {_mb(item['size'])}  {item['path']}\n")


@cache.command("prune", epilog="\b\nExample:\n  imgclass cache prune")
def cache_prune(
    ctx: typer.Context,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> None:
    """Remove optimised graphs, inspection data and leftovers (models stay; the rest is rebuilt on use)."""
    env = display(ctx, verbose, quiet, color, debug)
    from imgclass.store import cache as store_cache

    removed = store_cache.prune()
    env.stdout.write(f"removed {len(removed)} files, {_mb(sum(i['size'] for i in removed)).strip()}\n")
