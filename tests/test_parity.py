"""Acceptance: imgclass's probabilities equal the framework's preprocessing fed to the same ONNX file.

Architecture-faithful ResNet-50 / Inception v3 graphs with seeded weights: the
labels mean nothing, the numbers are what is compared.
"""

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import GOLDEN, jsonl, photo_paths, run_cli

from imgclass.graph.ranking import softmax

pytestmark = pytest.mark.slow  # ResNet-50 / Inception v3 graphs end to end

GOLDEN_FILES = sorted(GOLDEN.glob("*.npz"))
BACKGROUND = {"tf-slim", "mlperf-resnet"}


def _model_for(make_model, meta):
    kind = "inception_v3" if meta["size"] == 299 else "resnet50"
    spatial = meta["size"] if meta["size"] in (224, 299) else None
    classes = 1001 if meta["preset"] in BACKGROUND else 1000
    return make_model(kind, spatial=spatial, layout=meta["layout"], classes=classes)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_predict_matches_framework_reference_within_1e4(make_model, path, home):
    data = np.load(path)
    golden, meta = data["tensor"], json.loads(str(data["meta"]))
    model = _model_for(make_model, meta)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    reference = softmax(session.run(None, {"x": golden[None]})[0])[0]
    offset = 1 if meta["preset"] in BACKGROUND else 0

    args = [
        "predict",
        photo_paths()[meta["image"]],
        "--model",
        model,
        "--preset",
        meta["preset"],
        "--top",
        "1000",
        "--format",
        "jsonl",
        "--device",
        "cpu",
    ]
    if meta["size"] not in (224, 299):
        args += ["--size", meta["size"]]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result.stdout)
    assert record["error"] is None and record["preset"] == meta["preset"]
    predictions = record["predictions"]
    assert len(predictions) == 1000
    assert [p["rank"] for p in predictions] == list(range(1, 1001))
    ours = np.zeros(1000)
    for p in predictions:
        ours[p["index"]] = p["probability"]
    np.testing.assert_allclose(ours, reference[offset:], atol=1e-4, rtol=0)
    assert predictions[0]["index"] == int(np.argmax(reference[offset:]))


def _probabilities(result):
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result.stdout)
    return {p["index"]: (p["label"], p["probability"]) for p in record["predictions"]}


@pytest.mark.parametrize("kind, size", [("resnet50", 224), ("inception_v3", 299)])
def test_same_weights_behind_three_signatures_agree(make_model, photos, kind, size, home):
    variants = {
        "nchw-logits": make_model(kind, seed=7, spatial=size),
        "nhwc-softmax": make_model(kind, seed=7, spatial=size, layout="NHWC", softmax=True),
        "background-1001": make_model(kind, seed=7, spatial=size, classes=1001),
    }
    results = {
        name: _probabilities(
            run_cli(
                "predict",
                photos["chelsea.png"],
                "--model",
                path,
                "--preset",
                "torchvision",
                "--top",
                "10",
                "-f",
                "jsonl",
            )
        )
        for name, path in variants.items()
    }
    base = results["nchw-logits"]
    for name in ("nhwc-softmax", "background-1001"):
        assert [v[0] for v in results[name].values()] == [v[0] for v in base.values()], name
        assert list(results[name]) == list(base), name
    for index, (_label, prob) in base.items():
        assert abs(results["nhwc-softmax"][index][1] - prob) < 1e-5
    # The 1001-class export adds a background logit: the softmax is taken over one more output,
    # so every probability shrinks by the same factor and the ratios between classes stay.
    top = next(iter(base))
    for index, (_label, prob) in base.items():
        ratio = results["background-1001"][index][1] / results["background-1001"][top][1]
        assert abs(ratio - prob / base[top][1]) < 1e-5 * max(1.0, prob / base[top][1])


def test_torchvision_inception_with_transform_input_matches_torchvision(make_model, home):
    """An export of torchvision's inception_v3(weights=...) re-normalises inside the graph: it takes
    torchvision's own preprocessing, detected without --preset, and gives its probabilities."""
    data = np.load(GOLDEN / "torchvision_299_chelsea.npz")
    golden, meta = data["tensor"], json.loads(str(data["meta"]))
    model = make_model("inception_v3", spatial=299, transform_input="gather")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    reference = softmax(session.run(None, {"x": golden[None]})[0])[0]

    result = run_cli(
        "predict",
        photo_paths()[meta["image"]],
        "--model",
        model,
        "--top",
        "1000",
        "--format",
        "jsonl",
        "--device",
        "cpu",
        "-v",
    )
    assert result.returncode == 0, result.stderr
    assert "[detected (torchvision Inception v3: transform_input at the graph input)]" in result.stderr
    (record,) = jsonl(result.stdout)
    assert record["preset"] == "torchvision"
    ours = np.zeros(1000)
    for p in record["predictions"]:
        ours[p["index"]] = p["probability"]
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    info = json.loads(run_cli("models", "info", model, "--format", "json").stdout)
    assert info["preset"] == "torchvision" and "transform_input" in info["preset_source"]
    assert info["signature"]["transform_input"] is True
