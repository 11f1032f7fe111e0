"""Models by name: resolve a --model value, pull, import, remove and verify cached models."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from imgclass import cache, catalog
from imgclass.catalog import Entry
from imgclass.errors import ModelError, UsageError

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
        f"use a local file with --model ./FILE.onnx, set {ENV_MIRROR}=BASE_URL to a mirror serving {entry.file}, "
        f"or import a copy of the catalog's exact file ({entry.size} bytes, sha256 {entry.sha256[:12]}...) "
        f"with: imgclass models pull --file PATH --name {entry.name}"
    )


def pull_entry(entry: Entry, offline: bool = False, progress=None) -> Path:
    """The cached file of a catalog model, fetched and verified first if it is not there."""
    from imgclass.download import DownloadFailed, fetch

    dest = cached_path(entry)
    with cache.lock(dest):
        if is_cached(entry):
            return dest
        if offline:
            raise ModelError(f"{entry.name} is not in the cache and offline mode is on; {_how_to_get(entry)}")
        try:
            fetch(urls_for(entry), dest, entry.sha256, entry.size, progress, subject=entry.name)
        except DownloadFailed as err:
            raise err.with_hint(f"Other ways: {_how_to_get(entry)}") from None
    return dest


def _check_onnx(path: Path) -> None:
    from imgclass.model import inspect_file

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
        raise UsageError(f"{name}: already in the cache; pass --force to replace it")


def pull_url(url: str, name: str, sha256: str | None = None, progress=None, force: bool = False) -> cache.Registered:
    from imgclass.download import fetch

    cache.check_name(name)
    _check_free(name, force)
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise UsageError(f"--sha256 {sha256!r}: expected 64 hex digits")
    dest = cache.models_dir() / f"{name}.onnx"
    with cache.lock(dest):
        size = None
        known = catalog.find(name)
        if known and sha256 is None:
            sha256, size = known.sha256, known.size
        digest = fetch([url], dest, sha256, size, progress)
        _check_onnx(dest)
        entry = cache.Registered(name, dest.name, digest, dest.stat().st_size, url)
        cache.register(entry)
    return entry


def import_file(source: Path, name: str, force: bool = False) -> cache.Registered | Path:
    """Copy a model the user already has into the cache; verified when the catalog knows it."""
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    cache.check_name(name)
    _check_free(name, force)
    digest = cache.sha256_file(source)
    entry = catalog.find(name)
    if entry is not None:
        if digest != entry.sha256:
            raise ModelError(f"{source}: sha256 {digest} does not match the catalog's {entry.sha256} for {entry.name}")
        dest = cached_path(entry)
    else:
        dest = cache.models_dir() / f"{name}.onnx"
    with cache.lock(dest):
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            shutil.copyfile(source, tmp)
            if cache.sha256_file(tmp) != digest:
                raise ModelError(f"{source}: changed while it was being copied; try again")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    if entry is not None:
        return dest
    _check_onnx(dest)
    registered = cache.Registered(name, dest.name, digest, dest.stat().st_size, f"file {source.resolve()}")
    cache.register(registered)
    return registered


def remove(name: str) -> list[Path]:
    """Delete a pulled or catalog model from the cache, with the optimised graphs built from it."""
    removed = []
    registered = cache.unregister(name)
    if registered is not None:
        if registered.path.exists():
            registered.path.unlink()
            removed.append(registered.path)
        removed += cache.remove_optimized(registered.sha256)
    entry = catalog.find(name)
    if entry is not None and cached_path(entry).exists():
        cached_path(entry).unlink()
        removed.append(cached_path(entry))
        removed += cache.remove_optimized(entry.sha256)
    if not removed and registered is None:
        raise UsageError(f"{name}: not in the cache")
    return removed


def listing() -> list[dict]:
    """Every model known by name: the catalog's and the pulled ones, with whether each is cached."""
    rows = [{**e.to_dict(), "cached": is_cached(e), "path": str(cached_path(e))} for e in catalog.entries()]
    rows += [
        {"name": r.name, "aliases": [], "family": "", "file": r.file, "urls": [], "sha256": r.sha256, "size": r.size,
         "preset": None, "labels": None, "license": None, "source": r.origin, "accuracy": None,
         "cached": r.path.is_file(), "path": str(r.path)}
        for r in cache.registry().values()
    ]  # fmt: skip
    return rows


def verify() -> list[dict]:
    """Re-hash every cached model; report each with ok true/false and the problem."""
    report = []
    for entry in catalog.entries():
        path = cached_path(entry)
        if path.exists():
            report.append(_verify_one(entry.name, path, entry.sha256, entry.size))
    for reg in cache.registry().values():
        report.append(_verify_one(reg.name, reg.path, reg.sha256, reg.size))
    return report


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


def resolve(spec: str, offline: bool = False, progress=None) -> Resolved:
    """A --model value (path, pulled name, catalog name or alias) as a local file."""
    path = Path(spec).expanduser()
    if path.is_file():
        return Resolved(path, spec)
    if path.exists():
        raise ModelError(f"{spec}: is a directory, not an ONNX model file")
    if os.sep in spec or spec.lower().endswith(".onnx"):
        raise ModelError(f"{spec}: no such model file")
    registered = cache.registry().get(spec)
    if registered is not None and registered.path.is_file():
        return Resolved(registered.path, spec, catalog.by_sha256(registered.sha256), registered.sha256)
    entry = catalog.find(spec)
    if entry is not None:
        return Resolved(pull_entry(entry, offline, progress), entry.name, entry, entry.sha256)
    raise ModelError(f"{spec}: not a model file, a catalog model or a pulled model (see: imgclass models list)")
