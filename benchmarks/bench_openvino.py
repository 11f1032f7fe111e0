"""imgclass on the OpenVINO device against the peers, side by side, whole process (images/s).

    python benchmarks/bench_openvino.py [--work DIR] [--phone 96] [--web 160] [--rounds 3] [--precision auto]

Run it with a Python that has imgclass with an OpenVINO provider (the `openvino` extra; or the
onnxruntime-openvino wheel where the plugin lists no device, as on AMD CPUs) and the `openvino`
package (for the OpenVINO script peer and the model-only ceiling).

Models: architecture-faithful ResNet-50 and Inception v3 (tests/support/onnx_builders.py, seeded
random weights: speed does not depend on the weights' values). Photos: real photos scaled to phone
size (4032x3024) and web size (1600x1200), with sensor-like noise, quality-90 JPEGs.

  imgclass_ov    `imgclass batch DIR -m M --device openvino --precision P` (whole process, records to a pipe)
  imgclass_cpu   the same on the CPU provider (`--device cpu`)
  ort_threads    a plain threaded ONNX Runtime script (CPU provider, 2 PIL decode threads, draft decode)
  ov_script      a ~60-line OpenVINO script: openvino.Core, compile_model with the precision hint,
                 PIL decode threads with the same draft decode, an AsyncInferQueue of batches of 8
  model_only_ov  OpenVINO alone on batched synthetic input (the faster of the plain OpenVINO runtime
                 and ONNX Runtime's OpenVINO provider)
  decode         the fastest decode + resize + crop on 2 threads (imgclass's draft decode), images/s
  ceiling        1 / (1/model_only_ov + 1/decode): the model and the decoder share the cores

P is bf16 where the CPU computes in it natively (AVX-512 BF16 / AMX), else f32 (imgclass refuses an
emulated bf16); the report says which. Every contender runs once per round, rounds interleaved;
ratios are taken round by round, then their median; every round's figures are kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_speed  # noqa: E402

from tests.support import onnx_builders  # noqa: E402

IMGCLASS = str(Path(sys.executable).parent / "imgclass")

# What each model's preset does (imgclass chooses these itself; the peers are told).
PREP = {
    "resnet50": {"size": 224, "resize": 256, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                 "filter": "BILINEAR"},
    "inception_v3": {"size": 299, "resize": 341, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                     "filter": "BICUBIC"},
}  # fmt: skip

PEER_PREP = textwrap.dedent(
    """
    import json, sys, numpy as np
    from concurrent.futures import ThreadPoolExecutor
    from PIL import Image
    model, prep, files = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    size, resize = prep["size"], prep["resize"]
    mean, std = np.array(prep["mean"], np.float32), np.array(prep["std"], np.float32)
    FILTER = getattr(Image.Resampling, prep["filter"])
    def prep_image(path):
        img = Image.open(path)
        img.draft("RGB", (2 * resize, 2 * resize))
        img = img.convert("RGB")
        w, h = img.size
        s = resize / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), FILTER)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        arr = (np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255 - mean) / std
        return arr.transpose(2, 0, 1)
    def batches(pool):
        batch = []
        for sample in pool.map(prep_image, files):
            batch.append(sample)
            if len(batch) == 8:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
    """
)

ORT_THREADS = PEER_PREP + textwrap.dedent(
    """
    import onnxruntime as ort
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name, top1 = sess.get_inputs()[0].name, []
    with ThreadPoolExecutor(2) as pool:
        for x in batches(pool):
            top1 += list(sess.run(None, {name: x})[0].argmax(1))
    assert len(top1) == len(files)
    """
)

# What a CPU user who knows OpenVINO writes: compile with the precision hint, throughput mode,
# decode on threads, keep the device busy with an async queue.
OV_SCRIPT = PEER_PREP + textwrap.dedent(
    """
    import openvino as ov
    precision = prep.get("precision", "f32")
    core = ov.Core()
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                 "PERFORMANCE_HINT": "THROUGHPUT"})
    queue = ov.AsyncInferQueue(compiled)
    top1 = {}
    def done(request, index):
        top1[index] = request.get_output_tensor(0).data.argmax(1)
    queue.set_callback(done)
    with ThreadPoolExecutor(2) as pool:
        for index, x in enumerate(batches(pool)):
            queue.start_async({0: x}, index)
    queue.wait_all()
    assert sum(len(v) for v in top1.values()) == len(files)
    """
)

MODEL_ONLY = textwrap.dedent(
    """
    import json, sys, time, numpy as np
    model, size, precision, how = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    x = np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)
    if how == "openvino":
        import openvino as ov
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        request = compiled.create_infer_request()
        run = lambda: request.infer({0: x})
    else:  # ONNX Runtime's OpenVINO provider, through imgclass's own session
        import imgclass
        runner = imgclass.load(model, device="openvino", precision=precision).model.runner
        run = lambda: runner.run(x)
    run()
    start = time.perf_counter()
    for _ in range(3):
        run()
    print(24 / (time.perf_counter() - start))
    """
)

DECODE = textwrap.dedent(
    """
    import sys, time
    from concurrent.futures import ThreadPoolExecutor
    import imgclass
    from imgclass.data.images import load_rgb
    clf = imgclass.load(sys.argv[1], device="cpu")
    t, options = clf.model.transform, clf.decode
    files = sys.argv[2:]
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda f: t(load_rgb(f, options)), files))
    print(len(files) / (time.perf_counter() - start))
    """
)


def native_bf16() -> bool:
    from imgclass.graph import openvino

    return "bf16" in openvino.native_precisions("CPU")


def run_text(cmd: list[str], env: dict) -> str:
    return subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout


def whole(cmd: list[str], count: int, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return count / (time.perf_counter() - start)


def contenders(model: Path, kind: str, folder: Path, files: list[str], precision: str) -> dict[str, list[str]]:
    prep = json.dumps({**PREP[kind], "precision": precision})
    batch = [IMGCLASS, "batch", str(folder), "--model", str(model)]  # records to stdout (a pipe)
    return {
        "imgclass_ov": [*batch, "--device", "openvino", "--precision", precision],
        "imgclass_cpu": [*batch, "--device", "cpu"],
        "ort_threads": [sys.executable, "-c", ORT_THREADS, str(model), prep, *files],
        "ov_script": [sys.executable, "-c", OV_SCRIPT, str(model), prep, *files],
    }


def one_round(model: Path, kind: str, files: list[str], runs: dict, precision: str, env: dict) -> dict[str, float]:
    size = str(PREP[kind]["size"])
    f = {"load_average": os.getloadavg()[0]}
    f["model_only_ov_runtime"] = float(run_text([sys.executable, "-c", MODEL_ONLY, str(model), size, precision,
                                                 "openvino"], env))  # fmt: skip
    f["model_only_ov_ep"] = float(run_text([sys.executable, "-c", MODEL_ONLY, str(model), size, precision,
                                            "openvino-ep"], env))  # fmt: skip
    f["decode"] = float(run_text([sys.executable, "-c", DECODE, str(model), *files[:48]], env))
    for key, cmd in runs.items():
        f[key] = whole(cmd, len(files), env)
    return f


def ratios(f: dict[str, float]) -> dict[str, float]:
    model_only = max(f["model_only_ov_runtime"], f["model_only_ov_ep"])
    ceiling = 1 / (1 / model_only + 1 / f["decode"])
    return {
        "imgclass_ov_vs_ov_script": f["imgclass_ov"] / f["ov_script"],
        "imgclass_ov_vs_ceiling": f["imgclass_ov"] / ceiling,
        "imgclass_ov_vs_ort_threads": f["imgclass_ov"] / f["ort_threads"],
        "imgclass_ov_vs_imgclass_cpu": f["imgclass_ov"] / f["imgclass_cpu"],
        "ceiling": ceiling,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imgclass-bench-openvino")
    parser.add_argument("--phone", type=int, default=96)
    parser.add_argument("--web", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", help="f32, bf16, or auto: bf16 where native, else f32")
    parser.add_argument("--models", default="resnet50,inception_v3")
    parser.add_argument("--out", type=Path, help="the report (default: benchmarks/results/bench_openvino-*.json)")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IMGCLASS_HOME": str(work / "home"), "NO_COLOR": "1"}
    precision = args.precision if args.precision != "auto" else ("bf16" if native_bf16() else "f32")
    sets = {"phone": ((4032, 3024), args.phone), "web": ((1600, 1200), args.web)}
    cases = []
    for kind in args.models.split(","):
        model = work / f"{kind}.onnx"
        if not model.exists():
            onnx_builders.save(getattr(onnx_builders, kind)(), model)
        for label, (size, count) in sets.items():
            folder = work / label
            files = [str(p) for p in bench_speed.make_jpegs(folder, count, size)]
            runs = contenders(model, kind, folder, files, precision)
            for key in ("imgclass_ov", "imgclass_cpu"):  # compiled/optimised graphs cached, as on any later run
                subprocess.run([*runs[key][:2], files[0], *runs[key][3:]], check=True, env=env, capture_output=True)
            cases.append((f"{kind}/{label}", model, kind, files, runs))
    rounds: dict[str, list[dict]] = {name: [] for name, *_ in cases}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or ROOT / "benchmarks" / "results" / f"bench_openvino-{os.cpu_count()}core-{stamp}.json"
    for _ in range(args.rounds):
        for name, model, kind, files, runs in cases:  # interleaved: every case once per round
            rounds[name].append(one_round(model, kind, files, runs, precision, env))
            report = summarise({k: v for k, v in rounds.items() if v}, precision)
            out.write_text(json.dumps(report, indent=1) + "\n")  # after every case: a stopped run keeps its figures
    print(json.dumps(report["cases"], indent=1))


def summarise(rounds: dict[str, list[dict]], precision: str) -> dict:
    from imgclass.graph import openvino

    cases = {}
    for name, figures in rounds.items():
        per_round = [ratios(f) for f in figures]
        cases[name] = {
            "median_images_per_s": {k: round(statistics.median(f[k] for f in figures), 2) for k in figures[0]},
            "ratios_median_of_rounds": {
                k: round(statistics.median(r[k] for r in per_round), 3) for k in per_round[0]
            },  # fmt: skip
            "rounds": [{k: round(v, 3) for k, v in f.items()} for f in figures],
        }
    found = openvino.source()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "machine": {
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cpu_features": sorted(k for k, v in openvino.cpu_features().items() if v),
        },  # fmt: skip
        "provider": f"{found.kind} {found.version}" if found else None,
        "precision": precision,
        "cases": cases,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
