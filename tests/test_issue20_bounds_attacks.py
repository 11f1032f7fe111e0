"""Issue 20's reproductions 7-13, 16, 18 and 20, run one after another in one folder through the entry point.

Each ends with a clear message or error record and the right exit code; the focused tests beside
(test_bounds, test_explain_records, test_nothing_silent, test_preprocessing_travels, test_doctor)
hold the details and the memory measurements.
"""

from __future__ import annotations

import json

import pytest
from conftest import jsonl, run_cli
from PIL import Image
from support import onnx_builders as builders
from test_hostile import grey_images, nan_for_dark_images


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_the_bounds_half_of_the_attack_list_in_one_folder(tmp_path, make_model, photos):
    here = tmp_path
    tiny = make_model("tiny", spatial=32)
    dynamic = make_model("tiny", spatial=None)
    photo = photos["coffee.png"]
    results = {}

    # 7: unbounded resize targets from flags (exit 2) and from model metadata (exit 3)
    for flags in (["--crop-pct", "0.001"], ["--resize", "100000"], ["--crop-pct", "1e-7"], ["--size", "100000"]):
        results[" ".join(flags)] = run_cli("predict", photo, "-m", dynamic, *flags).returncode
    meta = builders.tiny(builders.Signature(spatial=224, metadata=(("imgclass.preprocess", '{"crop_pct": 0.02}'),)))
    results["metadata crop_pct 0.02"] = run_cli("predict", photo, "-m", builders.save(meta, here / "m.onnx")).returncode
    # 8: a thin image is that image's error record
    Image.new("RGB", (8000, 1)).save(here / "thin.png")
    thin = run_cli("batch", here / "thin.png", photo, "-m", tiny, "-f", "jsonl")
    results["thin"] = (thin.returncode, sum(r["error"] is not None for r in jsonl(thin.stdout)))
    # 9: huge declared input dims
    huge = builders.save(builders.tiny(builders.Signature(spatial=100000)), here / "huge.onnx")
    results["huge input"] = run_cli("predict", photo, "-m", huge).returncode
    # 11: no preprocessing evidence is said
    plain = run_cli("predict", photo, "-m", make_model("tiny", spatial=32, evidence=False))
    results["no evidence warned"] = "imgclass models doctor" in plain.stderr
    # 12: crop_pct in a sidecar over a sizes table
    side = here / "side.onnx"
    side.write_bytes(make_model("tiny", spatial=224).read_bytes())
    side.with_suffix(".json").write_text(json.dumps({"preset": "torchvision", "crop_pct": 0.9}))
    info = json.loads(run_cli("models", "info", side, "-f", "json").stdout)
    results["sidecar crop_pct"] = info["preprocessing"]["crop_pct"]
    # 16: weights that overflow a sum; NaN outputs in explain
    weights = run_cli("predict", photo, "-m", tiny, "-m", tiny, "--weights", "1e308,1e308", "-f", "jsonl")
    results["weights"] = jsonl(weights.stdout)[0]["predictions"][0]["probability"] > 0
    dark, bright = grey_images(here / "greys", (10, 240))
    nan = run_cli("explain", dark, bright, "-m", nan_for_dark_images(here / "nan.onnx"), "--class", "1", "-o",
                  here / "maps", "--method", "occlusion")  # fmt: skip
    results["explain nan"] = (nan.returncode, ": NaN" in nan.stdout, len(jsonl(nan.stdout)))
    # 18: explain goes on after a long name
    long_name = here / ("n" * 245 + ".png")
    Image.open(photo).save(long_name)
    long = run_cli("explain", long_name, photo, "-m", tiny, "-o", here / "maps2")
    results["explain long name"] = (long.returncode, len(jsonl(long.stdout)))

    assert results == {
        "--crop-pct 0.001": 2, "--resize 100000": 2, "--crop-pct 1e-7": 2, "--size 100000": 2,
        "metadata crop_pct 0.02": 3, "thin": (1, 1), "huge input": 3, "no evidence warned": True,
        "sidecar crop_pct": 0.9, "weights": True, "explain nan": (1, False, 2), "explain long name": (0, 2),
    }  # fmt: skip
