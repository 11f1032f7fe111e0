"""Remember what was learnt about a model file (signature, external data, sha256) across runs.

Keyed by the file's identity (real path, size, mtime, inode): an unchanged file is
not parsed or hashed again, which keeps `import onnx` and a 100 MB protobuf parse
out of every later start. External-data locations are re-checked on every use.
A cache that cannot be read or written is simply not used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from imgclass.cache import index_dir, sha256_file
from imgclass.modelfile import check_locations, external_locations, read_graph
from imgclass.signature import Signature, inspect

VERSION = 3  # 2: Signature.head, 3: Signature.transform_input


def _identity(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _entry_path(path: Path) -> Path:
    key = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    return index_dir() / f"{key}.json"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(_entry_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("version") != VERSION or data.get("identity") != _identity(path):
        return None
    return data


def _write(path: Path, data: dict) -> None:
    target = _entry_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        pass


def _fresh(path: Path) -> dict:
    model = read_graph(path)
    signature = inspect(model, path)
    return {
        "version": VERSION,
        "identity": _identity(path),
        "signature": dataclasses.asdict(signature),
        "external": external_locations(model),
    }


def signature_of(path: Path) -> Signature:
    """The model's Signature, parsing the file only when it is new or changed."""
    data = _read(path)
    if data is None:
        data = _fresh(path)
        _write(path, data)
    else:
        check_locations([tuple(x) for x in data["external"]], path)
    return Signature(**data["signature"])


def has_external_data(path: Path) -> bool:
    data = _read(path)
    return bool(data and data["external"])


def sha256_of(path: Path) -> str:
    data = _read(path) or _fresh(path)
    if not data.get("sha256"):
        data["sha256"] = sha256_file(path)
        _write(path, data)
    return data["sha256"]
