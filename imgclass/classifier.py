"""The library's front door: `imgclass.load()` and the Classifier every front end uses.

    import imgclass
    clf = imgclass.load("resnet50")            # a catalog name, a pulled name or an ONNX file
    record = clf.predict("cat.jpg", top=3)      # a path, a PIL image or an HWC uint8 array
    for record in clf.classify(["photos/"]):    # the pipelined batch, in input order
        print(record.path, record.predictions[0].label)

Nothing here prints or exits: results are Records, failures are ImgclassError subclasses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclass.data.images import DEFAULT_MAX_PIXELS, DecodeOptions, decode_rgb, display_path, load_rgb, to_rgb
from imgclass.data.presets import Overrides
from imgclass.data.sources import expand, is_url
from imgclass.data.tta import check_tta
from imgclass.data.video import Every, Frame, VideoOptions, expand_frames, parse_every
from imgclass.errors import InputError, UsageError, option
from imgclass.graph.runtime import parse_device
from imgclass.inference.pipeline import (
    Pipeline,
    PipelineOptions,
    Stats,
    default_batch_size,
    default_workers,
    fetch_image,
    rank_finite,
)
from imgclass.inference.scoring import Scored, Scorer
from imgclass.records import Record
from imgclass.store.download import URL_MAX_BYTES, URL_TIMEOUT, UrlPolicy
from imgclass.store.loader import LoadedModel, ModelSettings, load_model

if TYPE_CHECKING:
    import numpy as np

    from imgclass.graph.ranking import Grouping, Ranker
    from imgclass.inference.embedding import Bottleneck
    from imgclass.inference.explain import Explanation
    from imgclass.store.download import Progress

MEMORY_PATH = "<memory>"  # the `path` of a record made from an in-memory image


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model and prepare images for it (the CLI's model options, by name)."""

    preset: str | None = None
    overrides: Overrides = Overrides()
    labels: Path | None = None
    device: str = "auto"
    precision: str = "f32"  # f32, bf16, f16: bf16/f16 only on the OpenVINO device, only where the hardware has it
    threads: int | None = None
    offline: bool | None = None  # None: IMGCLASS_OFFLINE decides
    exact_decode: bool = False
    max_pixels: int | None = None
    allow_truncated: bool = False
    activation: str | None = None  # softmax, sigmoid, logsoftmax, none; None/"auto": metadata, then the graph
    tta: str = "none"  # test-time augmentation: none, flip, five-crop, ten-crop (probabilities averaged over the views)
    url_timeout: float = URL_TIMEOUT  # seconds to fetch an image named by an http(s) URL (connect and body)
    url_max_bytes: int = URL_MAX_BYTES  # largest image body fetched from a URL


def load(
    model: str | os.PathLike | None = None,
    *,
    options: LoadOptions | None = None,
    download_progress: Progress | None = None,
    background: bool = False,
    **option_values: Any,
) -> Classifier:
    """Resolve `model` (default: IMGCLASS_MODEL or the catalog default), fetch it if needed, load it.

    Options are `LoadOptions` fields, as an object or as keywords (`preset="torchvision"`,
    `device="cpu"`, `labels="labels.txt"`, `overrides=Overrides(crop_pct=0.9)`,
    `activation="sigmoid"`, ...).
    `background=True` starts the ONNX Runtime session on a thread, so decoding can
    begin meanwhile (what the CLI's batch does).
    """
    from imgclass.store import catalog
    from imgclass.store import registry as store
    from imgclass.store.cache import optimized_dir

    opts = _options(options, option_values)
    check_tta(opts.tta)
    spec = os.fspath(model) if model is not None else os.environ.get("IMGCLASS_MODEL") or catalog.default_model()
    auto = opts.preset == AUTO_PRESET
    settings = ModelSettings(
        preset=None if auto else opts.preset,
        overrides=opts.overrides,
        labels_file=Path(opts.labels) if opts.labels is not None else None,
        device=parse_device(opts.device, opts.precision),
        threads=opts.threads,
        optimized_dir=optimized_dir(),
        background_session=background,
        spinning=not background,
        activation=opts.activation,
    )
    offline = store.offline_from_env() if opts.offline is None else opts.offline
    resolved = store.resolve(spec, offline=offline, progress=download_progress)
    catalog_preset = resolved.entry.preset if resolved.entry else None
    loaded = load_model(resolved.path, resolved.name, settings, catalog_preset, resolved.sha256)
    if auto and not loaded.preset_evidence:
        loaded = _doctored(loaded, settings, catalog_preset, resolved.sha256)
    return Classifier(loaded, opts)


AUTO_PRESET = "auto"  # preset="auto": when nothing says how to preprocess, what the doctor's photos say


def _doctored(
    loaded: LoadedModel, settings: ModelSettings, catalog_preset: str | None, sha256: str | None
) -> LoadedModel:
    """The model reloaded with the preset `imgclass.inference.doctor` recommends; as it was when the doctor cannot tell."""
    from dataclasses import replace

    from imgclass.data.presets import PresetChoice
    from imgclass.errors import ModelError
    from imgclass.inference.doctor import diagnose

    try:
        diagnosis = diagnose(loaded)
    except ModelError:
        return loaded  # not an ImageNet-1k model: the default stays, and its warning says so
    if not diagnosis.confident:
        return loaded
    again = load_model(
        loaded.path, loaded.name, replace(settings, preset=diagnosis.recommended), catalog_preset, sha256
    )
    again.preset = PresetChoice(again.preset.preset, f"doctor ({diagnosis.reason})")
    return again


def load_ensemble(
    models: Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    *,
    options: LoadOptions | None = None,
    download_progress: Progress | None = None,
    background: bool = False,
    **option_values: Any,
) -> Classifier:
    """Several models as one classifier: their probabilities averaged (weighted by `weights`, default equal).

    Each model is loaded as `load` would (its own preset, unless `preset=` names one for all);
    their label sets must match and they must all be single-label or all multi-label
    (else ModelError). Records name every member: `"model": "a.onnx+b.onnx"`.
    """
    opts = _options(options, option_values)
    if not models:
        raise UsageError("an ensemble needs at least one model")
    loaded = [load(m, options=opts, download_progress=download_progress, background=background).model for m in models]
    return Classifier(loaded[0], opts, members=loaded, weights=weights)


def _options(options: LoadOptions | None, values: dict[str, Any]) -> LoadOptions:
    if options is not None and values:
        raise TypeError("give LoadOptions or keyword options, not both")
    if options is not None:
        return options
    known = set(LoadOptions.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return LoadOptions(**values)


class Classification:
    """The records of one `classify` (or Embeddings of one `embed`) call, in input order; `stats` fills in as they come."""

    def __init__(self, pipeline: Pipeline, paths: Iterable[str]):
        self._pipeline = pipeline
        self._records = pipeline.run(paths)

    @property
    def stats(self) -> Stats:
        return self._pipeline.stats

    def __iter__(self) -> Iterator[Record]:
        return self._records

    def __next__(self) -> Record:
        return next(self._records)


class Classifier:
    """One loaded model: its preprocessing, labels and session, ready to classify."""

    def __init__(self, model: LoadedModel, options: LoadOptions = LoadOptions(),
                 members: Sequence[LoadedModel] | None = None, weights: Sequence[float] | None = None):  # fmt: skip
        """`members`: an ensemble (`model` is its first member, whose labels all share); `weights` theirs."""
        self.model = model
        self.options = options
        self.scorer = Scorer(members or [model], weights, options.tta)
        sides = [m.transform.min_decode_side for m in self.scorer.models]
        self.decode = DecodeOptions(
            max_pixels=options.max_pixels if options.max_pixels is not None else DEFAULT_MAX_PIXELS,
            allow_truncated=options.allow_truncated,
            draft_min_short_side=None if options.exact_decode or None in sides else max(s for s in sides if s),
        )
        self._bottleneck: Bottleneck | None = None

    @property
    def name(self) -> str:
        """The model's name; an ensemble's members' names joined by '+'."""
        return self.scorer.name

    @property
    def preset(self) -> str:
        """The preset's name; an ensemble's members' presets joined by '+'."""
        return self.scorer.preset

    @property
    def members(self) -> list[LoadedModel]:
        """The models whose probabilities are averaged: one, or an ensemble's."""
        return self.scorer.models

    @property
    def tta(self) -> str:
        return self.scorer.tta

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels.names

    @property
    def multi_label(self) -> bool:
        """Independent per-class scores (a sigmoid head): they need not sum to one."""
        return self.scorer.multi_label

    @property
    def warnings(self) -> list[str]:
        """What the caller should hear about this classifier: a model with no preprocessing evidence, ..."""
        return [w for m in self.members for w in m.warnings]

    @property
    def info(self) -> dict[str, Any]:
        """Resolved preset, signature, label source and providers, as JSON-ready plain data.

        An ensemble's is its first member's, with "members" (each one's) and "weights" added.
        """
        info = {**self.model.describe(), "tta": self.tta}
        if len(self.members) > 1:
            info["members"] = [m.describe() for m in self.members]
            info["weights"] = list(self.scorer.weights)
        return info

    def predict(self, image: Any, top: int = 5, threshold: float | None = None, *, groups: Any = None,
                abstain_below: float | None = None) -> Record:  # fmt: skip
        """Classify one image: a path or http(s) URL, a PIL image or an HWC uint8 RGB array. Raises InputError.

        `threshold` None: the model's default, 0.5 for multi-label scores and 0 otherwise.
        `groups` and `abstain_below`: see `classify`.
        """
        ranker = self.ranker(top, threshold, groups, abstain_below)
        path, img = self._open(image)
        if self.scorer.plain:
            sample = self.model.transform(img)
            outputs = self.model.runner.run(sample[None])
            ranked = rank_finite(ranker, outputs)[0]
        else:  # an ensemble and/or test-time augmentation
            scored = Scored(self.scorer, ranker)
            ranked = scored.run(scored.stack([self.scorer.prepare(img)]))[0]
        if isinstance(ranked, str):
            raise InputError(f"{path}: {ranked}")
        tta = None if self.tta == "none" else self.tta
        abstained = getattr(ranked, "abstained", None)
        return Record(path, self.name, self.preset, list(ranked), None, self.multi_label, tta=tta, abstained=abstained)

    def ranker(self, top: int = 5, threshold: float | None = None, groups: Any = None,
               abstain_below: float | None = None) -> Ranker:  # fmt: skip
        """How outputs become predictions: top-k classes, or top-k groups of them, and the abstain verdict."""
        _check_top(top, threshold)
        if abstain_below is not None and not 0.0 <= abstain_below <= 1.0:
            raise UsageError(f"{option('abstain_below')} must be between 0 and 1")
        grouping = self.grouping(groups) if groups is not None else None
        return self.model.ranker(top, threshold, grouping, abstain_below)

    def grouping(self, groups: Any) -> Grouping:
        """`groups` ("coarse", a group file, a mapping group -> members) resolved against this model's classes."""
        from imgclass.data.groups import resolve_groups

        return resolve_groups(groups, self.model.labels)

    def classify(
        self,
        inputs: Iterable[str | os.PathLike],
        *,
        top: int = 5,
        threshold: float | None = None,
        recursive: bool = False,
        batch_size: int | None = None,
        workers: int | None = None,
        stop: threading.Event | None = None,
        expand_inputs: bool = True,
        debug: bool = False,
        groups: Any = None,
        abstain_below: float | None = None,
        every: Every | str = Every(),
        video: bool = False,
    ) -> Classification:
        """Records for files, http(s) URLs, directories and globs, in input order; a bad input is an error record.

        `groups`: rank groups of classes instead of classes: "coarse" (the shipped WordNet groups of
        the ImageNet-1k classes), a JSON/YAML group file, or a mapping group -> members (labels,
        indices, WordNet ids, hypernym WordNet ids); see `imgclass.data.groups`. A group's probability
        is the sum of its classes' (the maximum for multi-label scores); each lists its top `members`.
        `abstain_below`: records whose top probability (after grouping) is below it say
        `abstained=True` (their predictions are kept); with it unset `abstained` is None.
        A video file gives a record per sampled frame (`every`: `Every` or "1s", "30f"), with
        `time` and `frame`; `video`: directories and globs list video files too.
        """
        ranker = self.ranker(top, threshold, groups, abstain_below)
        options = self._pipeline_options(batch_size, workers, debug)
        paths = self._paths(inputs, recursive, expand_inputs, video)
        if expand_inputs:
            sampling = parse_every(every) if isinstance(every, str) else every
            paths = expand_frames(paths, VideoOptions(sampling, self.decode.max_pixels))
        scored = None if self.scorer.plain else Scored(self.scorer, ranker)  # an ensemble and/or TTA
        return Classification(Pipeline(self.model, ranker, options, stop, scored), paths)

    @property
    def bottleneck(self) -> Bottleneck:
        """The model cut at its bottleneck, the pooled vector its classifier reads (ModelError when it has none)."""
        if self._bottleneck is None:
            from imgclass.inference.embedding import Bottleneck

            self._bottleneck = Bottleneck(self.model, self.model.device, self.options.threads)
        return self._bottleneck

    def vector(self, image: Any, normalize: bool = False) -> np.ndarray:
        """The bottleneck vector of one image (a path, a PIL image or an HWC uint8 array): float32, `dim` values."""
        _, img = self._open(image)
        return self.bottleneck.run(self.model.transform(img)[None], normalize)[0]

    def embed(
        self,
        inputs: Iterable[Any],
        *,
        normalize: bool = False,
        recursive: bool = False,
        batch_size: int | None = None,
        workers: int | None = None,
        stop: threading.Event | None = None,
        expand_inputs: bool = True,
        debug: bool = False,
        decode: DecodeOptions | None = None,
    ) -> Classification:
        """An `Embedding` per input (its bottleneck vector, or an error), in input order, through the batch pipeline.

        `normalize`: vectors scaled to unit L2 norm. With `expand_inputs=False` an input may also be
        an object with `.path` and `.view(image)` (an augmented view, see imgclass.tasks.features);
        `decode`: other decoding options for this run (default: the classifier's).
        """
        from imgclass.inference.embedding import EmbedOutputs

        options = self._pipeline_options(batch_size, workers, debug, decode)
        outputs = EmbedOutputs(self.bottleneck, normalize)
        items = self._paths(inputs, recursive, expand_inputs)
        return Classification(Pipeline(self.model, None, options, stop, outputs), items)

    def _pipeline_options(
        self, batch_size: int | None, workers: int | None, debug: bool, decode: DecodeOptions | None = None
    ) -> PipelineOptions:
        if (batch_size is not None and batch_size < 1) or (workers is not None and workers < 1):
            raise UsageError("«batch-size» and «workers» must be at least 1")
        return PipelineOptions(
            batch_size=batch_size or default_batch_size(self.model),
            workers=workers or default_workers(),
            decode=decode or self.decode,
            debug=debug,
            urls=self.urls,
        )

    @property
    def urls(self) -> UrlPolicy:
        """How inputs named by http(s) URLs are fetched: none in an offline run."""
        from imgclass.store import registry

        opts = self.options
        if not opts.url_timeout > 0 or opts.url_max_bytes < 1:
            raise UsageError("the URL timeout and size limit must be more than 0")
        offline = registry.offline_from_env() if opts.offline is None else opts.offline
        return UrlPolicy(timeout=opts.url_timeout, max_bytes=opts.url_max_bytes, offline=offline)

    @staticmethod
    def _paths(inputs: Iterable[Any], recursive: bool, expand_inputs: bool, video: bool = False) -> Iterable[Any]:
        if isinstance(inputs, (str, bytes, os.PathLike)):  # one path, not its characters
            inputs = [inputs]
        elif not isinstance(inputs, Iterable):
            raise UsageError(f"inputs must be a path or an iterable of paths, not {type(inputs).__name__}")
        if not expand_inputs:
            return (i if hasattr(i, "view") or isinstance(i, Frame) else os.fspath(i) for i in inputs)
        return expand((os.fspath(i) for i in inputs), recursive=recursive, video=video)

    def explain(self, image: Any, class_: int | str | None = None, **options: Any) -> Explanation:
        """Where the model looked for `class_` (default: its top-1) in one image: a heat map.

        `method="cam"` (default; networks ending in global average pooling + one linear
        layer) or `"occlusion"` (any network); `top`, `threshold`, and for occlusion
        `patch`, `stride`, `batch_size`, `progress`. The Explanation's `.map` is on the
        model's input grid, `.on_original()` on the photo, `.overlay()` a coloured PIL image.
        """
        from imgclass.inference.explain import explain

        return explain(self, image, class_, **options)

    def _open(self, image: Any, decode: DecodeOptions | None = None) -> tuple[str, Any]:
        from PIL import Image

        if isinstance(image, (str, bytes, os.PathLike)):
            path = os.fsdecode(image)
            if is_url(path):
                return path, decode_rgb(fetch_image(path, self.urls), path, decode or self.decode)
            return display_path(path), load_rgb(path, decode or self.decode)
        if isinstance(image, Image.Image):
            _check_size(image.width, image.height)
            return MEMORY_PATH, to_rgb(image)
        shape = getattr(image, "shape", None)
        if shape is not None and len(shape) == 3 and shape[2] == 3 and str(image.dtype) == "uint8":
            _check_size(shape[1], shape[0])
            return MEMORY_PATH, Image.fromarray(image, "RGB")
        raise InputError(f"cannot classify a {type(image).__name__}: give a path, a PIL image or an HxWx3 uint8 array")


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise InputError(f"{MEMORY_PATH}: image has no pixels ({width}x{height})")


def _check_top(top: int, threshold: float | None) -> None:
    if top < 1:
        raise UsageError("«top» must be at least 1")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError("«threshold» must be between 0 and 1")
