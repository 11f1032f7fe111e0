"""Bottleneck features for training: augmented views of images, and a cache that spares the backbone.

A training image is read as 1 + K views: view 0 is the image as it is; views 1..K are
random-resized crops (a random 35-100 % of the area, aspect ratio 3/4-4/3) flipped
left-right half the time, taken from the decoded image before the model's own
preprocessing. Each view's randomness is seeded by (seed, the file's content, the
view number), so a view is the same whatever the order, the number of views or the
machine, and a larger --augment reuses the views a smaller one computed.

The cache keeps one vector per view under `<IMGCLASS_HOME>/features/`, keyed by the
model's sha256, its bottleneck tensor, the preset record and input size, the decode
mode, the view's recipe and the file's sha256: a second `train` with other settings
(another C grid, another validation split) reads vectors instead of running the backbone.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclass._util.fs import atomic_write
from imgclass.data.images import display_path

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from imgclass.classifier import Classifier

CACHE_VERSION = 1
SCALE = (0.35, 1.0)  # fraction of the image's area a random crop keeps
RATIO = (3 / 4, 4 / 3)  # its aspect ratio
FLIP = 0.5  # probability of a left-right flip
RECIPE = f"random-resized-crop(scale={SCALE[0]:g}-{SCALE[1]:g},ratio={RATIO[0]:.4g}-{RATIO[1]:.4g})+hflip({FLIP:g})"


def features_dir() -> Path:
    from imgclass.store.cache import home

    return home() / "features"


@dataclass(frozen=True)
class View:
    """One view of a training image: 0 is the image as it is, 1..K augmented (see the module doc)."""

    path: str
    digest: str  # sha256 of the file's bytes
    index: int = 0
    seed: int = 0

    @property
    def recipe(self) -> str:
        return "plain" if self.index == 0 else f"{RECIPE}/seed={self.seed}/view={self.index}"

    def view(self, image: Image.Image) -> Image.Image:
        """The decoded image as this view sees it (called by the pipeline before the model's transform)."""
        if self.index == 0:
            return image
        import numpy as np

        rng = np.random.default_rng([self.seed, int(self.digest[:16], 16), self.index])
        return augment(image, rng)


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random-resized crop (torchvision's sampling: 10 tries, then the whole image), flipped half the time."""
    from PIL import Image

    from imgclass.data.images import DRAFT_INFO

    draft = image.info.get(DRAFT_INFO)
    if draft:  # a reduced-scale decode: crop from the part that is the whole image (train decodes crops in full)
        image = image.crop(tuple(round(v) for v in draft[2]))
    width, height = image.size
    area = width * height
    box = (0, 0, width, height)
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            box = (x, y, x + w, y + h)
            break
    crop = image.crop(box)
    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < FLIP else crop
    crop.info = {k: v for k, v in crop.info.items() if k != DRAFT_INFO}  # the crop is an image of its own
    return crop


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class FeatureCache:
    """Vectors by (model, preprocessing, view, file content); `folder=None` keeps nothing. Never fails a run."""

    def __init__(self, folder: Path | None, context: dict[str, Any]):
        self.folder = folder
        self.context = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def _path(self, view: View) -> Path | None:
        if self.folder is None:
            return None
        key = hashlib.sha256(f"{self.context}\n{view.digest}\n{view.recipe}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, view: View, dim: int) -> np.ndarray | None:
        import numpy as np

        path = self._path(view)
        vector = None
        if path is not None and path.is_file():
            try:
                loaded = np.load(path, allow_pickle=False)
                vector = loaded if loaded.shape == (dim,) and loaded.dtype == np.float32 else None
            except (OSError, ValueError):
                vector = None  # damaged: computed again and rewritten
        with self._lock:
            if vector is None:
                self.misses += 1
            else:
                self.hits += 1
        return vector

    def put(self, view: View, vector: np.ndarray) -> None:
        import numpy as np

        path = self._path(view)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, fsync=False) as handle:
                np.save(handle, np.ascontiguousarray(vector, np.float32), allow_pickle=False)
        except OSError:
            pass  # a full or read-only cache: the next run computes the vector again


def cache_context(classifier: Classifier) -> dict[str, Any]:
    """What a cached vector depends on besides the file and the view."""
    from imgclass.store.index import sha256_of

    model = classifier.model
    transform = model.transform
    return {
        "version": CACHE_VERSION,
        "model": sha256_of(model.path),
        "bottleneck": classifier.bottleneck.head.pooled.name,
        "preset": model.preset.preset.to_dict(),
        "input": [transform.height, transform.width, transform.layout, transform.dtype],
        "decode": [classifier.decode.draft_min_short_side, classifier.decode.allow_truncated],
    }


@dataclass
class FeatureSet:
    """Vectors by view, and the images that could not be read (path -> reason)."""

    vectors: dict[View, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    hits: int = 0
    computed: int = 0  # views that went through the backbone
    stopped: bool = False


@dataclass(frozen=True)
class FeatureOptions:
    batch_size: int | None = None
    workers: int | None = None
    debug: bool = False


def compute(
    classifier: Classifier,
    views: Iterable[View],
    cache: FeatureCache,
    options: FeatureOptions = FeatureOptions(),
    on_view: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> FeatureSet:
    """The vector of every view: from the cache when it has it, else through the backbone (and into the cache)."""
    dim = classifier.bottleneck.dim
    result = FeatureSet()
    missing = []
    for view in views:
        vector = cache.get(view, dim)
        if vector is None:
            missing.append(view)
            continue
        result.vectors[view] = vector
        if on_view is not None:
            on_view()
    if not missing:  # everything cached: the backbone does not run (its session does not even start)
        result.hits = cache.hits
        return result
    # Crops are taken from the full-resolution decode: a reduced-scale (draft) JPEG decode is sized
    # for the whole image, and a crop of it would be upscaled.
    full = replace(classifier.decode, draft_min_short_side=None)
    for views_, decode in (([v for v in missing if v.index == 0], None), ([v for v in missing if v.index], full)):
        if not views_ or (stop is not None and stop.is_set()):
            continue
        embeddings: Iterable[Any] = classifier.embed(views_, expand_inputs=False, stop=stop, decode=decode,
                                                     batch_size=options.batch_size, workers=options.workers,
                                                     debug=options.debug)  # fmt: skip
        for item in embeddings:
            if item.error is not None:
                result.failed.setdefault(display_path(item.item.path), item.error)
            else:
                result.vectors[item.item] = item.vector
                cache.put(item.item, item.vector)
                result.computed += 1
            if on_view is not None:
                on_view()
    result.hits = cache.hits
    result.stopped = bool(stop is not None and stop.is_set())
    return result
