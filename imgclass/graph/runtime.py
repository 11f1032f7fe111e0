"""ONNX Runtime sessions: execution providers, threads, and running batches."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgclass._util.text import first_line
from imgclass.errors import ModelError, UsageError, option

if TYPE_CHECKING:  # numpy is imported where batches run: parse_device serves the CLI's option parsing
    import numpy as np

    from imgclass.graph.signature import Signature

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
PRECISIONS = ("f32", "bf16", "f16")
_DEVICE = re.compile(r"^(auto|cpu|cuda|openvino)(?::([0-9]+|cpu|gpu(?:\.[0-9]+)?|npu))?$")


@dataclass(frozen=True)
class Device:
    kind: str  # auto, cpu, cuda, openvino
    index: int = 0
    target: str = ""  # openvino: the OpenVINO device (CPU, GPU, GPU.1, NPU)
    precision: str = "f32"  # f32; bf16 or f16 only where asked for, on a device that computes in it

    def __str__(self) -> str:
        if self.kind == "openvino":
            return "openvino" if self.target == "CPU" else f"openvino:{self.target}"
        return self.kind if self.kind != "cuda" or self.index == 0 else f"cuda:{self.index}"


def parse_device(text: str | None, precision: str | None = None) -> Device:
    """`auto`, `cpu`, `cuda[:N]`, `openvino[:CPU|GPU[.N]|NPU]`, case-insensitive; and the precision to compute in.

    Only OpenVINO computes in bf16 or f16 (where the hardware does); f32 everywhere else.
    """
    match = _DEVICE.match((text or "auto").strip().lower())
    suffix = match.group(2) if match else None
    if not match or (suffix and (match.group(1), suffix.isdigit()) not in (("cuda", True), ("openvino", False))):
        raise UsageError(f"«device» {text!r}: use auto, cpu, cuda, cuda:N, openvino or openvino:GPU|NPU")
    precision = (precision or "f32").strip().lower()
    if precision not in PRECISIONS:
        raise UsageError(f"{option('precision')} {precision!r}: use one of {', '.join(PRECISIONS)}")
    kind = match.group(1)
    if precision != "f32" and kind != "openvino":
        raise UsageError(
            f"{option('precision')} {precision} with {option('device')} {kind}: only the OpenVINO device computes "
            f"in bf16 or f16 ({option('device')} openvino); auto picks a device at f32 only"
        )
    if kind == "openvino":
        return Device(kind, 0, (suffix or "cpu").upper(), precision)
    return Device(kind, int(suffix or 0))


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def plan_providers(device: Device, available: Sequence[str]) -> list:
    """The providers list to give ONNX Runtime, or ModelError when `cuda` cannot be had."""
    cuda_options = {"device_id": device.index, "cudnn_conv_algo_search": "HEURISTIC"}
    if device.kind == "cpu":
        return [CPU]
    if device.kind == "openvino":
        return [OPENVINO, CPU]
    if CUDA in available:
        return [(CUDA, cuda_options), CPU]
    if device.kind == "cuda":
        raise ModelError(
            "«device» cuda: this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); replace it with the GPU build: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    return [CPU]


def check_providers(device: Device, in_use: Sequence[str]) -> None:
    """An explicit CUDA request that ONNX Runtime silently dropped is an error, never a CPU run."""
    if device.kind == "openvino" and OPENVINO not in in_use:
        raise ModelError(f"device {device}: ONNX Runtime did not start the OpenVINO provider")
    if device.kind == "cuda" and CUDA not in in_use:
        raise ModelError(
            "«device» cuda: ONNX Runtime could not start CUDA (driver, CUDA or cuDNN libraries missing?); "
            "use «device» cpu or fix the CUDA install"
        )


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def create_session(
    source: Path | bytes,
    device: Device,
    threads: int | None = None,
    *,
    name: Path,
    optimized: bool = False,
    save_to: Path | None = None,
    spinning: bool = True,
    cache_dir: str | None = None,
):
    """Create an InferenceSession from a file or its bytes; returns (session, providers actually in use).

    `optimized=True`: `source` is a graph ONNX Runtime optimised earlier, loaded as it is
    (no optimisation pass). `save_to`: ONNX Runtime writes the optimised graph there.
    `spinning=False` lets idle model threads sleep, leaving the cores to decoders.
    `name` is the model file that error messages name. `cache_dir`: where OpenVINO keeps compiled blobs.
    """
    import onnxruntime as ort

    quiet_runtime_logs()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or default_threads()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    else:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if save_to is not None:
        options.optimized_model_filepath = os.fspath(save_to)
    if device.kind == "openvino":
        from imgclass.graph import openvino

        options.log_severity_level = 4  # its compile errors come back in the exception, once
        planned = openvino.add_to_session(options, device.target, device.precision, threads, cache_dir)
    else:
        planned = plan_providers(device, available_providers())
    try:
        session = ort.InferenceSession(
            source if isinstance(source, bytes) else os.fspath(source), sess_options=options, providers=planned
        )
    except Exception as err:  # noqa: BLE001 - ORT raises several private exception types
        if device.kind == "openvino":  # OpenVINO's own reason is its last line; the first is a C++ frame
            why = [line.strip() for line in str(err).splitlines() if line.strip()][-1:] or [type(err).__name__]
            raise ModelError(f"{name}: OpenVINO cannot compile this model on {device}: {why[0][:200]}") from None
        first = first_line(err)
        raise ModelError(f"{name}: ONNX Runtime cannot load this model: {first[:200]}") from None
    in_use = session.get_providers()
    check_providers(device, in_use)
    return session, list(in_use)


_quiet = False


def quiet_runtime_logs() -> None:
    """ONNX Runtime's own log lines (warnings, errors it raises anyway) never reach stderr."""
    global _quiet
    if not _quiet:
        import onnxruntime as ort

        ort.set_default_logger_severity(4)
        _quiet = True


class Runner:
    """Runs batches through a session, honouring a fixed batch size."""

    def __init__(self, session, signature: Signature, providers: list[str], device: Device | None = None):
        self.session = session
        self.signature = signature
        self.providers = providers
        self.device = device

    def run(self, batch: np.ndarray) -> np.ndarray:
        fixed = self.signature.batch
        if fixed is None or fixed == len(batch):
            return self._run(batch)
        import numpy as np

        outputs = []
        for start in range(0, len(batch), fixed):
            chunk = batch[start : start + fixed]
            if len(chunk) < fixed:
                pad = np.zeros((fixed - len(chunk),) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            outputs.append(self._run(chunk)[: min(fixed, len(batch) - start)])
        return np.concatenate(outputs)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.signature.output_name], {self.signature.input_name: batch})[0]
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ModelError(
                f"model output {self.signature.output_name!r} has shape {list(out.shape)}, expected [N, classes]"
            )
        return out
