"""Is the draft decode's margin the cheapest exact-enough one? Decode + resize per image, and the answers.

    python benchmarks/draft_margin.py

imgclass decodes large JPEGs at the smallest DCT scale whose short side stays >= 2x the resize
target ("draft2x"). "draft1x" would stop at 1x the target (a further halving where one exists).
For 40 phone-size and 40 web-size photos (bench_speed.make_jpegs) it reports the median
decode + resize + crop time per image (best of 3) and, with the real MobileNet v2, top-1
agreement and the largest probability difference against the exact (full) decode.
"""

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
import bench_speed  # noqa: E402
import numpy as np  # noqa: E402

import imgclass  # noqa: E402
from imgclass.data.images import DecodeOptions, load_rgb  # noqa: E402

clf = imgclass.load(ROOT / ".." / "shared" / "models" / "mobilenetv2-12-int8.onnx", device="cpu")
t = clf.model.transform
need = t.min_decode_side // 2
print("preset", clf.preset, "min_decode_side", t.min_decode_side)
for label, size in (("phone", (4032, 3024)), ("web", (1600, 1200))):
    files = bench_speed.make_jpegs(Path(f"/tmp/ovw/margin-{label}"), 40, size)
    res = {}
    for name, side in (("exact", None), ("draft2x", 2 * need), ("draft1x", need)):
        opts = DecodeOptions(draft_min_short_side=side)
        times, samples = [], []
        for f in files:
            best = 1e9
            for _ in range(3):
                s = time.perf_counter()
                x = t(load_rgb(f, opts))
                best = min(best, time.perf_counter() - s)
            times.append(best)
            samples.append(x)
        logits = clf.model.runner.run(np.stack(samples))
        e = np.exp(logits - logits.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        res[name] = (statistics.median(times) * 1000, p)
    ex = res["exact"][1]
    for name in ("exact", "draft2x", "draft1x"):
        ms, p = res[name]
        print(
            label,
            name,
            f"{ms:.1f} ms",
            "top1 agree",
            (p.argmax(1) == ex.argmax(1)).mean(),
            "max|dp|",
            f"{np.abs(p - ex).max():.4f}",
        )
