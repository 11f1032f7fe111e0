"""`--engine ray` against `--engine local` in one run, plus a run whose model actor is killed mid-job.

    python benchmarks/bench_ray.py                      # 1,000 JPEGs (320x240), builder ResNet-50 at 224
    python benchmarks/bench_ray.py --kind tiny --images 400

Both engines run through the installed `imgclass batch` command on the same
folder of JPEGs cut from real photos. The ray runs start their own local Ray
instance (all the machine's CPUs). Reported per run: wall seconds of the whole
command (Ray's start-up included), the job's own images/s (the command's summary
line), and for the ray runs the ratio to local. The records are compared (paths,
order, class indices, probabilities within 1e-6), and the killed run is checked
to hold every input exactly once. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

IMGCLASS = [str(Path(sys.executable).parent / "imgclass")]
RATE = re.compile(r"ray: (\d+) images in ([\d.]+) s \(([\d.]+) images/s\) on (.*)")


def make_images(folder: Path, count: int) -> list[str]:
    from conftest import photo_paths
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    photos = [Image.open(p).convert("RGB") for p in photo_paths().values()]
    for i in range(count):
        img = photos[i % len(photos)]
        scale = 0.6 + 0.4 * ((i * 37) % 100) / 100
        w, h = int(img.width * scale), int(img.height * scale)
        x, y = (i * 13) % max(1, img.width - w + 1), (i * 7) % max(1, img.height - h + 1)
        img.crop((x, y, x + w, y + h)).resize((320, 240)).save(folder / f"{i:05d}.jpg", quality=85)
    return sorted(str(p) for p in folder.iterdir())


def make_model(kind: str, folder: Path) -> Path:
    from tests.support import onnx_builders as builders

    spatial = {"tiny": 32, "resnet50": 224}[kind]
    return builders.save(getattr(builders, kind)(builders.Signature(spatial=spatial), seed=0), folder / f"{kind}.onnx")


def actor_pids() -> list[int]:
    """Processes whose title Ray set to our model actor's."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"ImgclassModel" in cmdline and b"MapWorker" in cmdline:
                pids.append(int(entry))
    return pids


def batch(folder: Path, model: Path, out: Path, engine: str, kill_after: int | None = None) -> dict:
    cmd = [*IMGCLASS, "batch", str(folder), "-m", str(model), "-o", str(out), "--engine", engine, "--device", "cpu"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    if kill_after is not None:
        deadline = time.monotonic() + 600
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            lines = out.read_bytes().count(b"\n") if out.exists() else 0
            pids = actor_pids() if lines >= kill_after else []
            if pids:
                killed = {"pid": pids[0], "after_records": lines}
                os.kill(pids[0], signal.SIGKILL)
            time.sleep(0.05)
    _, stderr = proc.communicate(timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    result: dict = {"engine": engine, "images": len(records), "command_wall_s": round(wall, 2),
                    "command_images_per_s": round(len(records) / wall, 2)}  # fmt: skip
    match = RATE.search(stderr)
    if match:
        result.update(job_s=float(match.group(2)), job_images_per_s=float(match.group(3)), cluster=match.group(4))
    if killed:
        result["killed"] = killed
    return {"summary": result, "records": records}


def compare(a: list[dict], b: list[dict]) -> dict:
    pairs = list(zip(a, b, strict=False))
    same_paths = [r["path"] for r in a] == [r["path"] for r in b]
    same_classes = all(
        [p["index"] for p in x["predictions"]] == [p["index"] for p in y["predictions"]] for x, y in pairs
    )
    diffs = [
        abs(p["probability"] - q["probability"])
        for x, y in pairs
        for p, q in zip(x["predictions"], y["predictions"], strict=False)
    ]
    return {
        "same_paths_in_order": same_paths,
        "same_classes": same_classes,
        "max_probability_diff": max(diffs, default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("tiny", "resnet50"), default="resnet50")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--kill-after", type=int, default=100, help="records written before the actor is killed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = Path(tmp)
        paths = make_images(root / "imgs", args.images)
        model = make_model(args.kind, root)
        local = batch(root / "imgs", model, root / "local.jsonl", "local")
        ray = batch(root / "imgs", model, root / "ray.jsonl", "ray")
        killed = batch(root / "imgs", model, root / "killed.jsonl", "ray", kill_after=args.kill_after)
        kill_paths = [r["path"] for r in killed["records"]]
        rate = local["summary"]["command_images_per_s"]
        report = {
            "machine": {"cpus": os.cpu_count()},
            "model": args.kind,
            "images": len(paths),
            "local": local["summary"],
            "ray": {**ray["summary"], "vs_local": compare(ray["records"], local["records"])},
            "ray_with_actor_killed": {
                **killed["summary"],
                "every_input_exactly_once": sorted(kill_paths) == paths and len(set(kill_paths)) == len(paths),
                "vs_local": compare(killed["records"], local["records"]),
            },
            "local_over_ray_command_throughput": round(rate / ray["summary"]["command_images_per_s"], 2),
        }
        if "job_images_per_s" in ray["summary"]:
            report["local_over_ray_job_throughput"] = round(rate / ray["summary"]["job_images_per_s"], 2)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
