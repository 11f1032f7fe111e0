"""What `imgclass models quantize` does to a real network: the zoo's MobileNet v2 made float again.

    python benchmarks/quantize_accuracy.py [--work DIR] [--methods minmax,percentile] [--per 15]

There is no float32 ImageNet model in this workplace, so scripts/dequantize.py rebuilds one
from ../shared/models/mobilenetv2-12-int8.onnx (real trained weights). That model is
quantised by imgclass with crops of half of the real photos in scikit-image and
scikit-learn, and compared with its float32 self on crops of the other half (held out):

  agreement          share of held-out images whose top-1 is the same in int8 and fp32; a
                     top-1 accuracy can fall by at most (1 - agreement) on the same images
  agreement_conf     the same, over images whose fp32 top-1 probability is at least 0.5
  zoo_int8           the same figures for the zoo's own int8 file (Intel Neural Compressor):
                     its rounding alone, against the float graph rebuilt from it
  model_only         images/s of each, ONNX Runtime alone, batch 8, all cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import dequantize  # noqa: E402

from tests.support.photo_crops import random_crops  # noqa: E402

REAL = ROOT.parent / "shared" / "models" / "mobilenetv2-12-int8.onnx"
CALIBRATION = [
    "astronaut.png",
    "coffee.png",
    "motorcycle_left.png",
    "retina.jpg",
    "grass.png",
    "color.png",
    "china.jpg",
]
HELD_OUT = ["chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "gravel.png", "motorcycle_right.png",
            "flower.jpg"]  # fmt: skip


def photo(name: str) -> Path:
    import skimage
    import sklearn.datasets

    sklearn_images = Path(sklearn.datasets.__file__).parent / "images"
    return (
        sklearn_images / name if name in ("china.jpg", "flower.jpg") else Path(skimage.__file__).parent / "data" / name
    )


def crops(names: list[str], folder: Path, per: int, seed: int) -> list[Path]:
    return random_crops([photo(name) for name in names], folder, per, seed)


def top1(classifier, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    records = list(classifier.classify(images, top=1, expand_inputs=False))
    return (
        np.array([r.predictions[0].index for r in records]),
        np.array([r.predictions[0].probability for r in records]),
    )


def model_only(path: Path, runs: int = 3) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    sess.run(None, {"input": x})
    speeds = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(8):
            sess.run(None, {"input": x})
        speeds.append(64 / (time.perf_counter() - start))
    return statistics.median(speeds)


def main() -> None:
    import imgclass
    from imgclass.tasks.quantize import QuantizeOptions, quantize

    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imgclass-quantize-accuracy")
    parser.add_argument("--methods", default="minmax,percentile")
    parser.add_argument("--per", type=int, default=15, help="crops per calibration photo")
    args = parser.parse_args()
    work = args.work
    fp32_path = dequantize.dequantize(REAL, work / "mobilenetv2-fp32.onnx")
    calibration = work / "calibration"
    crops(CALIBRATION, calibration, args.per, seed=1)
    held_out = crops(HELD_OUT, work / "held-out", 30, seed=2)
    fp32 = imgclass.load(fp32_path, device="cpu")
    ref, prob = top1(fp32, held_out)
    confident = prob >= 0.5
    report: dict = {"held_out_images": len(held_out), "confident_images": int(confident.sum()),
                    "model_only_fp32": model_only(fp32_path)}  # fmt: skip
    candidates = {"zoo_int8": REAL}
    for method in args.methods.split(","):
        out = work / f"mobilenetv2-int8-{method}.onnx"
        start = time.perf_counter()
        quantize(
            fp32_path,
            calibration,
            out,
            options=QuantizeOptions(method=method),
            load_options=imgclass.LoadOptions(device="cpu"),
        )
        report[f"{method}_quantize_s"] = round(time.perf_counter() - start, 1)
        candidates[method] = out
    for name, path in candidates.items():
        got, _ = top1(imgclass.load(path, device="cpu"), held_out)
        report[name] = {"agreement": round(float((got == ref).mean()), 4),
                        "agreement_conf": round(float((got[confident] == ref[confident]).mean()), 4),
                        "model_only": round(model_only(Path(path)), 1)}  # fmt: skip
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
