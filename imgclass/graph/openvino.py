"""The OpenVINO execution provider: where it comes from, which devices it lists, which precisions run natively.

Two packagings serve it. Preferred: the plugin for the stock onnxruntime wheel
(`onnxruntime-ep-openvino`, the `openvino` extra), registered with
`register_execution_provider_library` and bound to a device from `get_ep_devices()`.
Also accepted: the older `onnxruntime-openvino` wheel, which replaces onnxruntime and
lists `OpenVINOExecutionProvider` among its providers. Nothing here imports either
until a session on the OpenVINO device is asked for (or `info` asks what is there).

OpenVINO properties go in `load_config`: the inference precision is always set
explicitly (OpenVINO would otherwise pick bf16 on AMX CPUs by itself), so f32 means f32.
"""

from __future__ import annotations

import functools
import json
import platform
from dataclasses import dataclass

from imgclass.errors import MissingExtra, ModelError, UsageError, option

PROVIDER = "OpenVINOExecutionProvider"
REGISTRATION = "imgclass-openvino"
PRECISIONS = ("f32", "bf16", "f16")
TARGETS = ("CPU", "GPU", "NPU")
CPU_FEATURES = ("amx_bf16", "amx_int8", "amx_fp16", "avx512_bf16", "avx512_vnni", "avx512_fp16", "avx_vnni",
                "avx512f", "avx2")  # fmt: skip


@dataclass(frozen=True)
class Source:
    """Where the provider came from: `plugin` (onnxruntime-ep-openvino) or `builtin` (onnxruntime-openvino)."""

    kind: str
    version: str
    devices: tuple[str, ...]  # OpenVINO device names it lists: CPU, GPU, GPU.1, NPU
    note: str = ""  # why it lists none, when it lists none


def cpu_flags(text: str | None = None) -> set[str]:
    """The first CPU's flags from /proc/cpuinfo (or `text`); empty where there is no such file."""
    if text is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
                text = handle.read(16384)
        except OSError:
            return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def cpu_features(flags: set[str] | None = None) -> dict[str, bool]:
    """The CPU features that decide what OpenVINO runs natively: AMX, AVX-512 BF16/VNNI/FP16, AVX2."""
    flags = cpu_flags() if flags is None else flags
    return {name: name in flags for name in CPU_FEATURES}


def native_precisions(target: str, flags: set[str] | None = None, machine: str | None = None) -> tuple[str, ...]:
    """The precisions `target` computes in hardware; the others would be emulated (slowly) or ignored."""
    base = target.split(".")[0]
    if base == "GPU":
        return ("f32", "f16")
    if base == "NPU":
        return ("f16",)
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    native = ["f32"]
    if flags & {"avx512_bf16", "amx_bf16"}:
        native.append("bf16")
    if "amx_fp16" in flags or (machine in ("aarch64", "arm64") and "asimdhp" in flags):
        native.append("f16")
    return tuple(native)


def check_precision(target: str, precision: str, flags: set[str] | None = None, machine: str | None = None) -> None:
    """UsageError when `target` cannot compute in `precision` natively: imgclass never emulates a precision."""
    if precision not in PRECISIONS:
        raise UsageError(f"{option('precision')} {precision!r}: use one of {', '.join(PRECISIONS)}")
    native = native_precisions(target, flags, machine)
    if precision in native:
        return
    why = {
        "bf16": "bf16 needs AVX-512 BF16 or AMX (avx512_bf16/amx_bf16 in /proc/cpuinfo)",
        "f16": "f16 needs AMX-FP16 on x86 CPUs",
    }.get(precision, "")
    raise UsageError(
        f"{option('precision')} {precision}: the OpenVINO {target} device does not compute in {precision} natively on this "
        f"machine{' (' + why + ')' if target.startswith('CPU') and why else ''}; it would be emulated slowly, "
        f"so imgclass refuses. Native here: {', '.join(native)}"
    )


def _plugin_module():
    try:
        import onnxruntime_ep_openvino
    except ImportError:
        return None
    return onnxruntime_ep_openvino


@functools.lru_cache(maxsize=1)
def _register_plugin() -> str | None:
    """Register the plugin library with ONNX Runtime once per process; its version, or None when absent."""
    module = _plugin_module()
    if module is None:
        return None
    import onnxruntime as ort

    try:
        ort.register_execution_provider_library(REGISTRATION, module.get_library_path())
    except Exception as err:  # noqa: BLE001 - ORT raises its own private types
        if "already registered" not in str(err).lower():
            raise ModelError(f"the OpenVINO plugin could not be registered with ONNX Runtime: {err}") from None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-ep-openvino")
    except PackageNotFoundError:
        return "unknown"


def plugin_devices() -> dict[str, object]:
    """OpenVINO device name -> the OrtEpDevice the plugin lists for it (empty without the plugin)."""
    if _register_plugin() is None:
        return {}
    import onnxruntime as ort

    found: dict[str, object] = {}
    for device in ort.get_ep_devices():
        if device.ep_name == PROVIDER:
            found.setdefault(str(device.ep_metadata.get("ov_device", "CPU")), device)
    return found


def source() -> Source | None:
    """The provider this process can use, or None when neither packaging is installed."""
    version = _register_plugin()
    if version is not None:
        devices = tuple(plugin_devices())
        note = "" if devices else "the plugin lists no device here (it serves Intel CPUs, GPUs and NPUs only)"
        return Source("plugin", version, devices, note)
    import onnxruntime as ort

    if PROVIDER in ort.get_available_providers():
        try:
            from onnxruntime.capi import _pybind_state as state

            devices = tuple(state.get_available_openvino_device_ids())
        except (ImportError, AttributeError):
            devices = ("CPU",)
        return Source("builtin", f"onnxruntime-openvino {ort.__version__}", devices or ("CPU",))
    return None


def require(target: str) -> Source:
    """The provider, able to run on `target`; MissingExtra (exit 2) without it, ModelError when it lacks the device."""
    found = source()
    if found is None:
        raise MissingExtra("openvino", "the OpenVINO device")
    base = target.split(".")[0]
    if target not in found.devices and not (target == base and any(d.split(".")[0] == base for d in found.devices)):
        listed = ", ".join(found.devices) or "none"
        raise ModelError(
            f"OpenVINO device {target}: not available ({found.kind} {found.version} lists: {listed}"
            f"{'; ' + found.note if found.note else ''})"
        )
    return found


def load_config(target: str, precision: str, threads: int | None) -> str:
    """The OpenVINO properties for one session, as the JSON `load_config` takes."""
    hint = {"f32": "f32", "bf16": "bf16", "f16": "f16"}[precision]
    properties: dict[str, str] = {"INFERENCE_PRECISION_HINT": hint}
    if threads and target.startswith("CPU"):
        properties["INFERENCE_NUM_THREADS"] = str(threads)
    return json.dumps({target.split(".")[0] if target.startswith("CPU") else target: properties})


def add_to_session(options, target: str, precision: str, threads: int | None, cache_dir: str | None) -> list | None:
    """Put the OpenVINO provider on `options`; returns the `providers` list for InferenceSession (None: plugin)."""
    found = require(target)
    check_precision(target, precision)
    config = load_config(target, precision, threads)
    provider_options = {"load_config": config}
    if cache_dir:
        provider_options["cache_dir"] = cache_dir
    if found.kind == "plugin":
        devices = plugin_devices()
        device = devices.get(target) or next(d for name, d in devices.items() if name.split(".")[0] == target)
        options.add_provider_for_devices([device], provider_options)
        return None
    return [(PROVIDER, {"device_type": target, **provider_options}), "CPUExecutionProvider"]


def describe() -> dict:
    """What `imgclass info` shows: the provider, its devices and the CPU features that matter."""
    found = source()
    facts: dict = {"cpu_features": sorted(k for k, v in cpu_features().items() if v)}
    if found is None:
        facts["provider"] = "not installed (pip install 'imgclass[openvino]')"
        return facts
    facts.update(provider=f"{PROVIDER} ({found.kind} {found.version})", devices=list(found.devices))
    if found.note:
        facts["note"] = found.note
    facts["native_precisions"] = {d: list(native_precisions(d)) for d in found.devices}
    return facts
