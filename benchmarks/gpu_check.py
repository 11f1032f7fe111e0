"""Check the CUDA path end to end: provider really in use, probabilities equal the CPU's within 1e-3.

Called by benchmarks/gpu_check.sh after it installed onnxruntime-gpu. `--device cpu` runs the
same checks against the CPU (a dry run of this script on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import photo_paths  # noqa: E402
from tests.support import onnx_builders  # noqa: E402

IMGCLASS = [str(Path(sys.executable).parent / "imgclass")]


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*IMGCLASS, *args], capture_output=True, text=True)
    print(f"$ imgclass {' '.join(args)}\n  exit {result.returncode}; stderr: {result.stderr.strip()[:400]}", flush=True)
    return result


def probabilities(stdout: str) -> dict:
    return {
        (r["path"], p["index"]): p["probability"]
        for r in map(json.loads, stdout.splitlines())
        for p in r["predictions"]
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgclass-gpu-"))
    os.environ["IMGCLASS_HOME"] = str(work / "home")
    model = onnx_builders.save(onnx_builders.resnet50(), work / "resnet50.onnx")
    images = work / "images"
    images.mkdir()
    for name, path in photo_paths().items():
        (images / name).write_bytes(path.read_bytes())
    failures = []

    info = run("info", "--format", "json")
    print("  providers available:", json.loads(info.stdout)["providers_available"])

    want = "CUDAExecutionProvider" if args.device.startswith("cuda") else "CPUExecutionProvider"
    checks = {
        "predict": ["predict", str(images / "china.jpg"), "--top", "1000"],
        "batch": ["batch", str(images), "--top", "1000"],
    }
    for name, cmd in checks.items():
        cpu = run(*cmd, "--model", str(model), "--device", "cpu", "-f", "jsonl")
        dev = run(*cmd, "--model", str(model), "--device", args.device, "-f", "jsonl", "-v")
        if dev.returncode != 0 or f"providers {want}" not in dev.stderr:
            failures.append(f"{name}: {want} not in use (exit {dev.returncode})")
            continue
        a, b = probabilities(cpu.stdout), probabilities(dev.stdout)
        worst = max(abs(a[k] - b[k]) for k in a) if a.keys() == b.keys() else float("inf")
        print(f"  {name}: {len(a)} probabilities, largest difference to the CPU {worst:.2e}")
        if worst > 1e-3:
            failures.append(f"{name}: probabilities differ from the CPU by {worst}")

    bench = run("bench", "--model", str(model), "--images", str(images), "--device", args.device, "--format", "json")
    if bench.returncode == 0:
        data = json.loads(bench.stdout)
        print(
            "  bench:",
            json.dumps(
                {k: data[k] for k in ("providers", "model_only_images_per_s", "end_to_end_images_per_s", "latency_ms")}
            ),
        )
        if data["providers"][0] != want:
            failures.append(f"bench: providers {data['providers']}")
    else:
        failures.append("bench failed")

    print("GPU CHECK", "FAILED: " + "; ".join(failures) if failures else "PASSED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
