"""Where models live on disk: a per-user cache, overridable with IMGCLASS_HOME.

    <home>/models/<file>            catalog models, named as the zoo names them
    <home>/models/<name>.onnx       models pulled by URL or imported from a file
    <home>/models/registry.json     name -> file, sha256, size, origin of those
    <home>/optimized/               ONNX Runtime's optimised graphs (cold-start cache)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from imgclass.errors import UsageError

ENV_HOME = "IMGCLASS_HOME"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def home() -> Path:
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imgclass", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def optimized_dir() -> Path:
    return home() / "optimized"


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith((".part", ".lock", ".json")):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (no path separators)")
    return name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def lock(target: Path, timeout: float = 3600) -> Iterator[None]:
    """Hold an inter-process lock for `target` (another process pulling it waits)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(os.fspath(target) + ".lock", timeout=timeout):
        yield


@dataclass(frozen=True)
class Registered:
    name: str
    file: str
    sha256: str
    size: int
    origin: str

    @property
    def path(self) -> Path:
        return models_dir() / self.file


def _registry_path() -> Path:
    return models_dir() / "registry.json"


def registry() -> dict[str, Registered]:
    try:
        raw = json.loads(_registry_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: Registered(name=name, **rec) for name, rec in raw.items() if isinstance(rec, dict)}


def _write_registry(entries: dict[str, Registered]) -> None:
    path = _registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {n: {"file": r.file, "sha256": r.sha256, "size": r.size, "origin": r.origin} for n, r in sorted(entries.items())}
    tmp = path.with_name(f"registry.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def register(entry: Registered) -> None:
    with lock(_registry_path()):
        entries = registry()
        entries[entry.name] = entry
        _write_registry(entries)


def unregister(name: str) -> Registered | None:
    with lock(_registry_path()):
        entries = registry()
        entry = entries.pop(name, None)
        if entry is not None:
            _write_registry(entries)
        return entry
