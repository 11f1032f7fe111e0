"""Quantise a float32 classifier to int8 with calibration photos, check it, and write it with its metadata.

    import imgclass
    from imgclass.tasks.quantize import QuantizeOptions, quantize
    result = quantize("resnet50", "calibration_photos/", output=Path("resnet50-int8.onnx"),
                      evaluate_on="val/", options=QuantizeOptions(max_drop=1.0))
    print(result.comparison.drop)

How (ONNX Runtime's static quantisation, as its documentation recommends for CNNs):
- pre-processing: opset raised to 13 where it is lower (per-channel DequantizeLinear needs it),
  then `quant_pre_process`: ONNX Runtime's basic graph optimisations (Conv+BatchNorm folding,
  constant folding) and ONNX shape inference. Symbolic shape inference (sympy) is skipped: it
  is for transformer graphs; a CNN's shapes come out of ONNX shape inference.
- QDQ format, int8 weights per output channel (symmetric), uint8 activations per tensor
  (asymmetric). The classifier head (the last Gemm/MatMul and the ops after it up to the
  output) stays float: it costs well under 1% of a CNN's time, and quantising the logits to
  256 levels would make close classes tie and the probabilities coarse.
- calibration tensors are made by imgclass's own preprocessing for the model (the preset
  chosen for it, or the flags given), so the ranges are the ones predict will see.
- calibration method Entropy by default (ranges that minimise the KL divergence between each
  activation's float and 8-bit histograms): on the one real network here (the zoo's MobileNet v2
  rebuilt as float32, 105 calibration crops, 210 held-out crops of other photos) int8 kept the
  fp32 top-1 on 83.8% of the held-out images with Entropy, 76.2% with Percentile and 74.8% with
  MinMax (97.8 / 94.4 / 90.0% of those fp32 was confident about), in 3.5x MinMax's time
  (benchmarks/quantize_accuracy.py). Ranges are collected one batch at a time, so memory
  does not grow with the number of images.

Nothing here prints or exits; a drop in accuracy over the limit raises `AccuracyDrop` (exit 3)
and nothing is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclass.errors import ModelError, UsageError, describe_os_error
from imgclass.graph import metadata as props

if TYPE_CHECKING:
    import numpy as np

    from imgclass.classifier import Classifier, LoadOptions
    from imgclass.tasks.evaluate import Report

# entropy (default): the range that keeps each activation's 8-bit histogram closest to its float one (KL).
# percentile: the 99.999th percentile of the values seen. minmax: the smallest and largest value seen (ORT's default; fastest).
METHODS = ("minmax", "entropy", "percentile")
_ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# Ops that only exist in an already quantised graph.
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
                 "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid",
                 "QLinearSoftmax", "QLinearLeakyRelu", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}  # fmt: skip
_HEAD_START = ("Gemm", "MatMul")
DEFAULT_LIMIT = 500  # calibration images read at most (ORT's guidance: a few hundred representative samples)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = "entropy"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: for CPUs without VNNI, where u8s8 products can saturate
    batch_size: int = 8  # calibration batch (a fixed batch axis wins)
    limit: int = DEFAULT_LIMIT  # calibration images used at most (the first N in name order)
    max_drop: float = 1.0  # points of top-1 the int8 model may lose on --evaluate DIR
    force: bool = False  # replace a cache name already in use


@dataclass(frozen=True)
class Side:
    """One model's figures in the comparison."""

    precision: str  # "fp32" or "int8"
    top1: float | None
    top5: float | None
    classified: int
    failed: int
    model_only_images_per_s: float
    recall: float | None = None  # multi-label models
    multi_precision: float | None = None


@dataclass(frozen=True)
class Comparison:
    dataset: str
    images: int
    fp32: Side
    int8: Side
    drop: float  # points of top-1 (multi-label: of precision or recall, whichever fell more)
    max_drop: float

    @property
    def accepted(self) -> bool:
        return self.drop <= self.max_drop + 1e-9

    @property
    def speedup(self) -> float:
        return self.int8.model_only_images_per_s / self.fp32.model_only_images_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "accepted": self.accepted, "speedup": self.speedup}


class AccuracyDrop(ModelError):
    """The int8 model lost more accuracy than --max-drop allows; nothing was written (exit 3)."""

    def __init__(self, message: str, comparison: Comparison):
        super().__init__(message)
        self.comparison = comparison


@dataclass
class QuantizeResult:
    source: str
    output: Path | None
    name: str | None
    provenance: dict[str, Any]
    comparison: Comparison | None
    skipped: list[tuple[str, str]]  # calibration images that could not be read: (path, reason)
    size_fp32: int = 0
    size_int8: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output": str(self.output) if self.output else None,
            "name": self.name,
            "size_fp32": self.size_fp32,
            "size_int8": self.size_int8,
            "provenance": self.provenance,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "skipped": [{"path": p, "error": e} for p, e in self.skipped],
        }


def precision_of(model) -> str:
    """ "int8" for a graph with quantised ops, "fp16" for a float16 input, else "fp32" (a parsed ONNX model)."""
    ops = {node.op_type for node in model.graph.node}
    if ops & QUANTIZED_OPS:
        return "int8"
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    return "fp16" if inputs and inputs[0].type.tensor_type.elem_type == 10 else "fp32"


def _check_targets(output: Path | None, name: str | None, force: bool) -> None:
    """Fail before the slow part (and before a download): a place to write to, a free cache name."""
    from imgclass.store import cache, catalog

    if output is None and name is None:
        raise UsageError("give «output» OUT.onnx, «name» NAME, or both")
    if output is not None:
        if output.is_dir():
            raise UsageError(
                f"«output» {output}: is a directory; give a file name such as {output / 'model-int8.onnx'}"
            )
        folder = output.resolve().parent
        if not folder.is_dir():
            raise UsageError(f"«output» {output}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            from imgclass.errors import OutputError

            raise OutputError(f"«output» {output}: folder {folder} is not writable")
    if name is not None:
        cache.check_name(name)
        if catalog.find(name) is not None:
            raise UsageError(f"«name» {name}: is a catalog model's name; give the int8 model a name of its own")
        if not force and name in cache.registry():
            raise UsageError(f"«name» {name}: already in the cache; pass «force» to replace it")


def calibration_paths(folder: str | os.PathLike, limit: int) -> list[str]:
    """The images under `folder` (recursively), in name order, at most `limit` of them."""
    from imgclass.data.sources import expand

    path = Path(folder)
    if not path.exists():
        raise UsageError(f"«calibrate» {folder}: no such folder")
    found = sorted(expand([os.fspath(path)], recursive=True)) if path.is_dir() else [os.fspath(path)]
    if not found:
        raise UsageError(f"«calibrate» {folder}: no images in it (jpg, png, webp, ...)")
    return found[:limit]


def _digest(paths: Sequence[str]) -> str:
    """Which images calibrated the model: sha256 over the sorted sha256 of each file's bytes."""
    from imgclass.store.cache import sha256_file

    digests = sorted(sha256_file(Path(p)) for p in paths)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


class Calibration(Sequence):
    """The calibration batches, decoded and preprocessed when ONNX Runtime asks for each one.

    Memory is one batch of tensors whatever the number of images (holding every tensor took
    1.35 GB at 1,000 images). A batch is the next `size` paths, less those that cannot be read;
    a fixed batch axis gets a short batch filled up with its own samples again. `used` and
    `skipped` fill in as batches are read.
    """

    def __init__(self, classifier: Classifier, paths: Sequence[str], size: int, fixed: bool,
                 progress: Progress | None = None):  # fmt: skip
        self.classifier, self.paths, self.size, self.fixed, self.progress = (
            classifier,
            list(paths),
            size,
            fixed,
            progress,
        )
        self.chunks = [self.paths[i : i + size] for i in range(0, len(self.paths), size)]
        self._used: set[str] = set()
        self._skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index):
        import numpy as np

        if not isinstance(index, int):
            raise TypeError("calibration batches are read one at a time")
        chunk = self.chunks[index]  # IndexError past the end: iteration stops
        samples = []
        for path in chunk:
            sample = self._one(path)
            if sample is not None:
                samples.append(sample)
        if self.progress:
            read = sum(len(c) for c in self.chunks[: index + 1])
            self.progress("reading calibration images", read, len(self.paths))
        if not samples:
            return None
        if self.fixed and len(samples) < self.size:
            samples += [samples[i % len(samples)] for i in range(self.size - len(samples))]
        return np.stack(samples)

    def _one(self, path: str):
        from imgclass.data.images import load_rgb
        from imgclass.errors import InputError

        try:
            sample = self.classifier.model.transform(load_rgb(path, self.classifier.decode))
        except InputError as err:
            self._skipped[path] = str(err)
            return None
        self._used.add(path)
        return sample

    def check(self) -> None:
        """Before calibrating: at least one image can be read (else UsageError naming the first failure)."""
        for index in range(len(self)):
            if self[index] is not None:
                return
        first = self.paths[0]
        raise UsageError(f"none of the {len(self.paths)} calibration images could be read "
                         f"(first: {self._skipped.get(first, first)})")  # fmt: skip

    @property
    def used(self) -> list[str]:
        return [p for p in self.paths if p in self._used]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(p, self._skipped[p]) for p in self.paths if p in self._skipped and p not in self._used]


def _reader(input_name: str, batches: Sequence, progress: Progress | None):
    """An ONNX Runtime CalibrationDataReader over the batches (read when asked for); strided so ranges
    merge batch by batch. A batch of which no image could be read is passed over."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start, self.end, self.next, self.done = 0, len(batches), 0, 0

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.start, self.end, self.next = start_index, end_index, start_index

        def get_next(self) -> dict[str, np.ndarray] | None:
            while self.next < min(self.end, len(batches)):
                batch = batches[self.next]
                self.next += 1
                self.done += 1
                if progress:
                    progress("calibrating", self.done, len(batches))
                if batch is not None:
                    return {input_name: batch}
            return None

    return Reader()


def _prepare(source: Path, folder: Path) -> Path:
    """Opset 13 or later, then ONNX Runtime's quantisation pre-processing; every node named."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(os.fspath(source))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:
        try:
            model = onnx.version_converter.convert_version(model, 13)
        except Exception as err:  # noqa: BLE001 - the converter raises several types
            raise ModelError(
                f"{source}: cannot raise opset {opset} to 13 for per-channel quantisation: {_first(err)}"
            ) from None
    prepared = folder / "prepared.onnx"
    try:
        quant_pre_process(model, os.fspath(prepared), skip_symbolic_shape=True)
    except Exception as err:  # noqa: BLE001 - ORT and onnx raise several private types
        raise ModelError(f"{source}: ONNX Runtime's quantisation pre-processing failed: {_first(err)}") from None
    model = onnx.load(os.fspath(prepared))
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"imgclass_{node.op_type}_{index}"
    onnx.save(model, os.fspath(prepared))
    return prepared


def head_nodes(model, output_name: str) -> list[str]:
    """The nodes from the classifier's last Gemm/MatMul to `output_name` (kept float); [] when there is none."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    name = output_name
    while name in producers and len(names) < 16:
        node = producers[name]
        names.append(node.name)
        if node.op_type in _HEAD_START:
            return names
        name = node.input[0] if node.input else ""
    return []


def _first(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def _quantize_graph(prepared: Path, dest: Path, reader, exclude: list[str], options: QuantizeOptions) -> None:
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print(); stdout is for data
            _static(prepared, dest, reader, exclude, options)
    except (ModelError, UsageError):
        raise
    except Exception as err:  # noqa: BLE001 - ORT raises several private types
        raise ModelError(f"{prepared.name}: ONNX Runtime could not quantise the model: {_first(err)}") from None


def _static(prepared: Path, dest: Path, reader, exclude: list[str], options: QuantizeOptions) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        os.fspath(prepared),
        os.fspath(dest),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=options.per_channel,
        reduce_range=options.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, _ORT_METHODS[options.method]),
        nodes_to_exclude=exclude,
        extra_options={"CalibStridedMinMax": 1, "ActivationSymmetric": False, "WeightSymmetric": True},
    )


def preset_metadata(classifier: Classifier) -> dict[str, str]:
    """The preset the model was calibrated with, as ONNX metadata `predict` reads back with no flags."""
    from imgclass.store import carried

    return carried.preprocessing(classifier.model)


def _write_metadata(path: Path, values: dict[str, str], drop: Sequence[str] = ()) -> None:
    props.write_file(path, values, drop, producer=_version())


def _version() -> str:
    from imgclass._util.version import __version__

    return __version__


def provenance(source: str, sha256: str, used: Sequence[str], options: QuantizeOptions, head: list[str]) -> dict:
    import onnxruntime as ort

    return {
        "source": {"model": source, "sha256": sha256},
        "quantizer": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": "int8, per channel, symmetric" if options.per_channel else "int8, per tensor, symmetric",
        "activations": "uint8, per tensor, asymmetric",
        "reduce_range": options.reduce_range,
        "method": options.method,
        "float_nodes": head,
        "calibration": {
            "images": len(used),
            "sha256": _digest(used),
            "sha256_of": "sorted sha256 of each image file, one per line",
        },  # fmt: skip
        "onnxruntime": ort.__version__,
        "imgclass": _version(),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }


def _side(precision: str, classifier: Classifier, report: Report) -> Side:
    from imgclass.inference.pipeline import default_batch_size
    from imgclass.tasks.bench import model_only

    model = classifier.model
    speed = model_only(model, default_batch_size(model), max(32, 4 * default_batch_size(model)))
    return Side(precision, report.top1, report.top5, report.classified, report.failed, speed,
                report.recall, report.precision)  # fmt: skip


def compare(fp32: Classifier, int8: Classifier, dataset: str | os.PathLike, max_drop: float,
            progress: Progress | None = None) -> Comparison:  # fmt: skip
    """top-1/top-5 of both models on a labelled folder or list, and their model-only speed."""
    from imgclass.tasks.evaluate import evaluate, load_dataset

    sides = []
    for precision, classifier in (("fp32", fp32), ("int8", int8)):
        data = load_dataset(dataset, classifier)
        count = {"done": 0}

        def tick(record, precision=precision, total=len(data.samples), count=count) -> None:
            count["done"] += 1
            if progress:
                progress(f"evaluating {precision}", count["done"], total)

        report = evaluate(classifier, data, on_record=tick)
        if report.signal is not None:
            raise KeyboardInterrupt
        if not report.classified:
            raise UsageError(f"«evaluate» {dataset}: none of its {report.images} images could be classified")
        sides.append(_side(precision, classifier, report))
    return Comparison(os.fspath(dataset), len(data.samples), sides[0], sides[1], _drop(sides[0], sides[1]), max_drop)


def _drop(fp32: Side, int8: Side) -> float:
    if fp32.top1 is not None and int8.top1 is not None:
        return round((fp32.top1 - int8.top1) * 100, 6)
    pairs = [(fp32.recall, int8.recall), (fp32.multi_precision, int8.multi_precision)]
    return round(max(((a - b) * 100 for a, b in pairs if a is not None and b is not None), default=0.0), 6)


def _check_source(classifier: Classifier, output: Path | None) -> None:
    from imgclass.graph.reader import read_graph

    if output is not None and output.exists() and output.resolve() == classifier.model.path.resolve():
        raise UsageError(f"«output» {output}: is the model being quantised; give another file name")
    graph = read_graph(classifier.model.path)
    if precision_of(graph) == "int8":
        raise ModelError(f"{classifier.model.path}: is already quantised (it has QuantizeLinear/QLinear ops); "
                         "quantise the float32 model it came from")  # fmt: skip
    if classifier.model.signature.dtype not in ("float32", "uint8"):
        raise ModelError(f"{classifier.model.path}: has a {classifier.model.signature.dtype} input; "
                         "quantisation needs a float32 model")  # fmt: skip


def quantize(
    model: str | os.PathLike,
    calibrate: str | os.PathLike,
    output: Path | None = None,
    name: str | None = None,
    *,
    load_options: LoadOptions | None = None,
    options: QuantizeOptions = QuantizeOptions(),
    evaluate_on: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantise `model` with the images in `calibrate`; write `output` and/or cache it as `name`.

    With `evaluate_on` (a labelled folder or list, as `evaluate` reads it), fp32 and int8 are
    compared and `AccuracyDrop` is raised, with nothing written, when top-1 falls by more than
    `options.max_drop` points.
    """
    import imgclass
    from imgclass.classifier import LoadOptions

    if options.method not in METHODS:
        raise UsageError(f"«method» {options.method!r}: use one of {', '.join(METHODS)}")
    opts = load_options or LoadOptions()
    paths = calibration_paths(calibrate, options.limit)
    _check_targets(output, name, options.force)
    fp32 = imgclass.load(model, options=opts)
    _check_source(fp32, output)
    if evaluate_on is not None:
        from imgclass.tasks.evaluate import load_dataset

        load_dataset(evaluate_on, fp32)  # a folder that cannot be scored is refused before calibrating
    with tempfile.TemporaryDirectory(prefix="imgclass-quantize-") as tmp:
        candidate, result = _build(fp32, paths, Path(tmp), options, progress)
        result.source = os.fspath(model)
        if evaluate_on is not None:
            int8 = imgclass.load(candidate, options=_plain(opts))
            result.comparison = compare(fp32, int8, evaluate_on, options.max_drop, progress)
            result.provenance["evaluation"] = _evaluation(result.comparison)
            _write_metadata(candidate, {props.PROVENANCE: json.dumps(result.provenance)})
            if not result.comparison.accepted:
                c = result.comparison
                raise AccuracyDrop(f"int8 top-1 fell {c.drop:.2f} points on {c.dataset} (more than «max-drop» "
                                   f"{c.max_drop:g}); nothing written", c)  # fmt: skip
        result.size_int8 = candidate.stat().st_size
        _commit(candidate, output, name, options.force, result)
    return result


def _plain(opts: LoadOptions) -> LoadOptions:
    """How to load the int8 model for the comparison: from its own metadata, as `predict` will."""
    from imgclass.classifier import LoadOptions

    return LoadOptions(device=opts.device, precision=opts.precision, threads=opts.threads, offline=opts.offline, exact_decode=opts.exact_decode,
                       max_pixels=opts.max_pixels, allow_truncated=opts.allow_truncated)  # fmt: skip


def _evaluation(c: Comparison) -> dict[str, Any]:
    return {"images": c.images, "top1_fp32": c.fp32.top1, "top1_int8": c.int8.top1, "drop_points": c.drop,
            "max_drop": c.max_drop}  # fmt: skip


def _build(fp32: Classifier, paths: list[str], tmp: Path, options: QuantizeOptions,
           progress: Progress | None) -> tuple[Path, QuantizeResult]:  # fmt: skip
    """Calibrate and quantise into `tmp`; the candidate file carries every metadata key."""
    import onnx

    from imgclass.store import carried
    from imgclass.store import index as modelindex

    model = fp32.model
    fixed = model.signature.batch is not None
    batches = Calibration(fp32, paths, model.signature.batch or options.batch_size, fixed, progress)
    batches.check()
    prepared = _prepare(model.path, tmp)
    head = head_nodes(onnx.load(os.fspath(prepared), load_external_data=False), model.signature.output_name)
    candidate = tmp / "int8.onnx"
    _quantize_graph(prepared, candidate, _reader(model.signature.input_name, batches, progress), head, options)
    sha256 = modelindex.sha256_of(model.path)
    prov = provenance(model.name, sha256, batches.used, options, head)
    _write_metadata(candidate, {**carried.carried(fp32.model), props.PROVENANCE: json.dumps(prov)}, props.CARRIED)
    result = QuantizeResult(model.name, None, None, prov, None, batches.skipped, model.path.stat().st_size)
    return candidate, result


def _commit(candidate: Path, output: Path | None, name: str | None, force: bool, result: QuantizeResult) -> None:
    """Write to --output through a temporary file renamed into place; --name imports into the cache."""
    from imgclass.errors import OutputError
    from imgclass.store import registry as store

    if output is not None:
        from imgclass._util.fs import copy_atomically

        try:
            copy_atomically(candidate, output)
        except OSError as err:
            raise OutputError(f"{output}: {describe_os_error(err)}") from None
        result.output = output
    if name is not None:
        from imgclass.store import cache

        registered = store.import_file(candidate, name, force)
        if isinstance(registered, cache.Registered):  # say where it came from, not which temporary file
            sha = result.provenance["source"]["sha256"]
            cache.register(dataclasses.replace(registered, origin=f"int8 of {result.source} (sha256 {sha[:12]}...)"))
        result.name = name


def model_precision(path: Path, name: str) -> str:
    """ "int8" or "fp32" for a model file: its catalog entry, imgclass's provenance, else its ops."""
    from imgclass.graph.reader import read_graph
    from imgclass.store import catalog
    from imgclass.store import index as modelindex

    entry = catalog.find(name)
    if entry is not None:
        return entry.precision
    if _quantized_by_imgclass(modelindex.signature_of(path).metadata) is not None:
        return "int8"
    return precision_of(read_graph(path))


def _quantized_by_imgclass(metadata: dict[str, str]) -> dict[str, Any] | None:
    """This module's provenance record (not another tool's, such as `imgclass train`'s), or None."""
    try:
        record = json.loads(metadata.get(props.PROVENANCE) or "{}")
    except ValueError:
        return None
    return record if isinstance(record, dict) and "quantizer" in record else None


def counterpart(path: Path, name: str) -> str | None:
    """The other precision of the same model when it is on this machine: int8 -> its fp32 source, fp32 -> an int8.

    Catalog pairs (`quantized_from`) count when both files are cached; a model quantised by
    imgclass names its source by sha256, found in the catalog, the cache, or at its recorded path.
    """
    from imgclass.store import cache, catalog
    from imgclass.store import index as modelindex
    from imgclass.store import registry as store

    entry = catalog.find(name)
    if entry is not None:
        if entry.quantized_from:
            source = catalog.find(entry.quantized_from)
            return source.name if source and store.is_cached(source) else None
        quantized = [e for e in catalog.entries() if e.quantized_from == entry.name and store.is_cached(e)]
        return quantized[0].name if quantized else None
    record = _quantized_by_imgclass(modelindex.signature_of(path).metadata)
    try:
        source = (record or {})["source"]
        sha256, recorded = str(source["sha256"]), str(source["model"])
    except (KeyError, TypeError):
        return None
    known = catalog.by_sha256(sha256)
    if known is not None and store.is_cached(known):
        return known.name
    for registered in cache.registry().values():
        if registered.sha256 == sha256 and registered.path.is_file():
            return registered.name
    where = Path(recorded)
    if where.is_file() and modelindex.sha256_of(where) == sha256:
        return recorded
    return None
