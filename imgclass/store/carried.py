"""What a model imgclass writes carries from the model it was made from: preprocessing, labels, activation.

`train`, `models quantize` and `models pull --file` write these through the one writer in
`imgclass.graph.metadata`, so their output used alone is preprocessed, labelled and scored as
its source was, whatever the source's preprocessing came from (a flag, a sidecar, metadata).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgclass.data.presets import builtin_presets
from imgclass.graph import metadata

if TYPE_CHECKING:
    from imgclass.store.loader import Plan


def preprocessing(plan: Plan) -> dict[str, str]:
    """The resolved preset: a built-in one unchanged by name, anything else as its fields over the built-in it came from.

    A model with a dynamic input also records the size it was used at (`default_size`).
    """
    preset = plan.preset.preset
    builtin = builtin_presets()
    dynamic = plan.signature.height is None or plan.signature.width is None
    size = min(plan.transform.height, plan.transform.width)
    if builtin.get(preset.name) == preset and not (dynamic and size != preset.default_size):
        return metadata.encode(preset=preset.name)
    fields: dict[str, Any] = preset.to_dict()
    for key in ("name", "description", "source"):
        fields.pop(key)
    if dynamic:
        fields["default_size"] = size
    base = builtin.get(preset.name.split("+")[0])
    record: dict[str, Any] = {"preset": base.name} if base else {}
    if base is not None:
        fields = {k: v for k, v in fields.items() if v != base.to_dict()[k]}
    return metadata.encode(preprocess={**record, **fields})


def labels(plan: Plan) -> dict[str, str]:
    """The labels, unless they are the built-in ImageNet-1k names behind a background class (kept implicit)."""
    return {} if plan.offset or not plan.labels.names else metadata.encode(labels=plan.labels.names)


def activation(plan: Plan) -> dict[str, str]:
    """The activation, when it did not come from the graph's own head (a flag or metadata chose it)."""
    return {} if plan.activation.source.startswith("detected") else metadata.encode(activation=plan.activation.name)


def carried(plan: Plan) -> dict[str, str]:
    """Everything a copy of `plan`'s graph needs to be used alone as `plan` is used."""
    return {**preprocessing(plan), **labels(plan), **activation(plan)}
