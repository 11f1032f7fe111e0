"""imgclass serve against local runs, side by side: throughput and a shell loop's start-up.

1. Throughput: 8 concurrent clients (one keep-alive connection each) send 96 web-size
   JPEGs to a warm `imgclass serve` (POST /v1/classify), against `imgclass batch` on the
   same 96 files (the whole command, as a user runs it). Ratio: server img/s / batch img/s.
2. Shell loop: 20 x `imgclass predict photo.jpg --server URL` against 20 x
   `imgclass predict photo.jpg -m MODEL`, one after another. Ratio: local time / server time.

The machine may be shared and noisy: the measurements are interleaved round by round
(the order flips every round) and the report gives the median of each round's ratio.
Bytecode is compiled first (`compileall`), as an installed wheel has it.

    python benchmarks/bench_serve.py --model /work/shared/models/mobilenetv2-12-int8.onnx --rounds 5
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from imgclass.serve.client import Client, ClientOptions  # noqa: E402


def web_photos(folder: Path, count: int = 96, seed: int = 0) -> list[Path]:
    """`count` JPEGs of 640-1280 px on the long side: crops of scikit-image's and scikit-learn's photos."""
    import numpy as np
    from conftest import photo_paths
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = list(photo_paths().values())
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x, y, x + cw, y + ch))
        scale = rng.uniform(640, 1280) / max(cw, ch)
        crop = crop.resize((round(cw * scale), round(ch * scale)), Image.Resampling.BICUBIC)
        path = folder / f"web-{i:03d}.jpg"
        crop.save(path, quality=85)
        out.append(path)
    return out


def command() -> list[str]:
    script = Path(sys.executable).parent / "imgclass"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgclass"]


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([*command(), "serve", "-m", model, "--port", "0", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 300
    for line in process.stderr:
        found = re.search(r"serving on (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # type: ignore[union-attr]
            return process, found.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the server did not start")


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - start


def loop(args: list[str], count: int) -> tuple[float, float]:
    """Wall seconds and the processes' own CPU seconds (user + system) of `count` runs, one after another."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = sum(timed(args) for _ in range(count))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def clients(url: str, photos: list[Path], concurrency: int) -> float:
    """Seconds for `concurrency` clients to classify every photo (each photo once, spread over the clients)."""
    shares = [photos[i::concurrency] for i in range(concurrency)]

    def run(share: list[Path]) -> int:
        client = Client(ClientOptions(url))
        try:
            return sum(client.classify(str(p)).error is None for p in share)
        finally:
            client.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        ok = sum(pool.map(run, shares))
    seconds = time.perf_counter() - start
    assert ok == len(photos), f"{len(photos) - ok} photos failed"
    return seconds


def one_round(k: int, model: str, url: str, photos: list[Path], folder: Path, loops: int) -> dict:
    batch_cmd = [*command(), "batch", str(folder), "-m", model, "-f", "jsonl", "-q"]
    local_cmd = [*command(), "predict", str(photos[0]), "-m", model, "-f", "jsonl"]
    remote_cmd = [*command(), "predict", str(photos[0]), "--server", url, "-f", "jsonl"]
    row: dict = {}
    steps = [("batch_s", lambda: timed(batch_cmd)), ("clients_s", lambda: clients(url, photos, 8))]
    loops_ = [("local_loop_s", lambda: loop(local_cmd, loops)), ("server_loop_s", lambda: loop(remote_cmd, loops))]
    for name, step in (steps + loops_) if k % 2 == 0 else (steps[::-1] + loops_[::-1]):
        value = step()
        if isinstance(value, tuple):
            row[name], row[name.replace("_s", "_cpu_s")] = value
        else:
            row[name] = value
    row["throughput_ratio"] = (len(photos) / row["clients_s"]) / (len(photos) / row["batch_s"])
    row["loop_speedup"] = row["local_loop_s"] / row["server_loop_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=os.environ.get("IMGCLASS_MODEL", "/work/shared/models/mobilenetv2-12-int8.onnx")
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--server-args", default="", help="Extra `imgclass serve` options, e.g. '--max-batch 16'.")
    parser.add_argument("--json", type=Path, help="Also write the rounds and medians here.")
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "imgclass"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp) / "photos"
        photos = web_photos(folder, args.photos)
        process, url = start_server(args.model, args.server_args.split())
        try:
            rounds = []
            for k in range(args.rounds):
                rounds.append(one_round(k, args.model, url, photos, folder, args.loops))
                r = rounds[-1]
                print(f"round {k + 1}: batch {len(photos) / r['batch_s']:.1f} img/s, 8 clients "
                      f"{len(photos) / r['clients_s']:.1f} img/s ({r['throughput_ratio']:.2f}x); {args.loops} calls: "
                      f"local {r['local_loop_s']:.2f} s, --server {r['server_loop_s']:.2f} s ({r['loop_speedup']:.2f}x); "
                      f"their own CPU: {r['local_loop_cpu_s']:.2f} s, {r['server_loop_cpu_s']:.2f} s",
                      flush=True)  # fmt: skip
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"median of ratios: throughput {medians['throughput_ratio']:.2f}x imgclass batch (goal >= 0.9x); "
          f"shell loop {medians['loop_speedup']:.2f}x faster with --server (goal >= 3x)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "medians": medians, "model": args.model,
                                         "photos": len(photos), "cpus": os.cpu_count()}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
