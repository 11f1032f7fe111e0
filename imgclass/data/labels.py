"""Label sets: built-in ImageNet-1k, a user's file, ONNX metadata, Hugging Face id2label.

A 1001-class export has a background class at index 0: it is left out of the
ranking and every index is shifted so that indices are ImageNet-1k indices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclass._util.resources import load_json
from imgclass.errors import ConfigError, ModelError, UsageError
from imgclass.graph import metadata as props

METADATA_KEYS = (props.LABELS, "labels", "id2label", "classes")


@dataclass(frozen=True)
class LabelSet:
    names: tuple[str, ...]
    source: str  # "imagenet-1k", a file path, "metadata", ...
    kind: str = "builtin"  # builtin, flag (--labels), metadata, sidecar, numbers

    def __len__(self) -> int:
        return len(self.names)


def imagenet() -> LabelSet:
    return LabelSet(tuple(load_json("imagenet1k_labels.json")["names"]), "imagenet-1k")


def parse_labels(data: Any, origin: str) -> tuple[str, ...]:
    """A list of names, or a mapping index -> name (id2label), as a tuple in index order."""
    if isinstance(data, Mapping):
        if "id2label" in data:
            data = data["id2label"]
        try:
            indexed = {int(k): str(v) for k, v in data.items()}
        except (TypeError, ValueError):
            raise UsageError(f"{origin}: label mapping keys must be class indices") from None
        if sorted(indexed) != list(range(len(indexed))):
            raise UsageError(f"{origin}: label indices must run 0..{len(indexed) - 1} without gaps")
        return tuple(indexed[i] for i in range(len(indexed)))
    if isinstance(data, Sequence) and not isinstance(data, str):
        return tuple(str(v) for v in data)
    raise UsageError(f"{origin}: labels must be a JSON list or an index -> name mapping")


def read_labels_file(path: Path) -> LabelSet:
    """One label per line, or JSON (a list, or a mapping such as id2label)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{path}: cannot read labels file: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: labels file is not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            names = parse_labels(json.loads(text), str(path))
        except ValueError as err:
            raise UsageError(f"{path}: labels file is not valid JSON: {err}") from None
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise UsageError(f"{path}: labels file has no labels")
    return LabelSet(names, str(path), "flag")


def labels_from_metadata(metadata: Mapping[str, str]) -> LabelSet | None:
    for key in METADATA_KEYS:
        if key in metadata:
            try:
                data = json.loads(metadata[key])
            except ValueError:
                names = tuple(n.strip() for n in metadata[key].replace(",", "\n").splitlines() if n.strip())
                return LabelSet(names, f"metadata {key}", "metadata")
            try:
                return LabelSet(parse_labels(data, f"metadata {key}"), f"metadata {key}", "metadata")
            except UsageError as err:
                raise ConfigError(str(err)) from None
    return None


def labels_from_hf_config(model_path: Path) -> LabelSet | None:
    config = model_path.parent / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, Mapping) and isinstance(data.get("id2label"), Mapping):
        try:
            return LabelSet(parse_labels(data["id2label"], str(config)), str(config), "sidecar")
        except UsageError as err:
            raise ConfigError(str(err)) from None
    return None


def choose_labels(
    model_path: Path, metadata: Mapping[str, str], labels_file: Path | None, classes: int | None
) -> LabelSet:
    """--labels wins, then ONNX metadata, then config.json id2label, then ImageNet-1k."""
    if labels_file is not None:
        return read_labels_file(labels_file)
    found = labels_from_metadata(metadata) or labels_from_hf_config(model_path)
    if found is not None:
        return found
    if classes in (None, 1000, 1001):
        return imagenet()
    return LabelSet(tuple(f"class {i}" for i in range(classes)), "none (class numbers)", "numbers")


def background_offset(classes: int, labels: LabelSet, origin: str) -> int:
    """0 when labels match the outputs, 1 when the model adds a background class at index 0.

    A label set one short is taken as "background at 0" only for the built-in
    ImageNet-1k names on a 1001-class model; a user's file one line short would
    otherwise shift every label by one, so it is refused like any other mismatch.
    """
    offset = classes - len(labels)
    if offset == 0 or (offset == 1 and labels.kind == "builtin"):
        return offset
    where = f"{len(labels)} labels in {labels.source}"
    if labels.kind == "flag":
        raise UsageError(f"«labels» {labels.source}: has {len(labels)} labels but the model has {classes} outputs")
    if labels.kind in ("metadata", "sidecar"):
        raise ConfigError(f"{origin}: {where}, but the model has {classes} outputs; fix them or pass «labels» FILE")
    raise ModelError(f"{origin}: the model has {classes} outputs, not {where}; pass «labels» FILE with {classes} names")
