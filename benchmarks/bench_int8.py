"""imgclass fp32 and int8 against plain scripts, side by side, on phone-size photos (whole-process images/s).

    python benchmarks/bench_int8.py [--work DIR] [--photos 200] [--rounds 3] [--torch-python PYTHON]

In one run, on this machine, with an architecture-faithful ResNet-50 (tests/onnx_builders.py,
seeded weights: speed does not depend on the weights' values) and its int8 version made by
`imgclass models quantize` (64 crops of real photos as calibration images):

  model-only     ONNX Runtime alone on batched synthetic input (batch 8, all cores), fp32 and int8
  decode         the fastest reduced-scale JPEG decode + resize + crop, on 2 threads, images/s
  ceiling        1 / (1/model-only + 1/decode): the model and the decoder share the same cores
  imgclass       `imgclass batch DIR --model M -o out.jsonl` as a whole process (start-up included)
  ort-threads    a plain threaded ONNX Runtime script: 2 decode threads (PIL with the same
                 reduced-scale draft decode), batches of 8, one session (whole process)
  torch          a timm-style PyTorch script: torchvision ResNet-50 (random weights), Resize(256),
                 CenterCrop(224), ToTensor, Normalize, a DataLoader with 2 workers, batches of 8
                 (only with --torch-python, a Python that has torch and torchvision)

over --photos phone-size JPEGs (4032x3024, quality 90, made from real photos). Every contender
runs once per round, rounds interleaved; medians are reported, with every round's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_speed  # noqa: E402

from tests.support import onnx_builders  # noqa: E402
from tests.support.photo_crops import random_crops  # noqa: E402

IMGCLASS = str(Path(sys.executable).parent / "imgclass")

ORT_THREADS = textwrap.dedent(
    """
    import sys, numpy as np, onnxruntime as ort
    from concurrent.futures import ThreadPoolExecutor
    from PIL import Image
    model, files = sys.argv[1], sys.argv[2:]
    size, resize = 224, 256
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    mean = np.array([0.485, 0.456, 0.406], np.float32); std = np.array([0.229, 0.224, 0.225], np.float32)
    def prep(path):
        img = Image.open(path)
        img.draft("RGB", (2 * resize, 2 * resize))
        img = img.convert("RGB")
        w, h = img.size
        s = resize / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        arr = (np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255 - mean) / std
        return arr.transpose(2, 0, 1)
    top1, batch = [], []
    with ThreadPoolExecutor(2) as pool:
        for sample in pool.map(prep, files):
            batch.append(sample)
            if len(batch) == 8:
                top1 += list(sess.run(None, {name: np.stack(batch)})[0].argmax(1))
                batch = []
        if batch:
            top1 += list(sess.run(None, {name: np.stack(batch)})[0].argmax(1))
    assert len(top1) == len(files)
    """
)

TORCH = textwrap.dedent(
    """
    import sys, torch, torchvision
    from torchvision import transforms
    from PIL import Image
    files = sys.argv[1:]
    torch.set_num_threads(2)
    model = torchvision.models.resnet50().eval()
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    class Files(torch.utils.data.Dataset):
        def __len__(self): return len(files)
        def __getitem__(self, i): return tf(Image.open(files[i]).convert("RGB"))
    if __name__ == "__main__":
        loader = torch.utils.data.DataLoader(Files(), batch_size=8, num_workers=2)
        with torch.inference_mode():
            for x in loader:
                model(x).argmax(1)
    """
)

DECODE = textwrap.dedent(
    """
    import sys, time
    from concurrent.futures import ThreadPoolExecutor
    from imgclass.data.images import DecodeOptions, load_rgb
    from imgclass.data.transforms import Transform
    from imgclass.data.presets import get_preset
    t = Transform(get_preset("torchvision"), 224, 224, "NCHW", "float32")
    options = DecodeOptions(draft_min_short_side=t.min_decode_side)
    files = sys.argv[1:]
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda f: t(load_rgb(f, options)), files))
    print(len(files) / (time.perf_counter() - start))
    """
)


def model_only(model: Path, batch: int = 8, runs: int = 8) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    sess.run(None, {"x": x})
    start = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {"x": x})
    return runs * batch / (time.perf_counter() - start)


def calibration_crops(folder: Path, per: int) -> None:
    """Square crops (35-100% of the short side), some mirrored, of the real photos bench_speed uses."""
    random_crops(bench_speed.photos(), folder, per, seed=1)


def whole(cmd: list[str], count: int, env: dict) -> tuple[float, float]:
    """Whole-process images/s (wall) and CPU-seconds per image (user + system, all threads)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return count / wall, cpu / count


def prepare(work: Path, env: dict) -> tuple[Path, Path, dict]:
    fp32, int8 = work / "resnet50.onnx", work / "resnet50-int8.onnx"
    if not fp32.exists():
        onnx_builders.save(onnx_builders.resnet50(onnx_builders.Signature()), fp32)
    info: dict = {}
    if not int8.exists():
        calibration = work / "calibration"
        if not calibration.exists():
            calibration_crops(calibration, 13)
        start = time.perf_counter()
        subprocess.run([IMGCLASS, "models", "quantize", str(fp32), "--calibrate", str(calibration), "-o", str(int8)],
                       check=True, env=env, capture_output=True)  # fmt: skip
        info["quantize_s"] = time.perf_counter() - start
    return fp32, int8, info


def contenders(
    fp32: Path, int8: Path, folder: Path, files: list[str], torch_python: str | None
) -> dict[str, list[str]]:
    out = str(folder.parent / "out.jsonl")
    runs = {
        "imgclass_fp32": [IMGCLASS, "batch", str(folder), "--model", str(fp32), "--output", out],
        "imgclass_int8": [IMGCLASS, "batch", str(folder), "--model", str(int8), "--output", out],
        "ort_threads_fp32": [sys.executable, "-c", ORT_THREADS, str(fp32), *files],
        "ort_threads_int8": [sys.executable, "-c", ORT_THREADS, str(int8), *files],
    }
    if torch_python:
        script = folder.parent / "torch_script.py"
        script.write_text(TORCH)
        runs["torch_fp32"] = [torch_python, str(script), *files]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imgclass-bench-int8")
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch-python", help="A Python with torch and torchvision for the timm-style script.")
    parser.add_argument("--torch-rounds", type=int, default=2, help="Rounds the (slow) torch script runs in.")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IMGCLASS_HOME": str(work / "home"), "NO_COLOR": "1"}
    folder = work / "phone"
    files = [str(p) for p in bench_speed.make_jpegs(folder, args.photos, (4032, 3024))]
    fp32, int8, report = prepare(work, env)
    runs = contenders(fp32, int8, folder, files, args.torch_python)
    subprocess.run(runs["imgclass_fp32"], check=True, env=env, capture_output=True)  # optimised graphs cached,
    subprocess.run(runs["imgclass_int8"], check=True, env=env, capture_output=True)  # as on any later run
    figures: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for index in range(args.rounds):
        figures.setdefault("load_average", []).append(os.getloadavg()[0])
        figures.setdefault("model_only_fp32", []).append(model_only(fp32))
        figures.setdefault("model_only_int8", []).append(model_only(int8))
        out = subprocess.run(
            [sys.executable, "-c", DECODE, *files[:64]], check=True, env=env, capture_output=True, text=True
        )
        figures.setdefault("decode", []).append(float(out.stdout))
        for key, cmd in runs.items():
            if key.startswith("torch") and index >= args.torch_rounds:
                continue
            ips, cpu_per_image = whole(cmd, len(files), env)
            figures.setdefault(key, []).append(ips)
            cpu.setdefault(key, []).append(cpu_per_image)
    report.update(summarise(figures, cpu, len(files)))
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))


def summarise(figures: dict[str, list[float]], cpu: dict[str, list[float]], count: int) -> dict:
    """Medians, and ratios taken round by round (the runs of one round are a few minutes apart, so a
    change in the machine's load from one round to the next cancels out), then their median.

    A peer is another program (the threaded ONNX Runtime script, the PyTorch script), not imgclass fp32.
    """
    m = {key: statistics.median(values) for key, values in figures.items()}
    per_round = []
    for r in range(len(figures["decode"])):
        f = {k: v[r] for k, v in figures.items() if r < len(v)}
        ceiling = {p: 1 / (1 / f[f"model_only_{p}"] + 1 / f["decode"]) for p in ("fp32", "int8")}
        peers = {k: v for k, v in f.items() if k.endswith("_fp32") and not k.startswith(("model_only", "imgclass"))}
        best = max(peers, key=peers.__getitem__)
        per_round.append({
            "int8_vs_fp32_model_only": f["model_only_int8"] / f["model_only_fp32"],
            "imgclass_int8_vs_best_fp32_peer": f["imgclass_int8"] / peers[best],
            "best_fp32_peer": best,
            "imgclass_int8_vs_imgclass_fp32": f["imgclass_int8"] / f["imgclass_fp32"],
            "imgclass_int8_vs_its_ceiling": f["imgclass_int8"] / ceiling["int8"],
            "imgclass_fp32_vs_its_ceiling": f["imgclass_fp32"] / ceiling["fp32"],
            "imgclass_int8_vs_ort_threads_int8": f["imgclass_int8"] / f["ort_threads_int8"],
            "imgclass_int8_vs_torch_fp32": f["imgclass_int8"] / f["torch_fp32"] if "torch_fp32" in f else None,
        })  # fmt: skip
    ratios = {key: round(statistics.median(r[key] for r in per_round if r[key] is not None), 3)
              for key in per_round[0] if key != "best_fp32_peer" and any(r[key] is not None for r in per_round)}  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "photos": count,
        "median_images_per_s": {k: round(v, 2) for k, v in m.items()},
        "median_cpu_s_per_image": {k: round(statistics.median(v), 4) for k, v in cpu.items()},
        "rounds": {k: [round(x, 2) for x in v] for k, v in figures.items()},
        "ratios_median_of_rounds": ratios,
        "per_round": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in per_round],
    }


if __name__ == "__main__":
    main()
