"""Where the network looked: heat maps for one class, mapped back onto the original photo.

Two methods, one result (`Explanation`):

- `cam`: the class activation map of Zhou et al. (2016) for networks that end in
  global average pooling and one linear layer: CAM_c(x, y) = sum_k w_ck A_k(x, y),
  from one forward pass of the graph with its last feature map A exposed
  (`imgclass.graph.surgery`). Exact: its spatial mean plus the bias b_c is the logit.
- `occlusion`: occlusion sensitivity (Zeiler and Fergus, 2014) for any graph: a
  patch of the preset's mean colour slides over the model's input, in batches,
  and the map is how much the class's probability drops with each part hidden.

Either map lives on the model's input grid (the crop); `Explanation.on_original`
puts it back through the crop and resize onto the photo as it is shown (EXIF
orientation applied), NaN outside what the model saw, and `overlay` colours it
with a perceptual colour map from `cmap` (the `explain` extra) over the photo;
what lies outside the crop is shown dimmed, without colour.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclass._util.text import printable
from imgclass.data.transforms import Transform, crop_offsets
from imgclass.errors import InputError, MissingExtra, ModelError, OutputError, UsageError, describe_os_error
from imgclass.records import Record

if TYPE_CHECKING:
    from PIL import Image

    from imgclass.graph.runtime import Device
    from imgclass.store.loader import LoadedModel

METHODS = ("cam", "occlusion")
COLORMAP = "inferno"  # perceptually uniform, dark to bright: reads as cold to hot, also in grey
OUTSIDE = 0.35  # brightness kept outside the crop (what the model did not see)
OPACITY = 0.55  # of the colour over the photo inside the crop
# The photo an overlay is drawn on is at most this many pixels a side: building it takes tens
# of bytes per pixel, so memory stays the same for a 1 MP photo and an 80 MP one.
OVERLAY_MAX_SIDE = 2048
STEM_MAX_BYTES = 160  # of an overlay's file name, before ".<method>[-n].png": under every file system's 255

Progress = Callable[[int, int], None]  # (done, total) occlusion batches


@dataclass
class Explanation:
    """A heat map for one class of one image, with what is needed to put it on the photo."""

    record: Record  # the image's top-k, as predict gives it
    method: str  # cam, occlusion
    index: int  # the class explained (label index, background class not counted)
    label: str
    probability: float
    map: np.ndarray  # float32, on the model's input grid: CAM's feature map cells, or the crop's pixels
    box: tuple[float, float, float, float]  # the crop's (x0, y0, x1, y1) in the original image, in pixels
    image: Image.Image = field(repr=False)  # the photo as shown (EXIF orientation applied)

    def on_original(self) -> np.ndarray:
        """(height, width) float32 on the photo's pixels, bilinear; NaN outside the crop."""
        return to_original(self.map, self.box, self.image.width, self.image.height)

    def overlay(self, colormap: str = COLORMAP) -> Image.Image:
        """The photo with the map coloured over the crop (min to max of the map), the rest dimmed."""
        return overlay(self.image, self.on_original(), colormap)


def crop_box(transform: Transform, width: int, height: int) -> tuple[float, float, float, float]:
    """The region of a width x height image that the model's input shows, in image pixels (continuous edges)."""
    p = transform.preset
    if p.resize == "central-fraction":
        top, left = int((height - height * p.crop_pct) / 2), int((width - width * p.crop_pct) / 2)
        if p.crop_pct >= 1.0:
            top = left = 0
        return float(left), float(top), float(width - left), float(height - top)
    new_w, new_h = transform.resized_size(width, height)
    pad_h, pad_w = max(transform.height - new_h, 0), max(transform.width - new_w, 0)
    top, left = crop_offsets(new_h + pad_h, new_w + pad_w, transform.height, transform.width, p.crop_offset)
    top, left = top - pad_h // 2, left - pad_w // 2  # in the resized image, before padding
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + transform.width) * sx, (top + transform.height) * sy


def _axis(n_out: int, start: float, stop: float, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For output pixels 0..n_out-1: the two map cells to blend, the weight of the second, and which are inside."""
    centres = np.arange(n_out) + 0.5
    inside = (centres >= start) & (centres < stop)
    u = (centres - start) / (stop - start) * cells - 0.5  # in cell units, cell centres at integers
    u = np.clip(u, 0, cells - 1)
    i0 = np.floor(u).astype(np.int64)
    i1 = np.minimum(i0 + 1, cells - 1)
    return i0, i1, (u - i0).astype(np.float32), inside


def to_original(grid: np.ndarray, box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """A map that covers `box` evenly, resampled (bilinear) onto a width x height image; NaN outside the box."""
    x0, y0, x1, y1 = box
    m = np.asarray(grid, dtype=np.float32)
    r0, r1, wy, rows_in = _axis(height, y0, y1, m.shape[0])
    c0, c1, wx, cols_in = _axis(width, x0, x1, m.shape[1])
    rows = m[r0] * (1 - wy)[:, None] + m[r1] * wy[:, None]
    out = rows[:, c0] * (1 - wx)[None, :] + rows[:, c1] * wx[None, :]
    out[~rows_in, :] = np.nan
    out[:, ~cols_in] = np.nan
    return out


def colour_table(name: str = COLORMAP) -> np.ndarray:
    """256 RGB colours (uint8) of a named perceptual colour map from `cmap` (the `explain` extra)."""
    try:
        from cmap import Colormap
    except ImportError:
        raise MissingExtra("explain", "colouring a heat map") from None
    try:
        table = Colormap(name).lut(256)
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"«colormap» {name!r}: not a colour map cmap knows (try inferno, magma, viridis, turbo)"
        ) from None
    return np.clip(np.rint(np.asarray(table)[:, :3] * 255), 0, 255).astype(np.uint8)


def overlay(image: Image.Image, heat: np.ndarray, colormap: str = COLORMAP) -> Image.Image:
    """`heat` (NaN outside the crop) coloured over `image`; outside the crop the photo is dimmed."""
    from PIL import Image

    table = colour_table(colormap)
    photo = np.asarray(image.convert("RGB"), dtype=np.float32)
    inside = ~np.isnan(heat)
    out = photo * OUTSIDE
    if inside.any():
        values = heat[inside]
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        colours = table[np.clip(np.rint(scaled * 255), 0, 255).astype(np.int64)].astype(np.float32)
        out[inside] = photo[inside] * (1 - OPACITY) + colours * OPACITY
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def resolve_class(model: LoadedModel, wanted: int | str | None, record: Record) -> int:
    """The label index to explain: the top-1 class (None), an index, or a label name (case-insensitive)."""
    names = model.labels.names
    if wanted is None:
        if not record.predictions:  # this image's problem: the others are still explained
            raise InputError(f"{record.path}: no class to explain (none at or above the threshold); give a class")
        first = record.predictions[0]
        return first.index if first.index is not None else first.members[0].index if first.members else 0
    if isinstance(wanted, str) and wanted.strip().lstrip("-").isdigit():
        wanted = int(wanted)
    if isinstance(wanted, int):
        if not 0 <= wanted < len(names):
            raise UsageError(f"«class» {wanted}: the model has classes 0 to {len(names) - 1}")
        return wanted
    folded = [n.casefold() for n in names]
    key = wanted.strip().casefold()
    if key in folded:
        return folded.index(key)
    near = [n for n in names if key in n.casefold()][:5]
    hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise UsageError(f"«class» {wanted!r}: no such label{hint}")


def occlusion_grid(transform: Transform, patch: int | None, stride: int | None) -> list[tuple[int, int, int, int]]:
    """Top-left corners and sizes of the occluding patches that cover the input (a patch of ~1/7 of it by default)."""
    size = patch or max(1, round(min(transform.height, transform.width) / 7))
    step = stride or max(1, size // 2)
    if size < 1 or step < 1:
        raise UsageError("«patch» and «stride» must be at least 1")

    def starts(n: int) -> list[int]:
        last = max(n - size, 0)
        values = list(range(0, last + 1, step))
        return values if values[-1] == last else [*values, last]

    return [(y, x, min(size, transform.height), min(size, transform.width))
            for y in starts(transform.height) for x in starts(transform.width)]  # fmt: skip


def occlusion_map(model: LoadedModel, img: Image.Image, index: int, *, patch: int | None = None,
                  stride: int | None = None, batch_size: int = 16, progress: Progress | None = None) -> np.ndarray:  # fmt: skip
    """(height, width) on the input crop: the class's mean probability drop when each pixel is hidden."""
    transform = model.transform
    pixels = np.asarray(transform.geometry(img), dtype=np.float32)
    grey = np.clip(np.asarray(transform.preset.mean, np.float32) / np.float32(transform.preset.scale), 0, 255)
    column = model.offset + index

    def probability(samples: list[np.ndarray]) -> np.ndarray:
        return model.activation.probabilities(model.runner.run(np.stack(samples)))[:, column]

    base = probability([transform.finish(_as_input(pixels, transform))])[0]
    patches = occlusion_grid(transform, patch, stride)
    drop = np.zeros(pixels.shape[:2], np.float64)
    count = np.zeros(pixels.shape[:2], np.float64)
    batches = range(0, len(patches), batch_size)
    for done, start in enumerate(batches, start=1):
        chunk = patches[start : start + batch_size]
        samples = []
        for y, x, h, w in chunk:
            hidden = pixels.copy()
            hidden[y : y + h, x : x + w] = grey
            samples.append(transform.finish(_as_input(hidden, transform)))
        for (y, x, h, w), p in zip(chunk, probability(samples), strict=True):
            drop[y : y + h, x : x + w] += base - p
            count[y : y + h, x : x + w] += 1
        if progress is not None:
            progress(done, len(batches))
    return (drop / np.maximum(count, 1)).astype(np.float32)


def _as_input(pixels: np.ndarray, transform: Transform) -> np.ndarray:
    """Float pixels back to what `finish` expects: uint8 unless the preset's geometry gives floats."""
    if transform.preset.resize == "central-fraction":
        return pixels
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


FEATURES = "imgclass/cam_features"  # the feature map, exposed as an extra output of the graph


@functools.lru_cache(maxsize=4)
def _cam_session(path: str, identity: tuple[int, int], name: str, device: Device, threads: int | None):
    """The classifier with its last feature map as a second output, its session, and its head (from surgery)."""
    from imgclass.graph import surgery
    from imgclass.graph.runtime import create_session

    graph = surgery.load_model_proto(Path(path))
    try:
        head = surgery.find_head(graph, name)
    except ModelError as err:
        why = str(err).removeprefix(f"{name}: ").removeprefix("no bottleneck to train on: ")
        raise ModelError(f"{name}: no class activation map: the network does not end in global average pooling "
                         f"and one linear layer ({why}); use «method» occlusion") from None  # fmt: skip
    exposed = surgery.expose(graph, {FEATURES: head.feature_map})
    session, _ = create_session(exposed.SerializeToString(), device, threads, name=Path(path), spinning=False)
    return session, head


def _cam_device(model: LoadedModel) -> Device:
    """The loaded model's own device and precision; `auto` as the providers in use show it."""
    from imgclass.graph.runtime import CUDA, Device

    device = model.device
    assert isinstance(device, Device)
    if device.kind == "auto":
        return Device("cuda") if CUDA in model.providers else Device("cpu")
    return device


def cam_outputs(
    model: LoadedModel, sample: np.ndarray, threads: int | None = None
) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
    """One forward pass for CAM: the classifier's outputs, and label index -> CAM on the feature map's grid.

    CAM_c(y, x) = sum_k w_ck A_k(y, x), with w the linear layer's weights (dequantised for int8
    exports) and A the feature map the global average pool reads, so mean(CAM_c) + b_c = logit_c.
    """
    info = os.stat(model.path)  # a file replaced since is read again
    session, head = _cam_session(str(model.path), (info.st_mtime_ns, info.st_size), model.name,
                                 _cam_device(model), threads)  # fmt: skip
    sig = model.signature
    outputs, features = session.run([sig.output_name, FEATURES], {sig.input_name: sample[None]})
    if features.ndim != 4:
        raise ModelError(f"{model.name}: the pooled feature map has shape {list(features.shape)}, not [N, C, H, W]")
    fmap = features[0] if head.layout == "NCHW" else np.moveaxis(features[0], -1, 0)  # (channels, h, w)
    if fmap.shape[0] != head.dim:
        raise ModelError(f"{model.name}: the feature map has {fmap.shape[0]} channels, the classifier reads {head.dim}")

    def class_map(index: int) -> np.ndarray:
        weights = head.weight[model.offset + index].astype(np.float64)
        return np.tensordot(weights, fmap.astype(np.float64), axes=(0, 0)).astype(np.float32)

    return outputs, class_map


def explain(classifier, image, class_: int | str | None = None, *, method: str = "cam", top: int = 5,
            threshold: float | None = None, patch: int | None = None, stride: int | None = None,
            batch_size: int = 16, progress: Progress | None = None, groups: Any = None,
            abstain_below: float | None = None) -> Explanation:  # fmt: skip
    """`Classifier.explain`: the heat map of `class_` (default: the top-1 class) for one image.

    With `groups`, the record ranks groups and the default class is the top group's top member.

    The image is decoded as `predict` decodes it and seen once, through the preset's centre
    crop (test-time augmentation does not apply). The photo the map is put on (`.image`) is at
    most OVERLAY_MAX_SIDE pixels a side; `.box` is on that photo. InputError when the model's
    outputs for the image are not finite, or when nothing is at or above the threshold.
    """
    from imgclass.inference.pipeline import NON_FINITE

    if method not in METHODS:
        raise UsageError(f"«method» {method!r}: use {', '.join(METHODS)}")
    if len(classifier.members) > 1:
        raise UsageError("explain takes one «model»: an ensemble has no single map to show")
    model: LoadedModel = classifier.model
    path, img = classifier._open(image)
    sample = model.transform(img)
    if method == "cam":
        outputs, class_map = cam_outputs(model, sample, classifier.options.threads)
    else:
        outputs = model.runner.run(sample[None])
    probs = model.activation.probabilities(outputs)[:, model.offset :]
    if not np.isfinite(probs).all():
        raise InputError(f"{path}: {NON_FINITE}")
    ranked = classifier.ranker(top, threshold, groups, abstain_below).rank_probabilities(probs)[0]
    record = Record(path, model.name, model.preset.preset.name, list(ranked), None, model.multi_label,
                    abstained=ranked.abstained)  # fmt: skip
    index = resolve_class(model, class_, record)
    if method == "cam":
        grid = class_map(index)
    else:
        grid = occlusion_map(model, img, index, patch=patch, stride=stride, batch_size=batch_size, progress=progress)
    if not np.isfinite(grid).all():
        raise InputError(f"{path}: the heat map is not finite (NaN or infinity) for this image")
    shown, box = _for_display(img, model.transform)
    return Explanation(record, method, index, model.labels.names[index], float(probs[0, index]), grid, box, shown)


def _for_display(img: Image.Image, transform: Transform) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The photo at most OVERLAY_MAX_SIDE a side (a draft decode's at its full size's scale), and the crop on it."""
    from PIL import Image

    from imgclass.data.images import DRAFT_INFO

    full_w, full_h, _ = img.info.get(DRAFT_INFO) or (img.width, img.height, None)
    box = crop_box(transform, full_w, full_h)
    scale = min(1.0, OVERLAY_MAX_SIDE / max(full_w, full_h))
    size = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
    if size != img.size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    sx, sy = size[0] / full_w, size[1] / full_h
    return img, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


@dataclass(frozen=True)
class ExplainOptions:
    class_: int | str | None = None  # None: each image's top-1 class
    method: str = "cam"
    top: int = 5
    threshold: float | None = None
    patch: int | None = None  # occlusion: patch side and stride on the input, in pixels
    stride: int | None = None
    batch_size: int = 16
    npy: bool = False  # also write the raw map (the model's grid) as .npy
    colormap: str = COLORMAP
    groups: Any = None  # rank groups of classes (see Classifier.classify)
    abstain_below: float | None = None


@dataclass
class Written:
    """One input of `explain_files`: its record, and the files written for it (none when it failed)."""

    record: Record
    explanation: Explanation | None = None
    overlay: str | None = None
    raw: str | None = None
    picture: Image.Image | None = field(default=None, repr=False)  # the overlay written

    def to_dict(self) -> dict:
        data: dict = {"path": self.record.path, "model": self.record.model, "preset": self.record.preset}
        exp = self.explanation
        if exp is not None:
            data |= {"method": exp.method, "class": {"index": exp.index, "label": exp.label,
                     "probability": exp.probability}, "overlay": self.overlay, "map": self.raw,
                     "map_shape": list(exp.map.shape), "box": [round(v, 3) for v in exp.box]}  # fmt: skip
        data |= {"predictions": [p.to_dict() for p in self.record.predictions], "error": self.record.error}
        return data if self.record.abstained is None else data | {"abstained": self.record.abstained}


def _cut(stem: str) -> str:
    """A file name's stem cut to STEM_MAX_BYTES of UTF-8, a whole character at a time (a 250-byte name fits)."""
    return stem.encode("utf-8", "surrogateescape")[:STEM_MAX_BYTES].decode("utf-8", "ignore")


def _unique(stem: str, taken: set[str]) -> str:
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def planned_names(paths: Sequence[str], method: str) -> list[str]:
    """The stem each input's heat map is written under, `<stem>.<method>` (made unique), in input order."""
    from imgclass.data.images import display_path

    taken: set[str] = set()
    return [_unique(f"{_cut(Path(display_path(p)).stem) or 'image'}.{method}", taken) for p in paths]


def explain_files(classifier, paths: Sequence[str], out_dir: str | os.PathLike, options: ExplainOptions = ExplainOptions(),
                  progress: Callable[[str], Progress | None] | None = None) -> Iterator[Written]:  # fmt: skip
    """Explain each image into `out_dir` (`<stem>.<method>.png`, and `.npy`); a bad input is an error record.

    `progress(path)` may give an occlusion progress callback for that image.
    """
    from imgclass.data.images import display_path

    colour_table(options.colormap)  # a missing extra or an unknown colour map fails before any work
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"«output-dir» {printable(str(folder))}: {describe_os_error(err)}") from None
    model = classifier.model
    for path, stem in zip(paths, planned_names(paths, options.method), strict=True):
        shown = display_path(path)
        try:
            exp = classifier.explain(path, options.class_, method=options.method, top=options.top,
                                     threshold=options.threshold, patch=options.patch, stride=options.stride,
                                     batch_size=options.batch_size, progress=progress(shown) if progress else None,
                                     groups=options.groups, abstain_below=options.abstain_below)  # fmt: skip
        except InputError as err:
            reason = str(err).removeprefix(f"{shown}: ")
            yield Written(Record(shown, model.name, model.preset.preset.name, [], reason, model.multi_label))
            continue
        yield _save(exp, folder, stem, options)


def _save(exp: Explanation, folder: Path, stem: str, options: ExplainOptions) -> Written:
    overlay_path, raw_path = folder / f"{stem}.png", folder / f"{stem}.npy"
    from PIL.PngImagePlugin import PngInfo

    from imgclass._util.fs import atomic_write

    picture = exp.overlay(options.colormap)
    info = PngInfo()
    info.add_text("Software", "imgclass")  # how the output guard knows a heat map of ours
    try:
        with atomic_write(overlay_path, fsync=False) as handle:
            picture.save(handle, "PNG", pnginfo=info)
        if options.npy:
            with atomic_write(raw_path, fsync=False) as handle:
                np.save(handle, exp.map, allow_pickle=False)
    except OSError as err:
        raise OutputError(
            f"{printable(str(overlay_path))}: cannot write the heat map: {describe_os_error(err)}"
        ) from None
    return Written(exp.record, exp, str(overlay_path), str(raw_path) if options.npy else None, picture)
