"""ONNX Runtime's optimised graphs, cached on disk and bound to the exact bytes they were built from.

    <optimized>/<sha256[:32]>-ort<version>-<device>-<cpu>.onnx        the graph ONNX Runtime saved
    <optimized>/<sha256[:32]>-ort<version>-<device>-<cpu>.onnx.json   its binding

The graph carries its binding: the full sha256 of the model bytes it was built from
is appended to it as ONNX metadata (`imgclass.source_sha256`, the file's last bytes).
The `.json` beside it holds that sha256 again and the graph's own sha256 and size. A
graph is used only when it names the bytes being loaded and its own bytes are
intact; anything else is rebuilt from the model. The graph is built from the very bytes that were hashed (ONNX Runtime gets
them from memory, not the path), so a model file that changes meanwhile can never
leave a graph behind under another file's hash. A cache that cannot be written
(read-only, full) is not used; the model still runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from imgclass.errors import ModelError
from imgclass.graph import metadata as props
from imgclass.graph.runtime import Device, create_session
from imgclass.store import index as modelindex

BINDING_VERSION = 1
BINDING_KEY = props.SOURCE_SHA256


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return varint((number << 3) | 2) + varint(len(payload)) + payload


def binding_tail(source_sha256: str) -> bytes:
    """ModelProto.metadata_props (field 14) += {key: BINDING_KEY, value: sha256}, as bytes to append.

    Protobuf merges concatenated messages, so a graph with these bytes appended is the
    same graph with one more metadata entry: it carries its binding in its own bytes.
    """
    return _field(14, _field(1, BINDING_KEY.encode()) + _field(2, source_sha256.encode()))


def _names(graph: Path, source_sha256: str) -> bool:
    tail = binding_tail(source_sha256)
    with open(graph, "rb") as handle:
        handle.seek(max(0, graph.stat().st_size - len(tail)))
        return handle.read() == tail


def graph_path(folder: Path, sha256: str, device: Device) -> Path:
    """Optimised graphs depend on the model, ONNX Runtime, the providers and the CPU's instruction set."""
    import onnxruntime as ort

    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            head = handle.read(16384)  # the first CPU's entry; the whole file is slow to generate
        flags = next(line for line in head.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        import platform

        flags = platform.processor() or platform.machine()
    cpu = hashlib.sha1(flags.encode()).hexdigest()[:8]
    return folder / f"{sha256[:32]}-ort{ort.__version__}-{device}-{cpu}.onnx"


def binding_path(graph: Path) -> Path:
    return graph.with_name(graph.name + ".json")


def read_binding(graph: Path) -> dict | None:
    try:
        data = json.loads(binding_path(graph).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != BINDING_VERSION:
        return None
    if not all(isinstance(data.get(k), t) for k, t in (("source_sha256", str), ("sha256", str), ("size", int))):
        return None
    return data


def check_graph(graph: Path, source_sha256: str | None = None, rehash: bool = False) -> str | None:
    """None when `graph` is intact (and built from `source_sha256`, if given); else what is wrong.

    `rehash`: hash the graph now even if an unchanged file's hash is remembered (`models verify`).
    """
    binding = read_binding(graph)
    if binding is None:
        return "no valid binding to the model it was built from"
    if source_sha256 is not None and binding["source_sha256"] != source_sha256:
        return "built from other bytes"
    try:
        if graph.stat().st_size != binding["size"]:
            return f"size {graph.stat().st_size}, expected {binding['size']}"
        if not _names(graph, binding["source_sha256"]):
            return "does not carry the sha256 of the model it was built from"
        from imgclass.store.cache import sha256_file

        actual = sha256_file(graph) if rehash else modelindex.sha256_of(graph)
        if actual != binding["sha256"]:
            return "sha256 does not match its binding"
    except OSError as err:
        return f"cannot read: {(err.strerror or str(err)).lower()}"
    return None


def discard(graph: Path) -> None:
    for path in (graph, binding_path(graph)):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def open_session(path: Path, sha256: str, folder: Path, device: Device, threads: int | None, spinning: bool):
    """A session for the model at `path`, whose bytes hash to `sha256`: from its cached graph, or built.

    Returns (session, providers). ModelError when the file no longer holds those bytes.
    """
    graph = graph_path(folder, sha256, device)
    if graph.is_file() and check_graph(graph, sha256) is None:
        try:
            return create_session(graph, device, threads, name=path, optimized=True, spinning=spinning)
        except ModelError:
            pass  # unusable after all (another ONNX Runtime build?): rebuild it from the model
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read model: {(err.strerror or str(err)).lower()}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"{path}: the file changed while it was being loaded; run again")
    discard(graph)
    tmp = graph.with_name(f".{graph.name}.{os.getpid()}.tmp") if _writable(folder) else None
    try:
        try:
            result = create_session(data, device, threads, name=path, save_to=tmp, spinning=spinning)
        except ModelError:
            if tmp is None:
                raise
            # Saving the graph may be what failed (a full disk): the model itself may still load.
            tmp.unlink(missing_ok=True)
            tmp = None
            result = create_session(data, device, threads, name=path, spinning=spinning)
        if tmp is not None:
            _keep(tmp, graph, sha256)
        return result
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _keep(tmp: Path, graph: Path, source_sha256: str) -> None:
    """Move a freshly saved graph into place with its binding; on any failure keep nothing."""
    side = binding_path(graph)
    side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    try:
        if not tmp.is_file() or tmp.stat().st_size == 0:
            return
        from imgclass.store.cache import sha256_file

        with open(tmp, "ab") as handle:
            handle.write(binding_tail(source_sha256))
        binding = {"version": BINDING_VERSION, "source_sha256": source_sha256, "sha256": sha256_file(tmp),
                   "size": tmp.stat().st_size}  # fmt: skip
        side_tmp.write_text(json.dumps(binding) + "\n", encoding="utf-8")
        os.replace(tmp, graph)
        os.replace(side_tmp, side)
    except OSError:
        discard(graph)
    finally:
        side_tmp.unlink(missing_ok=True)
