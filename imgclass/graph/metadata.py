"""The `imgclass.*` ONNX metadata: every key imgclass reads or writes, and the one writer of them.

A model imgclass writes (`train`, `models quantize`, `models pull --file`) carries what is
needed to use it alone: its preprocessing (`imgclass.preset`, a built-in preset by name, or
`imgclass.preprocess`, a preset record), its labels, how its outputs become probabilities,
and where it came from. Readers: `imgclass.data.presets` (preprocessing),
`imgclass.data.labels` (labels), `imgclass.graph.activation` (activation),
`imgclass.tasks.quantize` (provenance), `imgclass.store.optimized` (the source binding).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PRESET = "imgclass.preset"  # a built-in preset's name
PREPROCESS = "imgclass.preprocess"  # a preset record: {"preset": NAME or {fields}, ...field overrides}
LABELS = "imgclass.labels"  # a JSON list of class names
ACTIVATION = "imgclass.activation"  # softmax, sigmoid, logsoftmax, none
PROVENANCE = "imgclass.provenance"  # JSON: what the model was made from, and how
SOURCE_SHA256 = "imgclass.source_sha256"  # an optimised graph: the sha256 of the bytes it was built from

# What says how to use a model: written together, so a stale value never survives beside a new one.
CARRIED = (PRESET, PREPROCESS, LABELS, ACTIVATION)


def encode(
    preset: str | None = None,
    preprocess: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    activation: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The metadata values for what is given (None: not written)."""
    values: dict[str, str] = {}
    if preset is not None:
        values[PRESET] = preset
    if preprocess is not None:
        values[PREPROCESS] = json.dumps(dict(preprocess), ensure_ascii=False)
    if labels is not None:
        values[LABELS] = json.dumps(list(labels), ensure_ascii=False)
    if activation is not None:
        values[ACTIVATION] = activation
    if provenance is not None:
        values[PROVENANCE] = json.dumps(dict(provenance), ensure_ascii=False)
    return values


def set_props(model, values: Mapping[str, str], drop: Sequence[str] = ()) -> None:
    """Write `values` into a ModelProto's metadata_props, and remove the keys in `drop` (CARRIED: a full carry).

    `imgclass.preset` and `imgclass.preprocess` are one fact: writing either removes the other.
    """
    stale = set(values) | set(drop)
    if stale & {PRESET, PREPROCESS}:
        stale |= {PRESET, PREPROCESS}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in stale]
    del model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def write_file(path: Path, values: Mapping[str, str], drop: Sequence[str] = (), producer: str | None = None) -> None:
    """Rewrite the ONNX file at `path` (imgclass's own output, not yet in place) with `values` set (see set_props)."""
    import onnx

    model = onnx.load(os.fspath(path))
    set_props(model, values, drop)
    if producer is not None:
        model.producer_name, model.producer_version = "imgclass", producer
    onnx.save(model, os.fspath(path))


def provenance_of(metadata: Mapping[str, str]) -> dict | None:
    """The provenance record, or None when there is none or it is not a JSON object."""
    try:
        record = json.loads(metadata.get(PROVENANCE, ""))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
