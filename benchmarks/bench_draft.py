"""What JPEG draft decoding (the default; off with --exact-decode) buys in speed and costs in answers.

    python benchmarks/bench_draft.py [--model ../shared/models/mobilenetv2-12-int8.onnx] [--work DIR]

Test images: the colour photos shipped with scikit-image and scikit-learn, each whole
and as three crops, scaled up (aspect kept) to phone size (long side 4032) and to a
large web size (long side 1600), with sensor-like noise, saved as quality-90 JPEGs;
plus scikit-image's retina.jpg (1411x1411), a real JPEG that draft decoding reaches
at its own size. For each set it reports:
  decode       ms per image to decode and resize + crop (median of best-of-3), draft vs full
  batch        `imgclass batch DIR` wall time and images/s, default vs --exact-decode
  answers      top-1 agreement and the largest probability difference over all 1000
               classes between the two runs, with the real model given by --model
  noise floor  the same figures between the full decode and itself with one grey level
               added or taken on a random 20 % of the values: what the model does with a
               change of the same size as the one draft decoding makes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMGCLASS = [str(Path(sys.executable).parent / "imgclass")]
DEFAULT_MODEL = ROOT / ".." / "shared" / "models" / "mobilenetv2-12-int8.onnx"
# (left, top, right, bottom) as fractions of the photo: whole, two off-centre crops, a centre crop.
CROPS = [(0, 0, 1, 1), (0, 0, 0.7, 0.8), (0.3, 0.2, 1, 1), (0.2, 0.2, 0.8, 0.8)]


def photos() -> list[Path]:
    import skimage
    import sklearn.datasets

    sk = Path(skimage.__file__).parent / "data"
    images = Path(sklearn.datasets.__file__).parent / "images"
    names = ["chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg"]
    return [images / "china.jpg", images / "flower.jpg", *(sk / n for n in names)]


def make_set(folder: Path, long_side: int) -> Path:
    """Every photo and crop scaled so its long side is `long_side`, plus noise, as quality-90 JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for photo in photos():
        source = Image.open(photo).convert("RGB")
        for i, (left, top, right, bottom) in enumerate(CROPS):
            w, h = source.size
            crop = source.crop((int(left * w), int(top * h), int(right * w), int(bottom * h)))
            scale = long_side / max(crop.size)
            size = (round(crop.width * scale), round(crop.height * scale))
            arr = np.asarray(crop.resize(size, Image.Resampling.BICUBIC), np.int16)
            arr = arr + rng.normal(0, 4, (size[1], size[0], 1)).astype(np.int16)
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"{photo.stem}-{i}.jpg", quality=90)
    return folder


def _transform(size: int = 224):
    sys.path.insert(0, str(ROOT))
    from imgclass.data.presets import get_preset
    from imgclass.data.transforms import Transform

    return Transform(get_preset("torchvision"), size, size)


def decode_ms(folder: Path, repeats: int = 5) -> dict:
    """Median over the images of the best decode + resize + crop time, in ms; the modes alternate."""
    from imgclass.data.images import DecodeOptions, load_rgb

    transform = _transform()
    modes = {"draft": DecodeOptions(draft_min_short_side=transform.min_decode_side), "full": DecodeOptions()}
    best: dict = {mode: [] for mode in modes}
    for path in sorted(folder.glob("*.jpg")):
        times: dict = {mode: float("inf") for mode in modes}
        for _ in range(repeats):
            for mode, options in modes.items():
                start = time.perf_counter()
                transform.geometry(load_rgb(path, options))
                times[mode] = min(times[mode], time.perf_counter() - start)
        for mode in modes:
            best[mode].append(times[mode] * 1000)
    result = {mode: round(statistics.median(values), 1) for mode, values in best.items()}
    result["speed-up"] = round(result["full"] / result["draft"], 2)
    return result


def batch(model: Path, folder: Path, env: dict, exact: bool) -> tuple[float, dict]:
    out = folder.parent / f"{folder.name}-{'exact' if exact else 'draft'}.jsonl"
    args = [*IMGCLASS, "batch", str(folder), "--model", str(model), "--top", "1000", "--output", str(out)]
    start = time.perf_counter()
    subprocess.run([*args, *(["--exact-decode"] if exact else [])], check=True, env=env, capture_output=True)
    seconds = time.perf_counter() - start
    records = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        by_index = sorted(record["predictions"], key=lambda p: p["index"])
        records[record["path"]] = np.array([p["probability"] for p in by_index])
    return seconds, records


def agreement(a: dict, b: dict) -> dict:
    """Top-1 agreement (all images, and those `a` is sure of: p >= 0.5) and probability differences."""
    paths = sorted(a)
    same = [int(a[p].argmax() == b[p].argmax()) for p in paths]
    sure = [s for s, p in zip(same, paths, strict=False) if a[p].max() >= 0.5]
    diffs = [float(np.abs(a[p] - b[p]).max()) for p in paths]
    return {
        "top-1 agreement": f"{sum(same)}/{len(same)}",
        "where p(top-1) >= 0.5": f"{sum(sure)}/{len(sure)}",
        "max probability difference": round(max(diffs), 3),
        "median per-image max difference": round(statistics.median(diffs), 3),
    }


def noise_floor(model: Path, folder: Path) -> dict:
    """The same comparison between the full decode and itself with +-1 grey level on 20 % of the values."""
    import onnxruntime as ort

    from imgclass.data.images import load_rgb
    from imgclass.graph.ranking import softmax

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    transform, rng = _transform(), np.random.default_rng(0)
    name = session.get_inputs()[0].name
    clean, jittered = {}, {}
    for path in sorted(folder.glob("*.jpg")):
        pixels = transform.geometry(load_rgb(path)).astype(np.int16)
        jitter = (rng.random(pixels.shape) < 0.2) * rng.choice(np.array([-1, 1], np.int16), pixels.shape)
        for store, arr in ((clean, pixels), (jittered, np.clip(pixels + jitter, 0, 255))):
            x = transform._normalise(arr.astype(np.uint8)).transpose(2, 0, 1)[None]
            store[path] = softmax(session.run(None, {name: x})[0])[0]
    return agreement(clean, jittered)


def compare(model: Path, folder: Path, env: dict) -> dict:
    batch(model, folder, env, exact=True)  # warm-up: fills the optimised-graph cache and the page cache
    runs = {True: [], False: []}
    for _ in range(2):  # alternate, keep the faster of two runs each
        for exact in (False, True):
            runs[exact].append(batch(model, folder, env, exact))
    (draft_s, draft), (exact_s, exact) = min(runs[False], key=lambda r: r[0]), min(runs[True], key=lambda r: r[0])
    return {
        "images": len(exact),
        "batch images/s (draft, exact)": (round(len(draft) / draft_s, 1), round(len(exact) / exact_s, 1)),
        "draft vs exact": agreement(exact, draft),
        "noise floor (exact vs exact + 1-level jitter)": noise_floor(model, folder),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no such model; pass --model with a real ImageNet classifier")
    work = args.work or Path(tempfile.mkdtemp(prefix="imgclass-draft-"))
    env = {**os.environ, "IMGCLASS_HOME": str(work / "home"), "NO_COLOR": "1"}
    import skimage

    retina = work / "retina"
    retina.mkdir(parents=True, exist_ok=True)
    (retina / "retina.jpg").write_bytes((Path(skimage.__file__).parent / "data" / "retina.jpg").read_bytes())
    sets = {
        "phone (long side 4032)": make_set(work / "phone", 4032),
        "web (long side 1600)": make_set(work / "web", 1600),
    }
    for name, folder in {**sets, "retina.jpg 1411x1411 (real JPEG)": retina}.items():
        figures = {"decode + resize + crop, ms": decode_ms(folder), **compare(args.model, folder, env)}
        print(json.dumps({"set": name, **figures}))


if __name__ == "__main__":
    main()
