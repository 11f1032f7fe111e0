"""Check a model on labelled images: classify a Dataset, score it, return a Report. Nothing here prints.

    import imgclass
    from imgclass.tasks.evaluate import evaluate, load_dataset
    clf = imgclass.load("resnet50")
    report = evaluate(clf, load_dataset("val/", clf))
    print(report.top1, report.top5, report.failed)

Scoring rules:
- top-1 and top-5 are fractions of the images that were classified. An image that
  cannot be read or classified is neither right nor wrong: it is counted in
  `failed` and listed in `failures` (path and reason), never dropped silently;
  `correct_top1 / images` is the accuracy counting failures as wrong.
- top-5 is "the true class is among the first min(5, classes) predictions".
- per-class accuracy is over each class's classified images; a confusion is an
  image whose top-1 prediction is not its class (true → predicted, counted).
- images/s is images read per second of wall time from the first image to the
  last, model loading not included.
- selective classification (single-label models): an image is answered when its top
  probability (after grouping) is at or above a threshold. `coverage` is answered /
  classified, `selective_accuracy` top-1 over the answered images. With `abstain_below`
  they are reported at that threshold (the records' own `abstained`); `risk_coverage`
  always gives both at RISK_THRESHOLDS, to choose one.
- with `groups`, top-1/top-5 score the predicted groups against the groups that contain
  each image's true class (a class may be in several), and the worst "classes" and
  confusions are groups.

Scoring lives in one place, chosen by `tally_for`: `SingleLabelTally` for softmax
heads, `MultiLabelTally` (per-class precision and recall at a threshold, micro
averages, no top-1/top-5) for multi-label (sigmoid) models.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from imgclass._util.interrupt import stop_on_signals
from imgclass.classifier import Classifier
from imgclass.data.datasets import ClassEntry, ClassNames, Dataset, Sample, read_dataset
from imgclass.engines import Engine, RunOptions
from imgclass.errors import UsageError
from imgclass.records import Record

if TYPE_CHECKING:
    from imgclass.graph.ranking import Grouping

TOP = 5
RISK_THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class EvaluateOptions:
    batch_size: int | None = None  # None: the model's default
    workers: int | None = None
    worst: int = 10  # classes in `worst_classes`
    confusions: int = 10  # pairs in `confusions`
    debug: bool = False
    threshold: float | None = None  # multi-label models: a class is predicted at or above it (None: 0.5)
    groups: Any = None  # score groups of classes: "coarse", a group file, a mapping (see Classifier.classify)
    abstain_below: float | None = None  # report coverage and selective accuracy at this threshold


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str
    images: int  # classified images of this class
    top1: float
    top5: float


@dataclass(frozen=True)
class Confusion:
    true_index: int
    true_label: str
    predicted_index: int
    predicted_label: str
    count: int


@dataclass(frozen=True)
class LabelScore:
    """One class of a multi-label model: predicted (score >= threshold) against the true class."""

    index: int
    label: str
    images: int  # images whose true class this is
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float | None  # None: the class was never predicted
    recall: float | None  # None: no image of this class


@dataclass(frozen=True)
class CoveragePoint:
    """Selective classification at one threshold: images answered (top probability >= it) and their top-1."""

    threshold: float
    answered: int
    coverage: float | None  # answered / classified; None when nothing was classified
    accuracy: float | None  # top-1 over the answered; None when none was answered


@dataclass(frozen=True)
class Failure:
    path: str
    error: str


@dataclass
class Report:
    """What `imgclass evaluate` prints; `to_dict()` is its JSON, `from_dict()` reads it back."""

    model: str
    preset: str
    dataset: str
    layout: str  # folders, csv, jsonl
    model_classes: int
    dataset_classes: int  # classes with at least one image
    images: int  # images in the dataset
    classified: int
    failed: int
    correct_top1: int
    correct_top5: int
    top1: float | None  # None when nothing was classified
    top5: float | None
    seconds: float
    images_per_s: float
    worst_classes: list[ClassScore] = field(default_factory=list)
    confusions: list[Confusion] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    mapping: list[ClassEntry] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # images outside the class folders
    signal: int | None = None  # the run was stopped by this signal before every image was read
    multi_label: bool = False  # scored per class at `threshold` instead of top-1/top-5
    threshold: float | None = None
    precision: float | None = None  # multi-label: micro-averaged over the dataset's classes
    recall: float | None = None
    per_class: list[LabelScore] = field(default_factory=list)
    device: str = "auto"  # where the model ran (what auto resolved to)
    compute_precision: str = "f32"  # what it computed in: f32, or bf16/f16 when asked for
    groups: str | None = None  # scored as groups of classes from this source ("coarse", a file)
    abstain_below: float | None = None
    answered: int | None = None  # with abstain_below: images not abstained
    coverage: float | None = None  # answered / classified
    selective_accuracy: float | None = None  # top-1 over the answered
    risk_coverage: list[CoveragePoint] = field(default_factory=list)

    @property
    def not_run(self) -> int:
        return self.images - self.classified - self.failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "not_run": self.not_run}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        nested = {"worst_classes": ClassScore, "confusions": Confusion, "failures": Failure, "mapping": ClassEntry,
                  "per_class": LabelScore, "risk_coverage": CoveragePoint}  # fmt: skip
        values = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        for key, kind in nested.items():
            values[key] = [kind(**item) for item in data.get(key, [])]
        values["ignored"] = list(data.get("ignored", []))
        return cls(**values)


class Tally(Protocol):
    """Scores records against their true classes; `fields()` gives the Report's scoring fields."""

    def add(self, sample: Sample, record: Record) -> bool | None:
        """Score one record; its top-1 is right (True), wrong (False), or not scored (None)."""
        ...

    def fields(self, worst: int, confusions: int) -> dict[str, Any]: ...


class SingleLabelTally:
    """Top-1/top-5, per-class accuracy and confusions: the scorer for one-label-per-image (softmax) models."""

    def __init__(self, labels: tuple[str, ...]):
        self.labels = labels
        self.per_class: dict[int, list[int]] = {}  # index -> [classified, top-1 right, top-5 right]
        self.pairs: Counter[tuple[int, int]] = Counter()
        self.failures: list[Failure] = []

    def add(self, sample: Sample, record: Record) -> bool | None:
        if record.error is not None:
            self.failures.append(Failure(record.path, record.error))
            return None
        predicted = [p.index for p in record.predictions[:TOP] if p.index is not None]
        return self.score(sample.truth, predicted)

    def score(self, truth: int, predicted: list[int]) -> bool:
        hit1 = predicted[:1] == [truth]
        counts = self.per_class.setdefault(truth, [0, 0, 0])
        counts[0] += 1
        counts[1] += hit1
        counts[2] += truth in predicted
        if predicted and not hit1:
            self.pairs[(truth, predicted[0])] += 1
        return hit1

    def fields(self, worst: int, confusions: int) -> dict[str, Any]:
        classified = sum(c[0] for c in self.per_class.values())
        right1 = sum(c[1] for c in self.per_class.values())
        right5 = sum(c[2] for c in self.per_class.values())
        scores = [ClassScore(i, self.labels[i], c[0], c[1] / c[0], c[2] / c[0]) for i, c in self.per_class.items()]
        scores.sort(key=lambda s: (s.top1, s.top5, -s.images, s.index))
        pairs = sorted(self.pairs.items(), key=lambda item: (-item[1], item[0]))
        return {
            "classified": classified,
            "failed": len(self.failures),
            "correct_top1": right1,
            "correct_top5": right5,
            "top1": right1 / classified if classified else None,
            "top5": right5 / classified if classified else None,
            "worst_classes": scores[:worst],
            "confusions": [Confusion(t, self.labels[t], p, self.labels[p], n) for (t, p), n in pairs[:confusions]],
            "failures": self.failures,
        }


class MultiLabelTally:
    """Per-class precision and recall at a threshold: the scorer for independent (sigmoid) scores.

    Each image has one true class (its folder or list label); every class whose score is at
    or above the threshold counts as predicted for it. Precision and recall are reported per
    class of the dataset and micro-averaged over those classes. top-1/top-5 are not computed.
    """

    def __init__(self, labels: tuple[str, ...], threshold: float):
        self.labels, self.threshold = labels, threshold
        self.truths: Counter[int] = Counter()
        self.hits: Counter[int] = Counter()  # true positives
        self.predicted: Counter[int] = Counter()  # every prediction of the class, right or wrong
        self.failures: list[Failure] = []

    def add(self, sample: Sample, record: Record) -> bool | None:
        if record.error is not None:
            self.failures.append(Failure(record.path, record.error))
            return None
        self.truths[sample.truth] += 1
        for p in record.predictions:
            if p.probability >= self.threshold and p.index is not None:
                self.predicted[p.index] += 1
                self.hits[p.index] += p.index == sample.truth
        return None  # no top-1: selective accuracy is not scored for independent scores

    def _score(self, index: int) -> LabelScore:
        tp, predicted, images = self.hits[index], self.predicted[index], self.truths[index]
        return LabelScore(index, self.labels[index], images, tp, predicted - tp, images - tp,
                          tp / predicted if predicted else None, tp / images if images else None)  # fmt: skip

    def fields(self, worst: int, confusions: int) -> dict[str, Any]:
        scores = [self._score(i) for i in sorted(self.truths)]
        tp = sum(s.true_positives for s in scores)
        predicted = sum(self.predicted[i] for i in self.truths)
        classified = sum(self.truths.values())
        return {
            "classified": classified, "failed": len(self.failures), "correct_top1": 0, "correct_top5": 0,
            "top1": None, "top5": None, "failures": self.failures, "multi_label": True,
            "threshold": self.threshold, "per_class": scores,
            "precision": tp / predicted if predicted else None, "recall": tp / classified if classified else None,
        }  # fmt: skip


class GroupTally(SingleLabelTally):
    """Top-1/top-5 of groups: a hit when a predicted group contains the image's true class.

    Per-"class" scores and confusions are per group (index: the group's position, label: its name);
    an image whose class is in several groups is counted under the first.
    """

    def __init__(self, grouping: Grouping):
        super().__init__(grouping.names)
        self.position = {name: i for i, name in enumerate(grouping.names)}
        self.homes: dict[int, list[int]] = {}
        for g, members in enumerate(grouping.members):
            for index in members:
                self.homes.setdefault(index, []).append(g)

    def add(self, sample: Sample, record: Record) -> bool | None:
        if record.error is not None:
            self.failures.append(Failure(record.path, record.error))
            return None
        predicted = [self.position[p.label] for p in record.predictions[:TOP] if p.label in self.position]
        homes = self.homes.get(sample.truth, [])
        truth = next((g for g in predicted[:1] if g in homes), homes[0] if homes else -1)
        if truth not in predicted and homes:
            truth = next((g for g in predicted if g in homes), truth)  # top-5: any of its groups
        return self.score(truth, predicted)


class Selective:
    """Top probability and top-1 hit of each classified image, for coverage and selective accuracy."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, bool, bool | None]] = []  # top probability, hit, abstained

    def add(self, record: Record, hit: bool | None) -> None:
        if hit is not None:
            top = record.predictions[0].probability if record.predictions else 0.0
            self.seen.append((top, hit, record.abstained))

    def point(self, threshold: float) -> CoveragePoint:
        answered = [hit for top, hit, _ in self.seen if top >= threshold]
        return self._point(threshold, answered)

    def _point(self, threshold: float, answered: list[bool]) -> CoveragePoint:
        coverage = len(answered) / len(self.seen) if self.seen else None
        return CoveragePoint(threshold, len(answered), coverage, sum(answered) / len(answered) if answered else None)

    def fields(self, abstain_below: float | None) -> dict[str, Any]:
        if not self.seen and abstain_below is None:
            return {}
        data: dict[str, Any] = {"risk_coverage": [self.point(t) for t in RISK_THRESHOLDS]}
        if abstain_below is not None:
            at = self._point(abstain_below, [hit for _, hit, abstained in self.seen if not abstained])
            data |= {"abstain_below": abstain_below, "answered": at.answered, "coverage": at.coverage,
                     "selective_accuracy": at.accuracy}  # fmt: skip
        return data


def tally_for(classifier: Classifier, threshold: float | None = None, grouping: Grouping | None = None) -> Tally:
    """The scorer for this model's kind of output: top-k for softmax heads, precision/recall for sigmoid."""
    if classifier.multi_label:
        return MultiLabelTally(classifier.labels, 0.5 if threshold is None else threshold)
    if grouping is not None:
        return GroupTally(grouping)
    return SingleLabelTally(classifier.labels)


def load_dataset(path: str | PathLike, classifier: Classifier) -> Dataset:
    """Read a folder or list of labelled images, mapping each class name to one of the model's classes."""
    labels = classifier.model.labels
    return read_dataset(Path(path), ClassNames.for_labels(labels.names, labels.kind))


def evaluate(
    classifier: Classifier,
    dataset: Dataset,
    options: EvaluateOptions = EvaluateOptions(),
    on_record: Callable[[Record], None] | None = None,
    engine: Engine | None = None,
) -> Report:
    """Classify every image of `dataset` (the pipelined batch, in order) and score it.

    SIGINT/SIGTERM stop the run after the images in flight; the report then covers
    what was read and says which signal stopped it (`signal`, `not_run`).
    """
    grouping = classifier.grouping(options.groups) if options.groups is not None else None
    if grouping is not None and classifier.multi_label:
        raise UsageError("groups are scored for single-label models only; this model's scores are independent")
    tally = tally_for(classifier, options.threshold, grouping)
    selective = Selective()
    classifier.model.runner  # noqa: B018 - wait for the session, so images/s leaves loading out
    engine = engine or Engine()  # --engine ray: a Ray Data job, the same records
    with engine, stop_on_signals() as stop:
        start = time.perf_counter()
        top = len(classifier.labels) if classifier.multi_label else TOP
        run = RunOptions(top, getattr(tally, "threshold", 0.0), options.batch_size, options.workers, options.debug,
                         grouping, options.abstain_below)  # fmt: skip
        records = engine.classify(classifier, [sample.path for sample in dataset.samples], run, stop.event)
        read = 0
        for sample, record in zip(dataset.samples, records, strict=False):  # a stop ends the records early
            selective.add(record, tally.add(sample, record))
            read += 1
            if on_record is not None:
                on_record(record)
        seconds = time.perf_counter() - start
    return Report(
        model=classifier.name,
        preset=classifier.preset,
        dataset=dataset.root,
        layout=dataset.layout,
        model_classes=len(classifier.labels),
        dataset_classes=dataset.classes,
        images=len(dataset.samples),
        seconds=seconds,
        images_per_s=read / seconds if seconds > 0 else 0.0,
        mapping=dataset.mapping,
        ignored=dataset.ignored,
        signal=stop.signal,
        # Where the model ran: a distributed engine's actors (the driver's own copy runs on the CPU).
        device=getattr(engine, "device", None) or str(classifier.model.device),
        compute_precision=getattr(engine, "precision", None) or classifier.model.device.precision,
        groups=grouping.source if grouping is not None else None,
        **tally.fields(options.worst, options.confusions),
        **selective.fields(options.abstain_below),
    )
