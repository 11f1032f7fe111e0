"""Remember what was learnt about a model file (signature, external data, sha256) across runs.

Keyed by the file's identity (real path, device, inode, size, mtime and ctime): an
unchanged file is not parsed or hashed again, which keeps `import onnx`, a 100 MB
protobuf parse and a 100 MB sha256 out of every later start. Any write to the file,
even one that keeps its size and resets its mtime, changes its ctime, so the next
use hashes it again. A file changed less than RACY_SECONDS ago is not remembered
(its timestamps could still match a later write in the same clock tick: the "racy
git" problem). External-data locations are re-checked on every use. A cache that
cannot be read or written is simply not used: everything is then worked out afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from imgclass._util.fs import write_atomically
from imgclass.graph.reader import check_locations, external_locations, read_graph
from imgclass.graph.signature import Signature, inspect
from imgclass.store.cache import index_dir, sha256_file

VERSION = 4  # 2: Signature.head, 3: Signature.transform_input, 4: content verdicts
RACY_SECONDS = 2.0
_memo: dict[str, dict] = {}  # this process's findings, racy or not, by identity


def _identity(path: Path) -> dict:
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _settled(identity: dict) -> bool:
    """True when the file last changed long enough ago for its identity to tell any later change."""
    newest = max(identity["mtime_ns"], identity["ctime_ns"])
    return time.time_ns() - newest > RACY_SECONDS * 1e9


def _entry_path(path: Path) -> Path:
    key = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    return index_dir() / f"{key}.json"


def _key(identity: dict) -> str:
    return json.dumps(identity, sort_keys=True)


def _read(path: Path) -> dict | None:
    identity = _identity(path)
    known = _memo.get(_key(identity))
    if known is not None:
        return dict(known)
    try:
        data = json.loads(_entry_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION or data.get("identity") != identity:
        return None
    return data


def _write(path: Path, data: dict) -> None:
    """Remember `data` for `path` if the file is settled and still the file `data` describes."""
    try:
        if _identity(path) != data["identity"]:
            return
        _memo[_key(data["identity"])] = dict(data)
        if not _settled(data["identity"]):
            return
        target = _entry_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, json.dumps(data))
    except OSError:
        pass


def _fresh(path: Path, base: dict | None = None) -> dict:
    data = dict(base) if base else {"version": VERSION, "identity": _identity(path)}
    model = read_graph(path)
    signature = inspect(model, path)
    data.update(signature=dataclasses.asdict(signature), external=external_locations(model))
    return data


def signature_of(path: Path) -> Signature:
    """The model's Signature, parsing the file only when it is new or changed."""
    data = _read(path)
    if data is None or "signature" not in data:
        data = _fresh(path, data)
        _write(path, data)
    else:
        check_locations([tuple(x) for x in data["external"]], path)
    return Signature(**data["signature"])


def has_external_data(path: Path) -> bool:
    data = _read(path)
    if data is None or "external" not in data:
        data = _fresh(path, data)
        _write(path, data)
    return bool(data["external"])


def sha256_of(path: Path) -> str:
    """The sha256 of the file's bytes: remembered for an unchanged file, else computed (and remembered)."""
    data = _read(path) or {"version": VERSION, "identity": _identity(path)}
    if not data.get("sha256"):
        data["sha256"] = sha256_file(path)
        _write(path, data)  # only if the file did not change while it was hashed
    return data["sha256"]
