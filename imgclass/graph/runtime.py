"""ONNX Runtime sessions: execution providers, threads, and running batches."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclass._util.text import first_line
from imgclass.errors import ModelError, UsageError
from imgclass.graph.signature import Signature

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    kind: str  # auto, cpu, cuda
    index: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind != "cuda" or self.index == 0 else f"cuda:{self.index}"


def parse_device(text: str | None) -> Device:
    match = _DEVICE.match((text or "auto").strip().lower())
    if not match or (match.group(2) and match.group(1) != "cuda"):
        raise UsageError(f"--device {text!r}: use auto, cpu, cuda or cuda:N")
    return Device(match.group(1), int(match.group(2) or 0))


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def plan_providers(device: Device, available: Sequence[str]) -> list:
    """The providers list to give ONNX Runtime, or ModelError when `cuda` cannot be had."""
    cuda_options = {"device_id": device.index, "cudnn_conv_algo_search": "HEURISTIC"}
    if device.kind == "cpu":
        return [CPU]
    if CUDA in available:
        return [(CUDA, cuda_options), CPU]
    if device.kind == "cuda":
        raise ModelError(
            "--device cuda: this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); replace it with the GPU build: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    return [CPU]


def check_providers(device: Device, in_use: Sequence[str]) -> None:
    """An explicit CUDA request that ONNX Runtime silently dropped is an error, never a CPU run."""
    if device.kind == "cuda" and CUDA not in in_use:
        raise ModelError(
            "--device cuda: ONNX Runtime could not start CUDA (driver, CUDA or cuDNN libraries missing?); "
            "use --device cpu or fix the CUDA install"
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
):
    """Create an InferenceSession from a file or its bytes; returns (session, providers actually in use).

    `optimized=True`: `source` is a graph ONNX Runtime optimised earlier, loaded as it is
    (no optimisation pass). `save_to`: ONNX Runtime writes the optimised graph there.
    `spinning=False` lets idle model threads sleep, leaving the cores to decoders.
    `name` is the model file that error messages name.
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
    planned = plan_providers(device, available_providers())
    try:
        session = ort.InferenceSession(
            source if isinstance(source, bytes) else os.fspath(source), sess_options=options, providers=planned
        )
    except Exception as err:  # noqa: BLE001 - ORT raises several private exception types
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

    def __init__(self, session, signature: Signature, providers: list[str]):
        self.session = session
        self.signature = signature
        self.providers = providers

    def run(self, batch: np.ndarray) -> np.ndarray:
        fixed = self.signature.batch
        if fixed is None or fixed == len(batch):
            return self._run(batch)
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
