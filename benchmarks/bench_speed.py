"""Side-by-side speed measurements for imgclass (issue: speed targets), reported as ratios.

    python benchmarks/bench_speed.py [--work DIR] [--models inception_v3,resnet50] [--skip-memory]

In one run, on this machine, for each architecture-faithful model (seeded weights
from tests/onnx_builders.py):
  model-only   ONNX Runtime alone on batched synthetic input (batch 8, all cores)
  sequential   a plain loop: PIL decode, resize, crop, numpy, ONNX Runtime, one image at a time
  imgclass     `imgclass batch DIR` as a whole process (start-up included), output to a file
over 96 phone-size JPEGs (4032x3024, quality 90) and 48 web-size JPEGs (640x480).
Also the cold start of `imgclass predict one.jpg` against a minimal script, and the
resident memory of a 2,000-image batch over time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import onnx_builders  # noqa: E402

SIZES = {"inception_v3": 299, "resnet50": 224}
RESIZE = {"inception_v3": 342, "resnet50": 256}
IMGCLASS = [str(Path(sys.executable).parent / "imgclass")]


def photos() -> list[Path]:
    import skimage
    import sklearn.datasets

    sk = Path(skimage.__file__).parent / "data"
    images = Path(sklearn.datasets.__file__).parent / "images"
    return [images / "china.jpg", images / "flower.jpg", sk / "chelsea.png", sk / "coffee.png", sk / "astronaut.png"]


def make_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Real photos scaled to `size`, with sensor-like noise so they compress like camera JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) == count:
        return existing
    rng = np.random.default_rng(0)
    sources = [Image.open(p).convert("RGB") for p in photos()]
    out = []
    for i in range(count):
        img = sources[i % len(sources)].resize(size, Image.Resampling.BICUBIC)
        arr = np.asarray(img, np.int16) + rng.normal(0, 4, (size[1], size[0], 1)).astype(np.int16)
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
        out.append(path)
    return out


def model_only(model: Path, size: int, batch: int = 8, runs: int = 6) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    sess.run(None, {"x": x})
    start = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {"x": x})
    return runs * batch / (time.perf_counter() - start)


SEQUENTIAL = textwrap.dedent(
    """
    import sys, time, numpy as np, onnxruntime as ort
    from PIL import Image
    model, size, resize, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    mean = np.array([0.485, 0.456, 0.406], np.float32); std = np.array([0.229, 0.224, 0.225], np.float32)
    start = time.perf_counter()
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        s = resize / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        arr = (np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255 - mean) / std
        sess.run(None, {"x": arr.transpose(2, 0, 1)[None].copy()})
    print(len(files) / (time.perf_counter() - start))
    """
)


def sequential(model: Path, kind: str, files: list[Path]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SEQUENTIAL, str(model), str(SIZES[kind]), str(RESIZE[kind]), *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def imgclass_batch(model: Path, folder: Path, count: int, env: dict, extra=()) -> float:
    out = folder.parent / f"{folder.name}.jsonl"
    start = time.perf_counter()
    subprocess.run(
        [*IMGCLASS, "batch", str(folder), "--model", str(model), "--output", str(out), *extra],
        check=True,
        env=env,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    assert sum(1 for _ in open(out)) == count
    return count / elapsed


MINIMAL = textwrap.dedent(
    """
    import sys, numpy as np, onnxruntime as ort
    from PIL import Image
    sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    img = Image.open(sys.argv[2]).convert("RGB").resize((int(sys.argv[3]),) * 2, Image.Resampling.BILINEAR)
    x = ((np.asarray(img, np.float32) / 255 - 0.45) / 0.225).transpose(2, 0, 1)[None].copy()
    out = sess.run(None, {"x": x})[0]
    print(int(out.argmax()))
    """
)


def cold_start(model: Path, kind: str, image: Path, env: dict, repeats: int = 5) -> dict:
    def timed(cmd):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        return time.perf_counter() - start

    ours, minimal = [], []
    timed([*IMGCLASS, "predict", str(image), "--model", str(model)])  # first run fills the optimised-model cache
    for _ in range(repeats):
        ours.append(timed([*IMGCLASS, "predict", str(image), "--model", str(model)]))
        minimal.append(timed([sys.executable, "-c", MINIMAL, str(model), str(image), str(SIZES[kind])]))
    return {
        "imgclass_s": statistics.median(ours),
        "minimal_s": statistics.median(minimal),
        "ratio": statistics.median(ours) / statistics.median(minimal),
    }


def memory(model: Path, folder: Path, env: dict, count: int = 2000) -> dict:
    source = make_jpegs(folder / "src", 8, (640, 480))
    many = folder / "many"
    many.mkdir(exist_ok=True)
    for i in range(count):
        link = many / f"m{i:05d}.jpg"
        if not link.exists():
            os.symlink(source[i % len(source)], link)
    out = folder / "many.jsonl"
    proc = subprocess.Popen(
        [*IMGCLASS, "batch", str(many), "--model", str(model), "--output", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples = []

    def rss() -> int | None:
        try:
            for line in open(f"/proc/{proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    while proc.poll() is None:
        done = sum(1 for _ in open(out)) if out.exists() else 0
        value = rss()
        if value:
            samples.append((done, value))
        time.sleep(0.2)
    early = [kb for done, kb in samples if count * 0.2 <= done <= count * 0.3]
    late = [kb for done, kb in samples if done >= count * 0.9]
    return {
        "images": count,
        "rss_mb_at_20_30pct": max(early) / 1024 if early else None,
        "rss_mb_at_90_100pct": max(late) / 1024 if late else None,
        "rss_mb_max": max(kb for _, kb in samples) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imgclass-bench")
    parser.add_argument("--models", default="inception_v3,resnet50")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = args.work
    env = {**os.environ, "IMGCLASS_HOME": str(work / "home"), "NO_COLOR": "1"}
    phone = make_jpegs(work / "phone", 96, (4032, 3024))
    web = make_jpegs(work / "web", 48, (640, 480))
    report: dict = {"cpus": os.cpu_count()}
    for kind in filter(None, args.models.split(",")):
        model = work / f"{kind}.onnx"
        if not model.exists():
            builder = getattr(onnx_builders, kind)
            onnx_builders.save(builder(onnx_builders.Signature(spatial=SIZES[kind])), model)
        runs: dict[str, list[float]] = {}
        for _ in range(args.rounds):  # interleaved rounds; medians smooth out a noisy machine
            runs.setdefault("model_only_ips", []).append(model_only(model, SIZES[kind]))
            for name, files, folder in (("phone", phone, work / "phone"), ("web", web, work / "web")):
                runs.setdefault(f"{name}_imgclass_ips", []).append(imgclass_batch(model, folder, len(files), env))
                if not args.skip_sequential:
                    runs.setdefault(f"{name}_sequential_ips", []).append(sequential(model, kind, files))
        entry: dict = {key: statistics.median(values) for key, values in runs.items()}
        entry["rounds"] = {key: [round(v, 2) for v in values] for key, values in runs.items()}
        for name in ("phone", "web"):
            entry[f"{name}_ratio_to_model"] = entry[f"{name}_imgclass_ips"] / entry["model_only_ips"]
            if not args.skip_sequential:
                entry[f"{name}_sequential_ratio_to_model"] = entry[f"{name}_sequential_ips"] / entry["model_only_ips"]
                entry[f"{name}_speedup_vs_sequential"] = entry[f"{name}_imgclass_ips"] / entry[f"{name}_sequential_ips"]
        entry["cold_start"] = cold_start(model, kind, web[0], env)
        report[kind] = entry
        print(kind, json.dumps(entry, indent=1), flush=True)
    if not args.skip_memory:
        tiny = work / "tiny.onnx"
        onnx_builders.save(onnx_builders.tiny(onnx_builders.Signature(spatial=224)), tiny)
        report["memory"] = memory(tiny, work / "mem", env)
        print("memory", json.dumps(report["memory"]), flush=True)
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {work / 'report.json'}")


if __name__ == "__main__":
    main()
