"""ONNX Runtime's optimised graphs, cached on disk and bound to the exact bytes they were built from.

    <optimized>/<sha256[:32]>-ort<version>-<device>-<cpu>.onnx        the graph ONNX Runtime saved
    <optimized>/<sha256[:32]>-ort<version>-<device>-<cpu>.onnx.json   its binding
    <optimized>/<sha256[:32]>-<provider><version>-<device>-<precision>-<cpu>.ov/   OpenVINO's compiled blobs

ONNX Runtime cannot save a graph whose nodes OpenVINO compiled; OpenVINO keeps its own
compiled form in the `.ov` folder, keyed by the same model hash, its provider, version and
precision (and OpenVINO names each blob by the graph and properties it was compiled from).
`<device>.measured.json` beside the graphs remembers what `bench` measured for a model.

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

from imgclass._util.fs import temp_name, write_atomically
from imgclass.errors import ModelError, UsageError
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


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            head = handle.read(16384)  # the first CPU's entry; the whole file is slow to generate
        flags = next(line for line in head.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        import platform

        flags = platform.processor() or platform.machine()
    return hashlib.sha1(flags.encode()).hexdigest()[:8]


def provider_tag(device: Device) -> str:
    """The provider and its version that build `device`'s graphs: `ort1.32.0`, `openvino-plugin1.8.1`."""
    import onnxruntime as ort

    if device.kind != "openvino":
        return f"ort{ort.__version__}"
    from imgclass.graph import openvino

    found = openvino.require(device.target)
    return f"openvino-{found.kind}{found.version.split()[-1]}-ort{ort.__version__}"


def graph_path(folder: Path, sha256: str, device: Device) -> Path:
    """Optimised graphs depend on the model, ONNX Runtime, the providers, the precision and the CPU's instruction set."""
    if device.kind == "openvino":
        return folder / f"{sha256[:32]}-{provider_tag(device)}-{device}-{device.precision}-{_cpu_tag()}.ov"
    return folder / f"{sha256[:32]}-{provider_tag(device)}-{device}-{_cpu_tag()}.onnx"


def _read_checked(path: Path, sha256: str) -> bytes:
    """The model's bytes, refused unless they are the ones `sha256` names (the file may change under us)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read model: {(err.strerror or str(err)).lower()}") from err
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"{path}: the file changed while it was being loaded; run again")
    return data


def measured_path(folder: Path, sha256: str, device: Device) -> Path:
    """Where `bench` remembers its measurement of this model on `device` (keyed like the graphs)."""
    return graph_path(folder, sha256, device).with_suffix(".measured.json")


def remember_speed(folder: Path, sha256: str, device: Device, images_per_s: float) -> None:
    """Keep one measured model-only speed; a cache that cannot be written keeps nothing."""
    path = measured_path(folder, sha256, device)
    record = {"version": 1, "source_sha256": sha256, "device": str(device), "precision": device.precision,
              "images_per_s": float(images_per_s)}  # fmt: skip
    try:
        if _writable(folder):
            write_atomically(path, json.dumps(record) + "\n")
    except OSError:
        return


def measured_speed(folder: Path, sha256: str, device: Device) -> float | None:
    """The model-only speed `bench` measured for these bytes on `device`, or None."""
    try:
        data = json.loads(measured_path(folder, sha256, device).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("source_sha256") != sha256 or data.get("precision") != device.precision:
        return None
    speed = data.get("images_per_s")
    return float(speed) if isinstance(speed, (int, float)) and speed > 0 else None


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
    if device.kind == "openvino":
        return _openvino_session(path, sha256, graph, device, threads, spinning)
    if graph.is_file() and check_graph(graph, sha256) is None:
        try:
            return create_session(graph, device, threads, name=path, optimized=True, spinning=spinning)
        except ModelError:
            pass  # unusable after all (another ONNX Runtime build?): rebuild it from the model
    data = _read_checked(path, sha256)
    discard(graph)
    tmp = temp_name(graph) if _writable(folder) else None  # ONNX Runtime writes it; _keep renames it
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
    try:
        if not tmp.is_file() or tmp.stat().st_size == 0:
            return
        from imgclass.store.cache import sha256_file

        with open(tmp, "ab") as handle:
            handle.write(binding_tail(source_sha256))
        binding = {"version": BINDING_VERSION, "source_sha256": source_sha256, "sha256": sha256_file(tmp),
                   "size": tmp.stat().st_size}  # fmt: skip
        write_atomically(side, json.dumps(binding) + "\n")
        os.replace(tmp, graph)  # the graph is only used once its binding agrees with it
    except OSError:
        discard(graph)


def _openvino_session(path: Path, sha256: str, blobs: Path, device: Device, threads: int | None, spinning: bool):
    """OpenVINO compiles the model's own bytes (checked against `sha256`) and keeps its blobs under `blobs`."""
    from imgclass.graph import openvino

    openvino.check_precision(device.target, device.precision)  # before anything is written for it
    data = _read_checked(path, sha256)
    cache_dir = None
    if _writable(blobs.parent) and not blobs.is_symlink():
        try:
            blobs.mkdir(exist_ok=True)
            cache_dir = os.fspath(blobs)
        except OSError:
            cache_dir = None
    return create_session(data, device, threads, name=path, spinning=spinning, cache_dir=cache_dir)


def resolve_auto(folder: Path, sha256: str, device: Device) -> Device:
    """`auto` on a machine without CUDA: the OpenVINO CPU device at f32 where `bench` measured it faster for
    these very bytes than the CPU provider; otherwise `auto` as it is. OpenVINO is not imported unless such
    a measurement exists."""
    if device.kind != "auto" or not any(folder.glob(f"{sha256[:32]}-openvino-*-openvino-f32-*.measured.json")):
        return device
    from imgclass.graph.runtime import CUDA, available_providers

    if CUDA in available_providers():
        return device
    candidate = Device("openvino", 0, "CPU", "f32")
    try:
        faster = measured_speed(folder, sha256, candidate)
    except (ModelError, UsageError):
        return device  # the provider is gone or lists no CPU now
    cpu = measured_speed(folder, sha256, Device("cpu"))
    return candidate if faster and cpu and faster > cpu else device
