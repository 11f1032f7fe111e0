"""Regenerate models/catalog.json from the ONNX Model Zoo checksum table.

    python scripts/make_catalog.py tests/data/onnx-zoo-resnet-inception.tsv [OUT.json]

The table (path, sha256, bytes, ...) was read from the zoo's Git LFS pointers
and matches its ONNX_HUB_MANIFEST.json. Facts not in the table (preset,
accuracy, licence) are listed below, each from the zoo README or the
framework that trained the weights.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "models" / "catalog.json"
ZOO_README = "https://github.com/onnx/models/tree/main/validated/vision/classification/resnet"
HF = "https://huggingface.co/onnxmodelzoo"
GITHUB_MEDIA = "https://media.githubusercontent.com/media/onnx/models/main"

# stem: (family, preset, top-1, top-5); licence and source come from provenance()
FACTS = {
    "resnet18-v1-7": ("resnet", "torchvision", 69.93, 89.29),
    "resnet34-v1-7": ("resnet", "torchvision", 73.73, 91.40),
    "resnet50-v1-7": ("resnet", "torchvision", 74.93, 92.38),
    "resnet101-v1-7": ("resnet", "torchvision", 76.48, 93.20),
    "resnet152-v1-7": ("resnet", "torchvision", 77.11, 93.61),
    "resnet18-v2-7": ("resnet", "torchvision", 69.70, 89.49),
    "resnet34-v2-7": ("resnet", "torchvision", 73.36, 91.43),
    "resnet50-v2-7": ("resnet", "torchvision", 75.81, 92.82),
    "resnet101-v2-7": ("resnet", "torchvision", 77.42, 93.61),
    "resnet152-v2-7": ("resnet", "torchvision", 78.20, 94.21),
    "resnet50-v1-12": ("resnet", "torchvision", 74.97, 92.33),
    "resnet50-v1-12-int8": ("resnet", "torchvision", 74.77, 92.32),
    "resnet50-v1-12-qdq": ("resnet", "torchvision", 74.43, None),
    "inception_v3_Opset17": ("inception", "timm-inception", 77.472, 93.468),
    "tv_resnet50_Opset17": ("resnet", "torchvision", 76.130, 92.862),
    "resnet50_Opset17": ("resnet", "torchvision-v2", 80.858, 95.434),
}
ALIASES = {"inception_v3_Opset17": ["inception-v3"], "resnet50-v1-12": ["resnet50"]}
DEFAULT = "inception_v3_Opset17"
# The zoo's int8 files and the float32 model each was quantised from (Intel Neural Compressor).
QUANTIZED_FROM = {"resnet50-v1-12-int8": "resnet50-v1-12", "resnet50-v1-12-qdq": "resnet50-v1-12"}
# Which zoo folder a Computer_Vision stem comes from (the stem alone is ambiguous).
CV_FOLDERS = {
    "inception_v3_Opset17": "Computer_Vision/inception_v3_Opset17_timm/",
    "tv_resnet50_Opset17": "Computer_Vision/tv_resnet50_Opset17_timm/",
    "resnet50_Opset17": "Computer_Vision/resnet50_Opset17_torch_hub/",
}


def provenance(stem: str) -> tuple[str, str]:
    if stem.startswith("inception"):
        return (
            "Apache-2.0",
            "timm inception_v3.tv_in1k (torchvision weights), exported by TurnkeyML for the ONNX Model Zoo",
        )
    if stem.startswith("tv_"):
        return "BSD-3-Clause", "torchvision ResNet50_Weights.IMAGENET1K_V1 via timm tv_resnet50, exported by TurnkeyML"
    if "Opset" in stem:
        return "BSD-3-Clause", "torch hub torchvision resnet50 (IMAGENET1K_V2 weights), exported by TurnkeyML"
    if "int8" in stem or "qdq" in stem:
        return "Apache-2.0", "ONNX Model Zoo: resnet50-v1-12 quantized with Intel Neural Compressor"
    return "Apache-2.0", "ONNX Model Zoo: MXNet Gluon model zoo ResNet converted to ONNX"


def download_urls(stem: str, path: str) -> list[str]:
    """Where to look for one zoo file, most likely first; the sha256 decides what is right.

    The zoo's Hugging Face organisation shows per-model repositories named by the file's stem
    (`onnxmodelzoo/dm_nfnet_f3_Opset17` holding `dm_nfnet_f3_Opset17.onnx`), also for
    `Computer_Vision/` exports, so that comes first; `legacy_models` mirrors the whole zoo tree.
    Repositories named after the zoo folder (`<folder>/<folder>.onnx`, used by some downloaders)
    stay as a fallback. GitHub's LFS route was announced as ending, so it goes last.
    """
    by_stem = f"{HF}/{stem}/resolve/main/{stem}.onnx"
    legacy = f"{HF}/legacy_models/resolve/main/{path}"
    github = f"{GITHUB_MEDIA}/{path}"
    if path.startswith("Computer_Vision/"):
        folder = path.split("/")[1]
        return [by_stem, legacy, f"{HF}/{folder}/resolve/main/{folder}.onnx", github]
    return [by_stem, legacy, github]


def main(tsv: Path, out: Path = OUT) -> None:
    rows = {}
    with open(tsv, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["path"].endswith(".onnx"):
                rows[row["path"]] = row
    models = []
    for stem, (family, preset, top1, top5) in FACTS.items():
        path = CV_FOLDERS.get(stem, f"validated/vision/classification/resnet/model/{stem}.onnx")
        if path.endswith("/"):
            path += f"{stem}.onnx"
        row = rows[path]
        licence, source = provenance(stem)
        models.append(
            {
                "name": stem,
                "aliases": ALIASES.get(stem, []),
                "family": family,
                "file": f"{stem}.onnx",
                "urls": download_urls(stem, path),
                "sha256": row["sha256"],
                "size": int(row["bytes"]),
                "opset": int(row["opset"]),
                "zoo_path": path,
                "preset": preset,
                "labels": "imagenet-1k",
                "license": licence,
                "source": source,
                "accuracy": {"top1": top1, "top5": top5, "dataset": "ImageNet-1k val"},
                "precision": "int8" if stem in QUANTIZED_FROM else "fp32",
                "quantized_from": QUANTIZED_FROM.get(stem),
            }
        )
    data = {"default": DEFAULT, "readme": ZOO_README, "models": models}
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {len(models)} models to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
