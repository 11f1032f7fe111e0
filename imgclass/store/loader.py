"""Load a classifier: read its graph, choose preprocessing and labels, start a session.

This is the one place that puts signature, preset, labels and runtime together;
it returns a LoadedModel that the pipeline can use without knowing any of them.
The ONNX Runtime session may be created on a background thread, so that images
are already being decoded while the graph is optimised.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from imgclass.data.labels import LabelSet, background_offset, choose_labels
from imgclass.data.presets import Overrides, PresetChoice, choose_preset
from imgclass.data.transforms import MAX_RESIZED_PIXELS, MAX_RESIZED_SIDE, Transform
from imgclass.errors import ConfigError, ModelError, UsageError, option
from imgclass.graph.activation import Activation, choose_activation
from imgclass.graph.ranking import Grouping, Ranker
from imgclass.graph.runtime import Device, Runner, create_session
from imgclass.graph.signature import Signature
from imgclass.store import index as modelindex
from imgclass.store.optimized import open_session, resolve_auto


@dataclass(frozen=True)
class ModelSettings:
    preset: str | None = None
    overrides: Overrides = field(default_factory=Overrides)
    labels_file: Path | None = None
    device: Device = field(default_factory=lambda: Device("auto"))
    threads: int | None = None
    optimized_dir: Path | None = None  # where to keep ONNX Runtime's optimised graphs
    background_session: bool = False
    spinning: bool = True  # ORT threads spin between ops; off when decode threads share the cores
    activation: str | None = None  # --activation; None: metadata, then the graph's head


@dataclass
class Plan:
    """Everything decided about a model before a session exists: what `-v` and `models info` show."""

    name: str  # what records call the model: a catalog name or the file path
    path: Path
    signature: Signature
    preset: PresetChoice
    transform: Transform
    labels: LabelSet
    offset: int  # 1: output 0 is a background class
    classes: int | None  # None: dynamic, known after one run
    activation: Activation  # how outputs become probabilities; .multi_label for independent scores

    @property
    def multi_label(self) -> bool:
        return self.activation.multi_label

    @property
    def preset_evidence(self) -> bool:
        """False when nothing said how to preprocess for this model (no option, sidecar, metadata or
        detection rule): it runs on the default preset, and its answers may be quietly worse."""
        return not self.preset.source.startswith("default")

    @property
    def warnings(self) -> list[str]:
        if self.preset.source.startswith("doctor"):
            return [f"{self.name}: nothing says how to preprocess images for this model; the doctor's photos chose "
                    f"the preset {self.preset.preset.name!r}: {self.preset.source.removeprefix('doctor (')[:-1]}"]  # fmt: skip
        if self.preset_evidence:
            return []
        return [f"{self.name}: nothing says how to preprocess images for this model (no sidecar, no imgclass "
                f"metadata, nothing recognisable in the graph): using the default preset "
                f"{self.preset.preset.name!r}"]  # fmt: skip

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "signature": self.signature.describe(),
            "classes": self.classes,
            "background_class": bool(self.offset),
            "preset": self.preset.preset.name,
            "preset_source": self.preset.source,
            "preset_evidence": self.preset_evidence,
            "preprocessing": self.preset.preset.to_dict(),
            "input_size": [self.transform.height, self.transform.width],
            "labels": self.labels.source,
            "activation": self.activation.name,
            "activation_source": self.activation.source,
            "activation_applied": self.activation.applied,
            "multi_label": self.activation.multi_label,
        }


@dataclass
class LoadedModel(Plan):
    """A Plan with its ONNX Runtime session (possibly still starting on a background thread)."""

    _session: Future = field(default_factory=Future, repr=False)
    _runner: Runner | None = field(default=None, repr=False)

    @property
    def runner(self) -> Runner:
        """The session's runner; waits for a background session and re-raises its error."""
        if self._runner is None:
            session, providers, device = self._session.result()
            self._runner = Runner(session, self.signature, providers, device)
        return self._runner

    def wait_ready(self, timeout: float) -> bool:
        """Whether the session is ready (or failed) within `timeout` seconds; never raises."""
        if self._runner is not None:
            return True
        try:
            self._session.exception(timeout=timeout)
        except (TimeoutError, FutureTimeout):
            return False
        return True

    @property
    def providers(self) -> list[str]:
        return self.runner.providers

    @property
    def device(self) -> Device:
        """The device the session runs on (what `auto` resolved to) and its precision."""
        return self.runner.device or Device("auto")

    def ranker(self, top: int, threshold: float | None = None, grouping: Grouping | None = None,
               abstain_below: float | None = None) -> Ranker:  # fmt: skip
        """Top-k ranking; threshold None: the model's default (0.5 for multi-label scores, else 0).

        `grouping`: rank its groups instead of classes; `abstain_below`: each row's abstain verdict.
        """
        if threshold is None:
            threshold = self.activation.default_threshold
        return Ranker(self.labels.names, self.offset, self.activation, top, threshold, grouping, abstain_below)

    def describe(self) -> dict:
        return {**super().describe(), "providers": self.providers, "device": str(self.device),
                "compute_precision": self.device.precision}  # fmt: skip


def inspect_file(path: Path) -> Signature:
    return modelindex.signature_of(path)


def input_size(signature: Signature, choice: PresetChoice, requested: int | None, path: Path) -> tuple[int, int]:
    fixed = (signature.height, signature.width)
    sides = [side for side in fixed if side]
    if any(side > MAX_RESIZED_SIDE for side in sides) or (len(sides) == 2 and sides[0] * sides[1] > MAX_RESIZED_PIXELS):
        raise ModelError(
            f"{path}: declares an input of {fixed[1]}x{fixed[0]}, over the limit of {MAX_RESIZED_PIXELS} pixels"
        )
    if requested is not None:
        if requested < 8:
            raise UsageError(f"«size» {requested}: too small")
        if requested * requested > MAX_RESIZED_PIXELS:
            raise UsageError(f"{option('size')} {requested}: over the limit of {MAX_RESIZED_PIXELS} input pixels")
        if all(fixed) and fixed != (requested, requested):
            raise UsageError(f"«size» {requested}: {path} has a fixed input of {fixed[0]}x{fixed[1]}")
        return requested, requested
    if all(fixed):
        return fixed  # type: ignore[return-value]
    side = fixed[0] or fixed[1] or choice.preset.default_size
    return side, side


def make_plan(path: Path, name: str, settings: ModelSettings, catalog_preset: str | None = None) -> Plan:
    """Resolve preset, input size, transform and labels for `path`: one rule for load, -v and info."""
    signature = inspect_file(path)
    choice = choose_preset(path, signature, settings.preset, catalog_preset)
    height, width = input_size(signature, choice, settings.overrides.size, path)
    chosen = Transform(choice.preset, height, width, signature.layout, signature.dtype)
    preset = settings.overrides.apply(choice.preset, min(height, width))
    transform = chosen if preset is choice.preset else Transform(preset, height, width, chosen.layout, chosen.dtype)
    _check_bounds(transform, chosen, choice, path)
    if preset is not choice.preset:
        choice = PresetChoice(preset, choice.source + " + overrides")
    activation = choose_activation(signature, settings.activation, str(path))
    plan = Plan(name, path, signature, choice, transform, LabelSet((), ""), 0, signature.classes, activation)
    if signature.classes is not None:
        _bind_labels(plan, settings, signature.classes)
    return plan


def _check_bounds(transform: Transform, chosen: Transform, choice: PresetChoice, path: Path) -> None:
    """Before any image: the model's own preprocessing over the bounds is a model error (exit 3),
    options that take it over them a usage error (exit 2)."""
    try:
        transform.check_bounds(UsageError)
    except UsageError as err:
        try:
            chosen.check_bounds(ConfigError)
        except ConfigError:
            if choice.source != "flag":
                raise ConfigError(f"{path} ({choice.source}): {err}") from None
        raise UsageError(f"the preprocessing options: {err}") from None


def _bind_labels(plan: Plan, settings: ModelSettings, classes: int) -> None:
    plan.classes = classes
    plan.labels = choose_labels(plan.path, plan.signature.metadata, settings.labels_file, classes)
    plan.offset = background_offset(classes, plan.labels, str(plan.path))
    if classes - plan.offset < 2:
        raise ModelError(f"{plan.path}: the model has {classes} output(s); a classifier needs at least 2 classes")


def load_model(
    path: Path, name: str, settings: ModelSettings, catalog_preset: str | None = None, sha256: str | None = None
) -> LoadedModel:
    """Load `path`; `catalog_preset` and `sha256` (the bytes it must hold) come from the catalog or registry."""
    plan = make_plan(path, name, settings, catalog_preset)
    cache_graph = settings.optimized_dir is not None and not modelindex.has_external_data(path)

    def start():
        if not cache_graph:
            device = settings.device
            return (*create_session(path, device, settings.threads, name=path, spinning=settings.spinning), device)
        digest = modelindex.sha256_of(path)
        if sha256 is not None and digest != sha256.lower():
            raise ModelError(f"{path}: the model file changed after it was verified; run again")
        assert settings.optimized_dir is not None
        device = resolve_auto(settings.optimized_dir, digest, settings.device)
        return (
            *open_session(path, digest, settings.optimized_dir, device, settings.threads, settings.spinning),
            device,
        )

    session: Future = Future()
    if settings.background_session and plan.classes:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgclass-session")
        session = pool.submit(start)
        pool.shutdown(wait=False)
    else:
        session.set_result(start())
    loaded = LoadedModel(**{f.name: getattr(plan, f.name) for f in fields(Plan)}, _session=session)
    if plan.classes is None:
        _bind_labels(loaded, settings, _probe_classes(loaded.runner, plan.transform))
    return loaded


def _probe_classes(runner: Runner, transform: Transform) -> int:
    """Dynamic class axis: one run on a blank sample tells how many outputs there are."""
    out = runner.run(np.zeros((1,) + transform.sample_shape, dtype=np.dtype(transform.dtype)))
    return int(out.shape[1])
