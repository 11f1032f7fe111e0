"""From images to probabilities: one model or an ensemble, one view of each image or several (TTA).

A `Scorer` turns a decoded image into the samples its models need (`prepare`,
on the decode threads) and a list of prepared images into one row of
probabilities each (`probabilities`, on the model's thread):

- test-time augmentation (`tta`): every image gives V views (the centre crop and
  its mirror image, or the standard five or ten crops); they go through the
  model in one run of V x the batch, and their probabilities are averaged;
- ensembles: each model preprocesses with its own preset and runs on its own;
  their probabilities (background class left out) are averaged, optionally
  weighted. A single model with one view is the plain classifier, bit for bit.

Ten-crop is AlexNet's evaluation (and torchvision's TenCrop): the four corner
crops and the centre crop of the resized image, at the model's input size, and
the mirror image of each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclass.data.transforms import Transform, crop_offsets
from imgclass.data.tta import VIEWS, check_tta
from imgclass.data.video import at_frame
from imgclass.errors import ModelError, UsageError
from imgclass.records import Record

if TYPE_CHECKING:
    from PIL import Image

    from imgclass.graph.ranking import Ranker
    from imgclass.store.loader import LoadedModel


def mirror(sample: np.ndarray, layout: str) -> np.ndarray:
    """The left-right mirror image of one sample (CHW or HWC)."""
    return np.ascontiguousarray(sample[:, :, ::-1] if layout == "NCHW" else sample[:, ::-1])


def five_crops(transform: Transform, img: Image.Image) -> list[np.ndarray]:
    """Top-left, top-right, bottom-left, bottom-right and centre crops of the resized image (pixels)."""
    arr = transform.resized(img)
    height, width = transform.height, transform.width
    h, w = arr.shape[:2]
    if h < height or w < width:  # a crop larger than the image: pad it as the centre crop does
        pad_h, pad_w = max(height - h, 0), max(width - w, 0)
        arr = np.pad(arr, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        h, w = arr.shape[:2]
    top, left = crop_offsets(h, w, height, width, transform.preset.crop_offset)
    corners = [(0, 0), (0, w - width), (h - height, 0), (h - height, w - width), (top, left)]
    return [arr[y : y + height, x : x + width] for y, x in corners]


def views(transform: Transform, img: Image.Image, tta: str = "none") -> np.ndarray:
    """The V samples of one image for `tta`, stacked: (V, *sample_shape)."""
    if tta == "none":
        return transform(img)[None]
    if tta == "flip":
        sample = transform(img)
        return np.stack([sample, mirror(sample, transform.layout)])
    samples = [transform.finish(crop) for crop in five_crops(transform, img)]
    if tta == "ten-crop":
        samples += [mirror(sample, transform.layout) for sample in samples]
    return np.stack(samples)


def check_members(models: Sequence[LoadedModel], weights: Sequence[float] | None) -> list[float]:
    """An ensemble's models must agree on their classes and on what their scores mean; returns the weights."""
    if not models:
        raise UsageError("an ensemble needs at least one model")
    if weights is None:
        weights = [1.0] * len(models)
    if len(weights) != len(models):
        raise UsageError(f"«weights»: {len(weights)} weight(s) for {len(models)} models; give one per «model»")
    if any(not np.isfinite(w) or w < 0 for w in weights) or max(weights) <= 0:
        raise UsageError("«weights» must be finite, not negative, and not all zero")
    first = models[0]
    for other in models[1:]:
        if other.multi_label != first.multi_label:
            kinds = {m.name: "multi-label (sigmoid)" if m.multi_label else "single-label" for m in (first, other)}
            raise ModelError(
                f"cannot average {first.name} ({kinds[first.name]}) with {other.name} ({kinds[other.name]}): "
                "an ensemble's models must all be single-label or all multi-label"
            )
        if tuple(other.labels.names) != tuple(first.labels.names):
            raise ModelError(f"{other.name} and {first.name} have different label sets {_difference(first, other)}; "
                             "an ensemble's models must name the same classes in the same order")  # fmt: skip
    return [float(w) for w in weights]


def normalise_weights(raw: Sequence[float]) -> list[float]:
    """Weights that sum to one, scaled by the largest first: 1e308,1e308 is 0.5,0.5 (their sum overflowed to inf)."""
    top = max(raw)
    scaled = [w / top for w in raw]
    total = math.fsum(scaled)
    return [w / total for w in scaled]


def _difference(a: LoadedModel, b: LoadedModel) -> str:
    left, right = a.labels.names, b.labels.names
    if len(left) != len(right):
        return f"({len(left)} and {len(right)} classes)"
    i = next(i for i, (x, y) in enumerate(zip(left, right, strict=True)) if x != y)
    return f"(class {i}: {left[i]!r} and {right[i]!r})"


class Scorer:
    """Prepares images for, and averages the probabilities of, one model or several, over V views each."""

    def __init__(self, models: Sequence[LoadedModel], weights: Sequence[float] | None = None, tta: str = "none"):
        self.models = list(models)
        self.tta = check_tta(tta)
        self.weights = normalise_weights(check_members(self.models, weights))

    @property
    def name(self) -> str:
        """What records call the model: the members' names joined by '+'."""
        return "+".join(m.name for m in self.models)

    @property
    def preset(self) -> str:
        return "+".join(m.preset.preset.name for m in self.models)

    @property
    def multi_label(self) -> bool:
        return self.models[0].multi_label

    @property
    def views(self) -> int:
        return VIEWS[self.tta]

    @property
    def plain(self) -> bool:
        """One model, one view: the classifier's own path does the same, and is what runs."""
        return len(self.models) == 1 and self.tta == "none"

    def wait(self) -> None:
        """Wait for every model's session; raises the error of one that cannot load."""
        for model in self.models:
            model.runner  # noqa: B018

    def prepare(self, img: Image.Image) -> list[np.ndarray]:
        """One image's samples: for each model, its V views (decode threads call this)."""
        return [views(model.transform, img, self.tta) for model in self.models]

    def probabilities(self, prepared: Sequence[list[np.ndarray]]) -> np.ndarray:
        """(images, classes) probabilities, background class left out, for images from `prepare`."""
        n, v = len(prepared), self.views
        total: np.ndarray | None = None
        for i, (model, weight) in enumerate(zip(self.models, self.weights, strict=True)):
            batch = np.concatenate([item[i] for item in prepared]) if n > 1 else prepared[0][i]
            probs = model.activation.probabilities(model.runner.run(batch))[:, model.offset :]
            if v > 1:
                probs = probs.reshape(n, v, -1).mean(axis=1)
            part = probs if weight == 1.0 else probs * weight
            total = part if total is None else total + part
        assert total is not None
        return total


class Scored:
    """The batch pipeline's outputs for a Scorer: prepared views, stacked per model, ranked into Records.

    `prepare` and `stack` replace the model's transform and the stacking of samples
    (see `imgclass.inference.pipeline.Outputs`); `run` gives ranked predictions per image, or
    NON_FINITE for an image whose averaged probabilities are not finite.
    """

    def __init__(self, scorer: Scorer, ranker: Ranker):
        self.scorer, self.ranker = scorer, ranker

    def ready(self) -> None:
        self.scorer.wait()

    def prepare(self, img: Image.Image) -> list[np.ndarray]:
        return self.scorer.prepare(img)

    @staticmethod
    def stack(samples: Sequence[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return list(samples)

    def run(self, batch: Any) -> list[Any]:
        from imgclass.inference.pipeline import NON_FINITE

        probs = self.scorer.probabilities(batch)
        finite = np.isfinite(probs).all(axis=1)
        if finite.all():
            return list(self.ranker.rank_probabilities(probs))
        ranked: list[Any] = [NON_FINITE] * len(probs)
        rows = np.flatnonzero(finite)
        if len(rows):
            for row, predictions in zip(rows, self.ranker.rank_probabilities(probs[rows]), strict=True):
                ranked[row] = predictions
        return ranked

    def record(self, item: Any, path: str, result: Any, error: str | None, raw: str | None = None) -> Record:
        s = self.scorer
        tta = None if s.tta == "none" else s.tta
        abstained = getattr(result, "abstained", None) if error is None else None
        record = Record(path, s.name, s.preset, list(result or []), error, s.multi_label, raw, tta, abstained)
        return at_frame(record, item)
