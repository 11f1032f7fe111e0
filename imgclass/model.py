"""Load a classifier: read its graph, choose preprocessing and labels, start a session.

This is the one place that puts signature, preset, labels and runtime together;
it returns a LoadedModel that the pipeline can use without knowing any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclass.errors import ModelError, UsageError
from imgclass.labels import LabelSet, background_offset, choose_labels
from imgclass.modelfile import read_graph
from imgclass.postprocess import Ranker
from imgclass.preprocess import Transform
from imgclass.presets import Overrides, PresetChoice, choose_preset
from imgclass.runtime import Device, Runner, create_session
from imgclass.signature import Signature, inspect


@dataclass(frozen=True)
class ModelSettings:
    preset: str | None = None
    overrides: Overrides = field(default_factory=Overrides)
    labels_file: Path | None = None
    device: Device = field(default_factory=lambda: Device("auto"))
    threads: int | None = None
    optimized_cache: Path | None = None


@dataclass
class LoadedModel:
    name: str  # what records call the model: a catalog name or the file path
    path: Path
    signature: Signature
    preset: PresetChoice
    transform: Transform
    labels: LabelSet
    offset: int
    classes: int
    runner: Runner
    providers: list[str]

    def ranker(self, top: int, threshold: float = 0.0) -> Ranker:
        return Ranker(self.labels.names, self.offset, self.signature.softmax, top, threshold)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "signature": self.signature.describe(),
            "classes": self.classes,
            "background_class": bool(self.offset),
            "preset": self.preset.preset.name,
            "preset_source": self.preset.source,
            "preprocessing": self.preset.preset.to_dict(),
            "input_size": [self.transform.height, self.transform.width],
            "labels": self.labels.source,
            "providers": self.providers,
        }


def inspect_file(path: Path) -> Signature:
    return inspect(read_graph(path), path)


def input_size(signature: Signature, choice: PresetChoice, requested: int | None, path: Path) -> tuple[int, int]:
    fixed = (signature.height, signature.width)
    if requested is not None:
        if requested < 8:
            raise UsageError(f"--size {requested}: too small")
        if all(fixed) and fixed != (requested, requested):
            raise UsageError(f"--size {requested}: {path} has a fixed input of {fixed[0]}x{fixed[1]}")
        return requested, requested
    if all(fixed):
        return fixed  # type: ignore[return-value]
    side = fixed[0] or fixed[1] or choice.preset.default_size
    return side, side


def load_model(path: Path, name: str, settings: ModelSettings, catalog_preset: str | None = None) -> LoadedModel:
    """Load `path`; `catalog_preset` is the catalog's preset for a model pulled by name."""
    signature = inspect_file(path)
    choice = choose_preset(path, signature, settings.preset, catalog_preset)
    height, width = input_size(signature, choice, settings.overrides.size, path)
    preset = settings.overrides.apply(choice.preset, min(height, width))
    if preset is not choice.preset:
        choice = PresetChoice(preset, choice.source + " + overrides")
    transform = Transform(preset, height, width, signature.layout, signature.dtype)
    session, providers = create_session(path, settings.device, settings.threads, settings.optimized_cache)
    runner = Runner(session, signature)
    classes = signature.classes or _probe_classes(runner, transform)
    labels = choose_labels(path, signature.metadata, settings.labels_file, classes)
    offset = background_offset(classes, labels, str(path))
    return LoadedModel(name, path, signature, choice, transform, labels, offset, classes, runner, providers)


def _probe_classes(runner: Runner, transform: Transform) -> int:
    """Dynamic class axis: one run on a blank sample tells how many outputs there are."""
    out = runner.run(np.zeros((1,) + transform.sample_shape, dtype=np.dtype(transform.dtype)))
    if out.shape[1] < 2:
        raise ModelError(f"{runner.signature.output_name}: output has {out.shape[1]} classes; not a classifier")
    return int(out.shape[1])
