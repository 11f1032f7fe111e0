"""Where models live on disk: a per-user cache, overridable with IMGCLASS_HOME.

<home>/models/<file>            catalog models, named as the zoo names them
<home>/models/<name>.onnx       models pulled by URL or imported from a file
<home>/models/registry.json     name -> file, sha256, size, origin of those
<home>/optimized/               ONNX Runtime's optimised graphs (cold-start cache)
<home>/index/                   what was learnt about model files (signature, sha256)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgclass._util.fs import write_atomically
from imgclass.errors import CacheError, UsageError, describe_os_error

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
        raise UsageError(f"«name» {name!r}: use letters, digits, '.', '_' and '-' (no path separators)")
    return name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _writable_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheError(
            f"cache folder {folder}: {describe_os_error(err)}; set {ENV_HOME} to a writable folder"
        ) from None


@contextmanager
def lock(target: Path) -> Iterator[None]:
    """Hold an inter-process lock for `target` (another process pulling it waits).

    The lock file is removed on release. A waiter that wakes up holding the lock of
    a file that was removed meanwhile retries on the current one, so removing it is
    safe (the lock is always taken on the file that is at the path).
    """
    import fcntl

    path = os.fspath(target) + ".lock"
    _writable_dir(target.parent)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CacheError(f"cannot lock {target.name} in {target.parent}: {describe_os_error(err)}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


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


_REGISTERED_FIELDS = ("file", "sha256", "size", "origin")


def registry() -> dict[str, Registered]:
    """Pulled models by name. A missing registry is empty; a damaged one is an error, never empty."""
    path = _registry_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise CacheError(f"{path}: cannot read the model registry: {describe_os_error(err)}") from None
    try:
        raw = json.loads(text)
        entries = {str(name): Registered(str(name), *(rec[f] for f in _REGISTERED_FIELDS)) for name, rec in raw.items()}
        if not all(isinstance(r.size, int) and isinstance(r.file, str) for r in entries.values()):
            raise TypeError("bad field type")
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CacheError(
            f"{path}: the model registry is damaged ({type(err).__name__}); fix or remove it, "
            "then pull the models again"
        ) from None
    return entries


def _write_registry(entries: dict[str, Registered]) -> None:
    path = _registry_path()
    _writable_dir(path.parent)
    data = {
        n: {"file": r.file, "sha256": r.sha256, "size": r.size, "origin": r.origin} for n, r in sorted(entries.items())
    }
    try:
        write_atomically(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise CacheError(f"{path}: cannot write the model registry: {describe_os_error(err)}") from None


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


def index_dir() -> Path:
    return home() / "index"


def help_dir() -> Path:
    """Rendered `--help` pages (imgclass.cli.helpcache): rebuilt on demand, safe to delete."""
    return home() / "help"


def folders() -> dict[str, Path]:
    """Every folder the cache uses, by role (what `info` and `cache list` show)."""
    return {"home": home(), "models": models_dir(), "optimized": optimized_dir(), "index": index_dir(),
            "help": help_dir()}  # fmt: skip


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return []


def inventory() -> dict[str, list[dict]]:
    """What the cache holds, by kind: models, optimised graphs, inspection data, help pages, leftovers."""
    kinds: dict[str, list[dict]] = {"models": [], "optimized": [], "index": [], "help": [], "leftovers": []}
    for kind in ("models", "optimized", "index", "help"):
        for path in _files(folders()[kind]):
            leftover = path.name.endswith((".part", ".lock", ".tmp")) or ".tmp" in path.suffixes
            kinds["leftovers" if leftover else kind].append({"path": str(path), "size": path.stat().st_size})
    return kinds


def in_use(path: Path) -> bool:
    """A leftover a live process still holds: a `.lock` someone has locked, or the `.part`/`.tmp` of a
    pull whose lock is held (its pid, in the name, still running, when there is no lock to try)."""
    import fcntl

    name = path.name
    if name.endswith(".lock"):
        lock_file = path
    else:
        match = re.match(r"^\.(.+?)\.(\d+)\.(?:\d+\.\d+\.)?(?:part|tmp)$", name)
        if match is None:
            return False
        lock_file = path.with_name(match.group(1) + ".lock")
        if not lock_file.exists():
            return _alive(int(match.group(2)))
    try:
        fd = os.open(lock_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # (drops the lock just taken, if it was)
    return False


def _remove_free_lock(path: Path) -> bool:
    """Remove a lock file nobody holds, holding it meanwhile (a waiter then retries on a new one, see `lock`)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
        return True
    except OSError:
        return False  # held by a live process (or already gone)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return pid != 0


def prune() -> list[dict]:
    """Remove what can be rebuilt (optimised graphs, inspection data, help pages) and leftovers; models stay.

    A leftover a live process holds (a pull in progress: its `.part` and `.lock`) is kept.
    """
    held = inventory()
    removed = []
    for item in held["optimized"] + held["index"] + held["help"] + held["leftovers"]:
        path = Path(item["path"])
        if path.name.endswith(".lock"):
            if _remove_free_lock(path):
                removed.append(item)
            continue
        if item in held["leftovers"] and in_use(path):
            continue
        try:
            Path(item["path"]).unlink()
            removed.append(item)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise CacheError(f"{item['path']}: cannot remove: {describe_os_error(err)}") from None
    return removed


def remove_optimized(sha256: str) -> list[Path]:
    """The optimised graphs built from a model's bytes (every ONNX Runtime version and device)."""
    removed = []
    for path in _files(optimized_dir()):
        if path.name.startswith(sha256[:32] + "-"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
