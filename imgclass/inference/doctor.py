"""`imgclass models doctor`: which preprocessing a model expects, found by running it on photos with known answers.

imgclass ships a few public-domain photos whose ImageNet-1k class is known (espresso, a
cat, a rocket: `models/doctor.json`). The model runs on each under every built-in preset,
and the evidence is the probability it gives the known class (its accepted classes summed)
per photo and preset. A model preprocessed the way it was trained gives the known answers
high probabilities; a wrong normalisation or channel order gives them almost none.

The verdict keeps the preset the model would use now (its sidecar, metadata, detection or
the default) when that preset is within `TOLERANCE` of the best one: presets that differ
only in resampling give close scores, and three photos cannot tell them apart. Otherwise it
names the best. Only ImageNet-1k classifiers (1000 classes, or 1001 with a background) can be
checked this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgclass.errors import ModelError

if TYPE_CHECKING:
    from imgclass.store.loader import LoadedModel

TOLERANCE = 0.05  # mean probability of the known classes: the preset in use is kept within this of the best
WEAK = 0.2  # a best mean below this: no preset gives the known answers (not an ImageNet-1k model, or damaged)


@dataclass(frozen=True)
class PresetEvidence:
    preset: str
    probabilities: dict[str, float]  # photo -> probability of its known class(es)
    mean: float

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "mean": round(self.mean, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}  # fmt: skip


@dataclass
class Diagnosis:
    model: str
    current: str  # the preset the model uses without options
    current_source: str
    evidence: list[PresetEvidence] = field(default_factory=list)  # best first
    recommended: str = ""
    confident: bool = False
    reason: str = ""

    @property
    def best(self) -> PresetEvidence:
        return self.evidence[0]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "current": self.current, "current_source": self.current_source,
                "recommended": self.recommended, "confident": self.confident, "reason": self.reason,
                "evidence": [e.to_dict() for e in self.evidence]}  # fmt: skip


def doctor_photos() -> list[tuple[str, Any, list[int]]]:
    """(name, decoded RGB image, accepted ImageNet-1k class indices) of each shipped photo."""
    from imgclass._util.resources import data_dir, load_json
    from imgclass.data.images import DecodeOptions, load_rgb

    photos = []
    for entry in load_json("doctor.json")["photos"]:
        image = load_rgb(data_dir() / entry["file"], DecodeOptions())
        name = entry["file"].removeprefix("doctor-").rsplit(".", 1)[0]
        photos.append((name, image, sorted(int(k) for k in entry["classes"])))
    return photos


def diagnose(model: LoadedModel) -> Diagnosis:
    """Run `model` on the shipped photos under every built-in preset; ModelError for a non-ImageNet model."""
    from imgclass.data.presets import builtin_presets

    if model.classes is None or model.classes - model.offset != 1000:
        raise ModelError(f"{model.name}: has {model.classes} classes; the doctor's photos have ImageNet-1k answers, "
                         "so it checks ImageNet-1k classifiers (1000 classes, or 1001 with a background class)")  # fmt: skip
    photos = doctor_photos()
    presets = builtin_presets()
    candidates = [*presets.values()] + ([] if model.preset.preset.name in presets else [model.preset.preset])
    evidence = [_evidence(model, preset, photos) for preset in candidates]
    evidence.sort(key=lambda e: (-e.mean, e.preset != model.preset.preset.name))
    diagnosis = Diagnosis(model.name, model.preset.preset.name, model.preset.source, evidence)
    _verdict(diagnosis)
    return diagnosis


def _evidence(model, preset, photos) -> PresetEvidence:
    import numpy as np

    from imgclass.data.transforms import Transform

    transform = Transform(preset, model.transform.height, model.transform.width, model.signature.layout,
                          model.signature.dtype)  # fmt: skip
    found: dict[str, float] = {}
    for name, image, classes in photos:
        outputs = model.runner.run(transform(image)[None])
        probs = model.activation.probabilities(outputs)[0, model.offset :]
        value = float(np.sum(probs[classes]))
        found[name] = value if math.isfinite(value) else 0.0
    return PresetEvidence(preset.name, found, sum(found.values()) / len(found))


def _verdict(d: Diagnosis) -> None:
    best = d.best
    current = next((e for e in d.evidence if e.preset == d.current), None)
    if best.mean < WEAK:
        d.recommended, d.confident = best.preset, False
        d.reason = (f"no preset gives the known answers (best: {best.preset}, mean {best.mean:.2f}); the model may "
                    "not be an ImageNet-1k classifier, or may need options no preset has")  # fmt: skip
    elif current is not None and current.mean >= best.mean - TOLERANCE:
        d.recommended, d.confident = current.preset, True
        d.reason = (f"the preset in use ({current.preset}, {d.current_source}) gives the known answers "
                    f"(mean {current.mean:.2f}; best {best.preset} {best.mean:.2f})")  # fmt: skip
    else:
        d.recommended, d.confident = best.preset, True
        shown = f"{current.mean:.2f}" if current is not None else "n/a"
        d.reason = (f"{best.preset} gives the known answers (mean {best.mean:.2f}); the preset in use "
                    f"({d.current}, {d.current_source}) gives {shown}")  # fmt: skip
