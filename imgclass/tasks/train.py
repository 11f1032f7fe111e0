"""Train a new classifier head on a frozen backbone: your own classes, a standalone ONNX model out.

    import imgclass
    from imgclass.tasks.train import TrainOptions, train
    clf = imgclass.load("inception-v3")
    result = train(clf, Path("photos/"), Path("mine.onnx"), TrainOptions(augment=2))
    print(result.report.val_top1)          # then: imgclass predict x.jpg --model mine.onnx

DATA is an ImageFolder tree (one folder per class, folder name = label; images at any
depth below it), DATA/train and DATA/val (or valid/validation) holding such trees, or a
CSV/JSONL list of path,label (paths relative to the list, or http(s) URLs).
Without a validation folder a seeded, stratified fraction of each class (--val-split)
is held out. Each class needs MIN_TRAIN (5) readable training images, so that the
cross-validation that picks the regularisation has one of each class in every fold
(and, when split off, at least one validation image).

The head is scikit-learn's multinomial LogisticRegression on the bottleneck vectors
(`imgclass.tasks.features`: cached, with K augmented views per training image), its C the
one of the grid with the lowest mean log-loss in stratified K-fold cross-validation on
the training split (log-loss, not accuracy: on small, separable data many Cs tie on
accuracy), folds grouped by image so that views of one photo never sit on both sides. The output model is the original graph
up to the bottleneck, then Gemm + Softmax with the learnt weights, and metadata:
`imgclass.labels`, the resolved preprocessing (`imgclass.preset` or `imgclass.preprocess`, written by
`imgclass.store.carried`) and `imgclass.provenance`.
Nothing here prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from imgclass._util.text import printable
from imgclass.data.datasets import LIST_SUFFIXES, natural_key, read_rows
from imgclass.data.images import display_path
from imgclass.data.sources import expand, is_url
from imgclass.errors import InputError, MissingExtra, OutputError, UsageError, describe_os_error
from imgclass.store.download import UrlPolicy
from imgclass.tasks.features import (
    FeatureCache,
    FeatureOptions,
    View,
    cache_context,
    compute,
    features_dir,
    file_digest,
)

if TYPE_CHECKING:
    import numpy as np

    from imgclass.classifier import Classifier

MIN_TRAIN = 5  # training images per class: one per fold of a 5-fold cross-validation
DEFAULT_CS = (0.01, 0.1, 1.0, 10.0, 100.0)
VAL_NAMES = ("val", "valid", "validation")
HINT = (
    "give a folder with one subfolder per class (the folder name is the label), DATA/train and DATA/val, "
    "or a .csv/.jsonl list of path,label"
)


def require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingExtra("train", "imgclass train") from None


@dataclass(frozen=True)
class TrainOptions:
    val_split: float = 0.2  # held out of each class when DATA has no val/ folder
    augment: int = 2  # random-resized, flipped views per training image, besides the image itself
    seed: int = 0
    cs: tuple[float, ...] = DEFAULT_CS  # the C values cross-validation chooses from
    folds: int = 5
    max_iter: int = 1000
    cache: bool = True  # keep and reuse bottleneck vectors in <IMGCLASS_HOME>/features
    batch_size: int | None = None
    workers: int | None = None
    debug: bool = False


@dataclass
class Split:
    """Labelled images: class names in index order, (path, class index) for training and validation."""

    root: str
    layout: str  # "folders" (validation split off) or "train/val"
    classes: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]


def _class_folders(root: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: natural_key(e.name))
    except OSError as err:
        raise UsageError(f"{printable(str(root))}: cannot list folder: {describe_os_error(err)}") from None
    return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]


def _images(folder: Path) -> list[str]:
    return sorted(expand([str(folder)], recursive=True), key=natural_key)


def _read_classes(root: Path) -> dict[str, list[str]]:
    folders = _class_folders(root)
    classes = {folder.name: _images(folder) for folder in folders}
    if len(classes) < 2:
        found = f"only {', '.join(repr(printable(n)) for n in classes)}" if classes else "none"
        raise UsageError(f"{printable(str(root))}: training needs at least 2 class folders ({found}); {HINT}")
    return classes


def needed_images(val_split: float) -> int:
    """The fewest images a class needs when its validation images are split off."""
    n = MIN_TRAIN + 1
    while n - max(1, round(val_split * n)) < MIN_TRAIN:
        n += 1
    return n


def read_training_data(root: Path, val_split: float = 0.2, seed: int = 0) -> Split:
    """The labelled images at `root` (see the module doc), or UsageError saying what is missing."""
    if not 0 < val_split < 1:
        raise UsageError(f"«val-split» {val_split:g}: give a fraction between 0 and 1")
    if root.is_file() and root.suffix.lower() in LIST_SUFFIXES:
        return _split(str(root), _list_classes(root), val_split, seed, "list")
    if not root.is_dir():
        raise UsageError(f"{printable(str(root))}: not a folder; {HINT}")
    subfolders = {f.name.lower(): f for f in _class_folders(root)}
    if "train" in subfolders and _is_split_layout(root, subfolders):
        return _train_val(root, subfolders, val_split, seed)
    return _split(str(root), _read_classes(root), val_split, seed)


SPLIT_NAMES = ("train", "test", *VAL_NAMES)


def _is_split_layout(root: Path, subfolders: dict[str, Path]) -> bool:
    """ROOT/train (+ val) is a split when every folder is a split; a `train` of images beside classes is a class.

    A `train` folder that holds class folders beside other folders is ambiguous: refused, naming both readings.
    """
    others = sorted(name for name in subfolders if name not in SPLIT_NAMES)
    if not others:
        return True
    if not _class_folders(subfolders["train"]):
        return False  # images, not class folders: a class named "train"
    raise UsageError(f"{printable(str(root))}: 'train' holds class folders but sits beside other folders "
                     f"({', '.join(map(repr, others[:3]))}); give {printable(str(subfolders['train']))} for its "
                     "classes, or move the split folders out")  # fmt: skip


def _list_classes(path: Path) -> dict[str, list[str]]:
    """A CSV/JSONL list of path,label (paths relative to the list, or http(s) URLs): the images of each label."""
    classes: dict[str, list[str]] = {}
    for _, image, label in read_rows(path):
        classes.setdefault(label, []).append(image)
    return {name: classes[name] for name in sorted(classes, key=natural_key)}


def _train_val(root: Path, subfolders: dict[str, Path], val_split: float, seed: int) -> Split:
    train = _read_classes(subfolders["train"])
    val_dir = next((subfolders[n] for n in VAL_NAMES if n in subfolders), None)
    if val_dir is None:
        return _split(str(subfolders["train"]), train, val_split, seed)
    val = {name: paths for name, paths in _read_classes(val_dir).items() if paths}
    unknown = sorted(set(val) - set(train), key=natural_key)
    if unknown:
        raise UsageError(f"{printable(str(val_dir))}: class folder(s) {', '.join(map(repr, unknown))} "
                         f"are not in {printable(str(subfolders['train']))}")  # fmt: skip
    names = list(train)
    for name, paths in train.items():
        _check_count(name, len(paths), MIN_TRAIN, f"{MIN_TRAIN} to train")
    index = {name: i for i, name in enumerate(names)}
    return Split(str(root), "train/val", names, [(p, index[n]) for n, ps in train.items() for p in ps],
                 [(p, index[n]) for n, ps in val.items() for p in ps])  # fmt: skip


def _check_count(name: str, count: int, needed: int, why: str) -> None:
    if count < needed:
        raise UsageError(f"class {printable(name)!r} has {count} image{'s' if count != 1 else ''}; "
                         f"at least {needed} are needed ({why})")  # fmt: skip


def _split(root: str, classes: dict[str, list[str]], val_split: float, seed: int, layout: str = "folders") -> Split:
    """A seeded, stratified split: round(val_split * n) (at least 1) of each class's images held out."""
    import numpy as np

    needed = needed_images(val_split)
    names = list(classes)
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for index, name in enumerate(names):
        paths = classes[name]
        _check_count(name, len(paths), needed, f"{needed - max(1, round(val_split * needed))} to train, "
                     f"the rest to validate at «val-split» {val_split:g}")  # fmt: skip
        order = np.random.default_rng([seed, index]).permutation(len(paths))
        held = max(1, round(val_split * len(paths)))
        val += [(paths[i], index) for i in sorted(order[:held])]
        train += [(paths[i], index) for i in sorted(order[held:])]
    return Split(root, layout, names, train, val)


@dataclass(frozen=True)
class ClassResult:
    label: str
    train_images: int
    val_images: int
    precision: float | None  # None: nothing was predicted as this class
    recall: float | None  # None: no validation image of this class


@dataclass
class TrainReport:
    model: str
    output: str
    dataset: str
    layout: str
    classes: list[str]
    dim: int = 0
    bottleneck: dict[str, Any] = field(default_factory=dict)
    train_images: int = 0
    val_images: int = 0
    augment: int = 0
    training_vectors: int = 0
    c: float | None = None
    cv_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # by C: mean CV accuracy and log-loss
    folds: int = 0
    val_top1: float | None = None
    per_class: list[ClassResult] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # [true][predicted], validation images
    failures: list[tuple[str, str]] = field(default_factory=list)  # unreadable images, skipped
    cache: dict[str, Any] = field(default_factory=dict)  # enabled, hits, computed (backbone runs)
    seconds: dict[str, float] = field(default_factory=dict)  # by stage
    signal: int | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [{"path": p, "error": e} for p, e in self.failures]
        return data


@dataclass
class TrainResult:
    report: TrainReport
    estimator: Any = None  # the fitted sklearn LogisticRegression
    weight: np.ndarray | None = None  # [classes, dim]: the exported Gemm
    bias: np.ndarray | None = None


class _Stages:
    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class Events(Protocol):
    """What a front end hears: the feature pass starting (with its number of views), each view done."""

    def started(self, total: int) -> None: ...
    def advance(self) -> None: ...


class _Quiet:
    def started(self, total: int) -> None:
        pass

    def advance(self) -> None:
        pass


def _plan_views(split: Split, augment: int, seed: int, urls: UrlPolicy | None = None
                ) -> tuple[list[View], list[View], dict[str, str]]:  # fmt: skip
    """Training views (1 + augment per image), validation views (1 per image), unreadable files.

    A view is keyed by its image's bytes: an http(s) URL is fetched here for them (and again
    by the feature pass, which keeps no image), so a URL whose image changed is a new image.
    """
    failed: dict[str, str] = {}
    train: list[View] = []
    val: list[View] = []
    for items, views, count in ((split.train, train, 1 + augment), (split.val, val, 1)):
        for path, _ in items:
            try:
                digest = _url_digest(path, urls or UrlPolicy()) if is_url(path) else file_digest(path)
            except OSError as err:
                failed[display_path(path)] = f"cannot read: {describe_os_error(err)}"
                continue
            except InputError as err:
                failed[path] = str(err)
                continue
            views.extend(View(path, digest, i, seed) for i in range(count))
    return train, val, failed


def _url_digest(url: str, policy: UrlPolicy) -> str:
    import hashlib

    from imgclass.inference.pipeline import fetch_image

    return hashlib.sha256(fetch_image(url, policy)).hexdigest()


def _matrix(views: list[View], labels: dict[str, int], vectors: dict[View, Any], dim: int):
    """Stacked vectors of the views that have one, their class indices and their image number (CV groups)."""
    import numpy as np

    kept = [v for v in views if v in vectors]
    images: dict[str, int] = {}
    groups = [images.setdefault(v.path, len(images)) for v in kept]
    x = np.stack([vectors[v] for v in kept]) if kept else np.zeros((0, dim), np.float32)
    return x.astype(np.float32), np.array([labels[v.path] for v in kept], int), np.array(groups, int)


def _check_readable(split: Split, y, failures: list[tuple[str, str]]) -> None:
    import numpy as np

    counts = np.bincount(y, minlength=len(split.classes))
    for index, name in enumerate(split.classes):
        if counts[index] < MIN_TRAIN:
            lost = f" ({len(failures)} unreadable image(s) skipped)" if failures else ""
            raise UsageError(f"class {printable(name)!r} has {counts[index]} readable training image(s){lost}; "
                             f"at least {MIN_TRAIN} are needed")  # fmt: skip


def fit(x, y, groups, options: TrainOptions):
    """LogisticRegression (multinomial), C by grouped stratified K-fold CV on log-loss.

    Returns (estimator refit on all of x, C, {C: (accuracy, log-loss)} averaged over folds, folds).
    """
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    per_class = np.bincount(np.unique(np.stack([groups, y], 1), axis=0)[:, 1])
    folds = int(max(2, min(options.folds, per_class.min())))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=options.seed)
    scoring = {"log_loss": "neg_log_loss", "accuracy": "accuracy"}
    search = GridSearchCV(LogisticRegression(max_iter=options.max_iter), {"C": list(options.cs)}, cv=cv,
                          scoring=scoring, refit="log_loss")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x, y, groups=groups)
    results = search.cv_results_
    scores = {
        f"{c:g}": {"accuracy": float(a), "log_loss": float(-loss)}
        for c, a, loss in zip(options.cs, results["mean_test_accuracy"], results["mean_test_log_loss"], strict=True)
    }
    return search.best_estimator_, float(search.best_params_["C"]), scores, folds


def head_arrays(estimator, classes: int):
    """The estimator as softmax(x @ weight.T + bias): a binary model's one row becomes [0, w] (same probabilities)."""
    import numpy as np

    weight = np.asarray(estimator.coef_, np.float32)
    bias = np.asarray(estimator.intercept_, np.float32).reshape(-1)
    if classes == 2 and weight.shape[0] == 1:
        weight = np.vstack([np.zeros_like(weight), weight])
        bias = np.concatenate([np.zeros(1, np.float32), bias])
    return weight, bias


def _validate(report: TrainReport, split: Split, estimator, x_val, y_val, train_y) -> None:
    import numpy as np

    k = len(split.classes)
    confusion = np.zeros((k, k), int)
    if len(y_val):
        predicted = estimator.predict_proba(x_val).argmax(axis=1)
        np.add.at(confusion, (y_val, predicted), 1)
        report.val_top1 = float(np.trace(confusion) / len(y_val))
    report.confusion = confusion.tolist()
    train_counts = np.bincount(train_y, minlength=k)
    for i, label in enumerate(split.classes):
        column, row = confusion[:, i].sum(), confusion[i].sum()
        precision = float(confusion[i, i] / column) if column else None
        recall = float(confusion[i, i] / row) if row else None
        report.per_class.append(ClassResult(label, int(train_counts[i]), int(row), precision, recall))


def check_output(output: Path, model_path: Path) -> None:
    """Before any work: the output's folder exists and the output is not the model itself."""
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"«output» {printable(str(output))}: no such folder {printable(str(folder))}")
    if output.exists() and os.path.samefile(output, model_path):
        raise UsageError(f"«output» {printable(str(output))} is the model trained from; it would be overwritten")


def write_model(model, output: Path) -> None:
    """Save atomically: a temporary file next to `output`, renamed over it."""

    from imgclass._util.fs import write_atomically

    try:
        write_atomically(output, model.SerializeToString())
    except OSError as err:
        raise OutputError(f"{printable(str(output))}: {describe_os_error(err)}") from None


def _export(classifier: Classifier, result: TrainResult, output: Path, options: TrainOptions) -> None:
    from datetime import datetime, timezone

    from imgclass._util.version import __version__
    from imgclass.graph import metadata as props
    from imgclass.graph import surgery
    from imgclass.store import carried
    from imgclass.store.index import sha256_of

    report = result.report
    provenance = {
        "source_model": classifier.name,
        "source_sha256": sha256_of(classifier.model.path),
        "bottleneck": report.bottleneck,
        "classes": report.classes,
        "images": {"train": report.train_images, "val": report.val_images, "skipped": report.failed},
        "augment": options.augment,
        "seed": options.seed,
        "C": report.c,
        "val_top1": report.val_top1,
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "imgclass": __version__,
    }
    # The source's preprocessing, resolved (a flag, a sidecar or metadata), and the new head's labels;
    # the activation is the new head's own.
    metadata = {
        **carried.preprocessing(classifier.model),
        **props.encode(labels=report.classes, provenance=provenance),
    }
    proto = surgery.load_model_proto(classifier.model.path)
    head = classifier.bottleneck.head
    assert result.weight is not None and result.bias is not None
    write_model(surgery.attach_classifier(proto, head, result.weight, result.bias, metadata), output)


def train(
    classifier: Classifier,
    data: Path | Split,
    output: Path,
    options: TrainOptions = TrainOptions(),
    events: Events | None = None,
) -> TrainResult:
    """Train a head for the classes in `data` on `classifier`'s frozen bottleneck; write the model to `output`.

    SIGINT/SIGTERM during the feature pass stop the run: nothing is written, `report.signal` says so.
    """
    from imgclass._util.interrupt import stop_on_signals

    require_sklearn()
    events = events or _Quiet()
    result = TrainResult(TrainReport(classifier.name, str(output), str(data), "", []))
    report, stages = result.report, _Stages(result.report.seconds)
    with stages("scan"):
        split = data if isinstance(data, Split) else read_training_data(Path(data), options.val_split, options.seed)
        check_output(output, classifier.model.path)
        train_views, val_views, failed = _plan_views(split, options.augment, options.seed, classifier.urls)
    report.dataset, report.layout, report.classes, report.augment = (
        split.root,
        split.layout,
        split.classes,
        options.augment,
    )
    head = classifier.bottleneck.head  # ModelError (exit 3) when the graph has none
    report.dim, report.bottleneck = head.dim, head.describe()
    cache = FeatureCache(features_dir() if options.cache else None, cache_context(classifier))
    events.started(len(train_views) + len(val_views))
    with stages("features"), stop_on_signals() as stop:
        feature_options = FeatureOptions(options.batch_size, options.workers, options.debug)
        features = compute(classifier, [*train_views, *val_views], cache, feature_options, events.advance, stop.event)
    failed.update(features.failed)
    report.failures = sorted(failed.items())
    report.cache = {"enabled": options.cache, "hits": features.hits, "computed": features.computed}
    report.signal = stop.signal
    if report.signal is not None:
        return result
    _fit_and_export(classifier, result, split, (train_views, val_views), features.vectors, output, options, stages)
    return result


def _fit_and_export(classifier, result: TrainResult, split: Split, views, vectors, output, options, stages) -> None:
    import numpy as np

    report = result.report
    labels = dict((*split.train, *split.val))
    x, y, groups = _matrix(views[0], labels, vectors, report.dim)
    x_val, y_val, val_groups = _matrix(views[1], labels, vectors, report.dim)
    image_labels = np.zeros(len(np.unique(groups)), int)
    image_labels[groups] = y
    _check_readable(split, image_labels, report.failures)
    report.train_images, report.val_images = len(image_labels), len(np.unique(val_groups))
    report.training_vectors = len(y)
    with stages("fit"):
        estimator, report.c, report.cv_scores, report.folds = fit(x, y, groups, options)
    with stages("validate"):
        _validate(report, split, estimator, x_val, y_val, image_labels)
    result.estimator = estimator
    result.weight, result.bias = head_arrays(estimator, len(split.classes))
    with stages("export"):
        _export(classifier, result, output, options)


def views_of(paths: list[str], augment: int = 0, seed: int = 0) -> list[View]:
    """The views `train` reads of these images (for tools and tests)."""
    return [View(p, file_digest(p), i, seed) for p in paths for i in range(1 + augment)]
