"""Where a cold and a warm `imgclass predict one.jpg` spend their time.

    python benchmarks/bench_startup.py [--model FILE.onnx] [--image one.jpg] [--repeats 5]

Cold: a new, empty IMGCLASS_HOME (no inspection cache, no optimised graph); warm: the same
home after one run. For each, in fresh processes, medians of --repeats runs:
  process      the whole `imgclass predict IMAGE --model MODEL -f jsonl` as a process (wall)
  python       an empty interpreter (`python -c pass`): the floor no program gets under
and the stages of the same work timed inside one process, in the order predict does them:
  import_cli   imgclass.cli.app (click, the command modules)
  import_heavy numpy, onnxruntime, PIL (what the model path needs)
  resolve      the --model value to a file (store.resolve)
  inspect      the graph's signature (modelindex: parse on a miss, JSON on a hit)
  hash         the file's sha256 (the optimised-graph key; remembered by file identity)
  session      the ONNX Runtime session: optimise and save (cold) or load the saved graph (warm)
  first_batch  decode, preprocess, run and rank the one image
Without --model, a ResNet-50 built by tests/onnx_builders.py (seeded weights) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMGCLASS = str(Path(sys.executable).parent / "imgclass")

STAGES = textwrap.dedent(
    """
    import sys, time, json
    t = [time.perf_counter()]
    marks = {}
    def mark(name):
        now = time.perf_counter(); marks[name] = now - t[0]; t[0] = now
    import imgclass.cli.app
    mark("import_cli")
    import numpy, onnxruntime, PIL.Image
    mark("import_heavy")
    from pathlib import Path
    from imgclass.store import index as modelindex
    from imgclass.store import registry as store
    from imgclass.store.cache import optimized_dir
    from imgclass.store.optimized import open_session
    from imgclass.graph.runtime import Device
    resolved = store.resolve(sys.argv[1])
    mark("resolve")
    import imgclass
    sig = modelindex.signature_of(resolved.path)
    mark("inspect")
    digest = modelindex.sha256_of(resolved.path)
    mark("hash")
    session, providers = open_session(resolved.path, digest, optimized_dir(), Device("auto"), None, False)
    mark("session")
    clf = imgclass.load(sys.argv[1])  # everything again, now from the caches, then the image
    t[0] = time.perf_counter()
    clf.predict(sys.argv[2], top=5)
    mark("first_batch")
    print(json.dumps(marks))
    """
)


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def stages(model: str, image: str, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", STAGES, model, image], check=True, env=env, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(model: str, image: str, repeats: int, work: Path) -> dict:
    predict = [IMGCLASS, "predict", image, "--model", model, "-f", "jsonl"]
    runs: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
    for i in range(repeats):  # interleaved: cold, warm, cold, warm ...
        for state in ("cold", "warm"):
            home = work / f"home-{state}-{i}"
            shutil.rmtree(home, ignore_errors=True)
            env = {**os.environ, "IMGCLASS_HOME": str(home), "NO_COLOR": "1"}
            if state == "warm":
                subprocess.run(predict, check=True, env=env, capture_output=True)
            runs[state].setdefault("process", []).append(timed(predict, env))
            shutil.rmtree(home, ignore_errors=True)
            if state == "warm":
                subprocess.run(predict, check=True, env=env, capture_output=True)
            for key, value in stages(model, image, env).items():
                runs[state].setdefault(key, []).append(value)
            runs[state].setdefault("python", []).append(timed([sys.executable, "-c", "pass"], env))
    return {state: {k: round(statistics.median(v), 4) for k, v in values.items()} for state, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--image")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "imgclass-startup")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT))
        from tests.support import onnx_builders

        model = str(args.work / "resnet50.onnx")
        if not Path(model).exists():
            onnx_builders.save(onnx_builders.resnet50(onnx_builders.Signature()), Path(model))
    image = args.image
    if image is None:
        import sklearn.datasets

        image = str(Path(sklearn.datasets.__file__).parent / "images" / "china.jpg")
    report = {"model": model, "image": image, "cpus": os.cpu_count(), **measure(model, image, args.repeats, args.work)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
