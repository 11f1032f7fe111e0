"""Models by name: resolve a --model value, pull, import, remove and verify cached models."""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgclass._util.fs import create_new, temp_name
from imgclass.errors import CacheError, ModelError, UsageError, describe_os_error
from imgclass.store import cache, catalog
from imgclass.store.catalog import Entry

if TYPE_CHECKING:
    from imgclass.store.loader import ModelSettings

ENV_MIRROR = "IMGCLASS_MIRROR"
ENV_OFFLINE = "IMGCLASS_OFFLINE"


@dataclass(frozen=True)
class Resolved:
    path: Path
    name: str
    entry: Entry | None = None
    sha256: str | None = None


def offline_from_env() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def urls_for(entry: Entry) -> list[str]:
    """The catalog's URLs, or BASE/<entry.file> for each space-separated IMGCLASS_MIRROR base."""
    mirrors = os.environ.get(ENV_MIRROR, "").split()
    if mirrors:
        return [base.rstrip("/") + "/" + entry.file for base in mirrors]
    return list(entry.urls)


def cached_path(entry: Entry) -> Path:
    return cache.models_dir() / entry.file


def is_cached(entry: Entry) -> bool:
    path = cached_path(entry)
    return path.is_file() and path.stat().st_size == entry.size


def _how_to_get(entry: Entry) -> str:
    return (
        f"use a local file with «model» ./FILE.onnx, set {ENV_MIRROR}=BASE_URL to a mirror serving {entry.file}, "
        f"or import a copy of the catalog's exact file ({entry.size} bytes, sha256 {entry.sha256[:12]}...) "
        f"with: imgclass models pull «file» PATH «name» {entry.name}"
    )


def intact(path: Path, sha256: str) -> bool:
    """Whether `path` holds the bytes `sha256` names (remembered for an unchanged file)."""
    from imgclass.store import index as modelindex

    try:
        return modelindex.sha256_of(path) == sha256.lower()
    except OSError as err:
        raise ModelError(f"{path}: cannot read model: {describe_os_error(err)}") from None


def damaged(name: str, path: Path, remedy: str) -> ModelError:
    return ModelError(f"{name}: the cached model {path} is damaged (its sha256 is not the one recorded); {remedy}")


def pull_entry(entry: Entry, offline: bool = False, progress=None, replace_damaged: bool = False) -> Path:
    """The cached file of a catalog model, verified; fetched first if it is not there.

    A cached copy is used without taking a lock (a read-only cache works). A damaged
    copy is an error, or with `replace_damaged` (what `models pull` does) fetched again.
    """
    from imgclass.store.download import DownloadFailed, fetch

    dest = cached_path(entry)
    if is_cached(entry):
        if intact(dest, entry.sha256):
            return dest
        if not replace_damaged:
            raise damaged(entry.name, dest, f"fetch a fresh copy with: imgclass models pull {entry.name}")
    if offline:
        state = "damaged in the cache" if dest.exists() else "not in the cache"
        raise ModelError(f"{entry.name} is {state} and offline mode is on; {_how_to_get(entry)}")
    with cache.lock(dest):
        if is_cached(entry) and intact(dest, entry.sha256):
            return dest  # another process fetched it meanwhile
        try:
            fetch(urls_for(entry), dest, entry.sha256, entry.size, progress, subject=entry.name)
        except DownloadFailed as err:
            raise err.with_hint(f"Other ways: {_how_to_get(entry)}") from None
    return dest


def _check_onnx(path: Path) -> None:
    from imgclass.store.loader import inspect_file

    try:
        inspect_file(path)
    except ModelError as err:
        path.unlink(missing_ok=True)
        raise ModelError(f"{err} (removed from the cache)") from None


def _check_free(name: str, force: bool) -> None:
    """A name already in use is only replaced with --force."""
    if force:
        return
    if name in cache.registry() or (catalog.find(name) is not None and is_cached(catalog.find(name))):  # type: ignore[arg-type]
        raise UsageError(f"{name}: already in the cache; pass «force» to replace it")


def pull_url(url: str, name: str, sha256: str | None = None, progress=None, force: bool = False) -> cache.Registered:
    from imgclass.store.download import display_url, fetch

    cache.check_name(name)
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise UsageError(f"«sha256» {sha256!r}: expected 64 hex digits")
    if not force and (same := _already_pulled(name, sha256)) is not None:
        return same  # the very bytes asked for are there (another pull of them just finished)
    _check_free(name, force)
    dest = cache.models_dir() / f"{name}.onnx"
    with cache.lock(dest):
        if not force and (same := _already_pulled(name, sha256)) is not None:
            return same
        size = None
        known = catalog.find(name)
        if known and sha256 is None:
            sha256, size = known.sha256, known.size
        digest = fetch([url], dest, sha256, size, progress)
        _check_onnx(dest)
        entry = cache.Registered(name, dest.name, digest, dest.stat().st_size, display_url(url))
        cache.register(entry)
    return entry


def _already_pulled(name: str, sha256: str | None) -> cache.Registered | None:
    registered = cache.registry().get(name)
    if sha256 is None or registered is None or registered.sha256 != sha256.lower() or not registered.path.is_file():
        return None
    return registered if intact(registered.path, registered.sha256) else None


def import_file(
    source: Path, name: str, force: bool = False, settings: ModelSettings | None = None
) -> cache.Registered | Path:
    """Copy a model the user already has into the cache; verified when the catalog knows it.

    What says how to use it and does not travel inside the file (a sidecar beside it, or
    `settings`: a preset, preprocessing overrides, a labels file) is written into the copy's
    `imgclass.*` metadata, so the cached model used alone is preprocessed and labelled the same.
    """
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    cache.check_name(name)
    _check_free(name, force)
    entry = catalog.find(name)
    carry = _carried(source, settings)
    if entry is not None and carry:
        raise UsageError(f"{name} is a catalog model: it is verified against the catalog's bytes and uses the "
                         "catalog's preprocessing; import it under another name to give it your own")  # fmt: skip
    digest = cache.sha256_file(source)
    if entry is not None and digest != entry.sha256:
        raise ModelError(f"{source}: sha256 {digest} does not match the catalog's {entry.sha256} for {entry.name}")
    dest = cached_path(entry) if entry is not None else cache.models_dir() / f"{name}.onnx"
    with cache.lock(dest):
        digest = _copy_in(source, dest, digest, carry)
    if entry is not None:
        return dest
    _check_onnx(dest)
    registered = cache.Registered(name, dest.name, digest, dest.stat().st_size, f"file {source.resolve()}")
    cache.register(registered)
    return registered


def _carried(source: Path, settings: ModelSettings | None) -> dict[str, str]:
    """The metadata a copy of `source` needs, or {} when the file already says all (metadata, detection)."""
    from imgclass.store import carried
    from imgclass.store.index import has_external_data
    from imgclass.store.loader import ModelSettings, make_plan

    plan = make_plan(source, str(source), settings or ModelSettings())
    preset_from = plan.preset.source
    outside = preset_from.startswith("sidecar") or preset_from.startswith("flag") or preset_from.endswith("overrides")
    values = carried.preprocessing(plan) if outside else {}
    if plan.labels.kind in ("flag", "sidecar"):
        values |= carried.labels(plan)
    if settings is not None and settings.activation is not None:
        values |= carried.activation(plan)
    if values and has_external_data(source):
        raise UsageError(f"{source}: its weights are in external data files, so its preprocessing cannot be written "
                         "into a copy; keep its sidecar and use the file where it is")  # fmt: skip
    return values


def _copy_in(source: Path, dest: Path, digest: str, carry: dict[str, str]) -> str:
    """Copy `source` to `dest` through a temporary file, `carry` written into its metadata; the copy's sha256."""
    from imgclass.graph import metadata

    tmp = temp_name(dest, ".part")
    try:
        with open(source, "rb") as reader, os.fdopen(create_new(tmp), "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
        if cache.sha256_file(tmp) != digest:
            raise ModelError(f"{source}: changed while it was being copied; try again")
        if carry:
            metadata.write_file(tmp, carry, metadata.CARRIED)
            digest = cache.sha256_file(tmp)
        os.replace(tmp, dest)
    except OSError as err:
        raise CacheError(
            f"cannot copy {source.name} into the cache {dest.parent}: {describe_os_error(err)}; "
            f"free some space or set {cache.ENV_HOME} to a folder on another disk"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def remove(name: str) -> list[Path]:
    """Delete a pulled or catalog model from the cache, with the optimised graphs built from it."""
    removed = []
    registered = cache.unregister(name)
    if registered is not None:
        removed += _remove_file(registered.path, registered.sha256)
    entry = catalog.find(name)
    if entry is not None and cached_path(entry).exists():
        removed += _remove_file(cached_path(entry), entry.sha256)
    if not removed and registered is None:
        raise UsageError(f"{name}: not in the cache")
    return removed


def _remove_file(path: Path, sha256: str) -> list[Path]:
    """A cached model, with the graphs built from its recorded bytes and from what it holds now."""
    from imgclass.store import index as modelindex

    digests = {sha256}
    removed = []
    if path.exists():
        try:
            digests.add(modelindex.sha256_of(path))
        except OSError:
            pass
        path.unlink()
        removed.append(path)
    for digest in sorted(digests):
        removed += cache.remove_optimized(digest)
    return removed


def safe_origin(origin: str) -> str:
    """Where a pulled model came from, fit to show: a URL without credentials or query (older
    registries may hold them)."""
    from imgclass.store.download import display_url

    return display_url(origin) if origin.lower().startswith(("http://", "https://")) else origin


def listing() -> list[dict]:
    """Every model known by name: the catalog's and the pulled ones, with whether each is cached."""
    rows = [{**e.to_dict(), "cached": is_cached(e), "path": str(cached_path(e))} for e in catalog.entries()]
    rows += [
        {"name": r.name, "aliases": [], "family": "", "file": r.file, "urls": [], "sha256": r.sha256, "size": r.size,
         "preset": None, "labels": None, "license": None, "source": safe_origin(r.origin), "accuracy": None,
         "cached": r.path.is_file(), "path": str(r.path)}
        for r in cache.registry().values()
    ]  # fmt: skip
    return rows


def verify() -> list[dict]:
    """Re-hash every cached model and optimised graph; report each with ok true/false, the problem and the remedy."""
    report = []
    for entry in catalog.entries():
        path = cached_path(entry)
        if path.exists():
            row = _verify_one(entry.name, path, entry.sha256, entry.size)
            report.append(
                {**row, "kind": "model", "remedy": None if row["ok"] else f"imgclass models pull {entry.name}"}
            )
    for reg in cache.registry().values():
        row = _verify_one(reg.name, reg.path, reg.sha256, reg.size)
        report.append({**row, "kind": "model", "remedy": None if row["ok"] else remedy_for(reg)})
    return report + _verify_graphs()


def remedy_for(reg: cache.Registered) -> str:
    """The command that puts the right bytes back for a pulled or imported model."""
    if reg.origin.startswith("file "):
        return f"imgclass models pull «file» {shlex.quote(reg.origin[5:])} «name» {reg.name} «force»"
    if reg.origin.endswith("?...") or not reg.origin.startswith(("http://", "https://")):
        return f"pull it again from its URL: imgclass models pull «url» URL «name» {reg.name} «force»"
    return f"imgclass models pull «url» {reg.origin} «name» {reg.name} «force»"


def _verify_graphs() -> list[dict]:
    """Every optimised graph must be intact and bound to the model bytes it was built from."""
    from imgclass.store.optimized import check_graph, read_binding

    names = {e.sha256: e.name for e in catalog.entries()} | {r.sha256: r.name for r in cache.registry().values()}
    rows = []
    for path in sorted(cache.optimized_dir().glob("*.onnx")) if cache.optimized_dir().is_dir() else []:
        source = (read_binding(path) or {}).get("source_sha256", "")
        problem = check_graph(path, rehash=True)
        rows.append({"name": f"optimised graph of {names.get(source) or (source[:12] or 'an unknown model')}",
                     "path": str(path), "ok": problem is None, "problem": problem, "kind": "optimized",
                     "remedy": None if problem is None else "imgclass cache prune (graphs are rebuilt on use)"})  # fmt: skip
    return rows


def _verify_one(name: str, path: Path, sha256: str, size: int) -> dict:
    problem = None
    if not path.exists():
        problem = "file missing"
    elif path.stat().st_size != size:
        problem = f"size {path.stat().st_size}, expected {size}"
    else:
        actual = cache.sha256_file(path)
        if actual != sha256:
            problem = f"sha256 {actual}, expected {sha256}"
    return {"name": name, "path": str(path), "ok": problem is None, "problem": problem}


def _check_if_cached(path: Path) -> str | None:
    """A cache file given by its path is verified like the same model given by name."""
    try:
        if path.resolve().parent != cache.models_dir().resolve():
            return None
    except OSError:
        return None
    for reg in cache.registry().values():
        if reg.file == path.name:
            if not intact(path, reg.sha256):
                raise damaged(reg.name, path, f"put the right bytes back with: {remedy_for(reg)}")
            return reg.sha256
    entry = next((e for e in catalog.entries() if e.file == path.name), None)
    if entry is not None and not intact(path, entry.sha256):
        raise damaged(entry.name, path, f"fetch a fresh copy with: imgclass models pull {entry.name}")
    return entry.sha256 if entry else None


def resolve(spec: str, offline: bool = False, progress=None) -> Resolved:
    """A --model value (path, pulled name, catalog name or alias) as a local file."""
    path = Path(spec).expanduser()
    if path.is_file():
        return Resolved(path, spec, None, _check_if_cached(path))
    if path.exists():
        raise ModelError(f"{spec}: is a directory, not an ONNX model file")
    if os.sep in spec or spec.lower().endswith(".onnx"):
        raise ModelError(f"{spec}: no such model file")
    registered = cache.registry().get(spec)
    if registered is not None and registered.path.is_file():
        if not intact(registered.path, registered.sha256):
            raise damaged(spec, registered.path, f"put the right bytes back with: {remedy_for(registered)}")
        return Resolved(registered.path, spec, catalog.by_sha256(registered.sha256), registered.sha256)
    entry = catalog.find(spec)
    if entry is not None:
        return Resolved(pull_entry(entry, offline, progress), entry.name, entry, entry.sha256)
    raise ModelError(f"{spec}: not a model file, a catalog model or a pulled model (see: imgclass models list)")
