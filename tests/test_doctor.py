"""`imgclass models doctor` and `--preset auto` (issue 20): which preprocessing a model expects, with evidence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REAL_MODEL, jsonl, real_model, run_cli
from onnx import helper, numpy_helper

import imgclass
from imgclass._util.resources import data_dir, load_json
from imgclass.data.presets import get_preset


def fold_normalisation(source: Path, dest: Path, preset: str) -> Path:
    """A copy of a torchvision-normalised model that expects `preset`'s pixel transform instead.

    A Mul and an Add in front of the input turn `preset`'s (x * scale - mean) / std into
    torchvision's, so the copy answers right only when fed the way `preset` feeds it.
    """
    other, tv = get_preset(preset), get_preset("torchvision")
    assert other.channel_order == "RGB"
    std_o, mean_o, mean_t, std_t = (np.asarray(v, np.float64) for v in (other.std, other.mean, tv.mean, tv.std))
    a = std_o / (255 * other.scale * std_t)
    b = (mean_o / (255 * other.scale) - mean_t) / std_t
    model = onnx.load(str(source))
    name = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["imgclass_test/folded" if i == name else i for i in node.input]
    model.graph.initializer.extend([
        numpy_helper.from_array(a.reshape(1, 3, 1, 1).astype(np.float32), "imgclass_test/a"),
        numpy_helper.from_array(b.reshape(1, 3, 1, 1).astype(np.float32), "imgclass_test/b"),
    ])  # fmt: skip
    front = [helper.make_node("Mul", [name, "imgclass_test/a"], ["imgclass_test/scaled"]),
             helper.make_node("Add", ["imgclass_test/scaled", "imgclass_test/b"], ["imgclass_test/folded"])]  # fmt: skip
    nodes = [*front, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dest))
    return dest


def test_the_doctor_photos_ship_small_with_their_licence_and_answers():
    entries = load_json("doctor.json")["photos"]
    assert len(entries) >= 3
    for entry in entries:
        path = data_dir() / entry["file"]
        assert 5_000 < path.stat().st_size < 80_000
        assert entry["licence"] in ("CC0", "public domain") and entry["source"]
        assert all(0 <= int(k) < 1000 for k in entry["classes"])


def test_doctor_refuses_a_model_that_is_not_imagenet(make_model):
    done = run_cli("models", "doctor", make_model("tiny", spatial=32, classes=10))
    assert done.returncode == 3 and "ImageNet-1k" in done.stderr


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_doctor_names_torchvision_for_the_real_mobilenet_v2(home):
    done = run_cli("models", "doctor", REAL_MODEL, "-f", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["recommended"] == "torchvision" and report["confident"]
    evidence = {e["preset"]: e for e in report["evidence"]}
    assert evidence["torchvision"]["mean"] > 0.5 and evidence["keras-caffe"]["mean"] < 0.1
    assert set(evidence["torchvision"]["probabilities"]) == {"coffee", "chelsea", "rocket"}


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_doctor_names_the_normalisation_folded_into_a_model(tmp_path, home):
    folded = fold_normalisation(REAL_MODEL, tmp_path / "mlperf-normalised.onnx", "mlperf-resnet")
    done = run_cli("models", "doctor", folded, "-f", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["current"] == "torchvision" and report["recommended"] == "mlperf-resnet"
    evidence = {e["preset"]: e["mean"] for e in report["evidence"]}
    assert evidence["mlperf-resnet"] > 0.5 > evidence["torchvision"] + 0.3
    table = run_cli("models", "doctor", folded)
    assert "recommended: mlperf-resnet" in table.stdout


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_preset_auto_uses_the_doctor_when_nothing_else_is_known_and_says_so(tmp_path, photos, home):
    folded = fold_normalisation(REAL_MODEL, tmp_path / "mlperf-normalised.onnx", "mlperf-resnet")
    done = run_cli("predict", photos["coffee.png"], "-m", folded, "--preset", "auto", "-f", "jsonl")
    assert done.returncode == 0, done.stderr
    record = jsonl(done.stdout)[0]
    assert record["preset"] == "mlperf-resnet" and record["predictions"][0]["label"] == "espresso"
    assert "the doctor's photos chose the preset 'mlperf-resnet'" in done.stderr
    plain = run_cli("predict", photos["coffee.png"], "-m", folded, "-f", "jsonl")
    assert jsonl(plain.stdout)[0]["preset"] == "torchvision" and "imgclass models doctor" in plain.stderr


@real_model
def test_preset_auto_keeps_what_a_sidecar_says(tmp_path, home):
    model = tmp_path / "m.onnx"
    model.write_bytes(REAL_MODEL.read_bytes())
    model.with_suffix(".json").write_text(json.dumps({"preset": "keras-tf"}))
    assert imgclass.load(model, preset="auto").preset == "keras-tf"


def test_preset_auto_on_a_model_the_doctor_cannot_check_keeps_the_default(make_model):
    clf = imgclass.load(make_model("tiny", spatial=32, classes=10, evidence=False), preset="auto")
    assert clf.model.preset.source == "default" and clf.warnings


@pytest.mark.parametrize("preset", ["keras-tf"])
def test_fold_normalisation_is_exact(preset):
    """The helper itself: x_tv = a * x_other + b for every pixel value."""
    other, tv = get_preset(preset), get_preset("torchvision")
    pixels = np.arange(256, dtype=np.float64)[:, None]
    x_other = (pixels * other.scale - np.asarray(other.mean)) / np.asarray(other.std)
    x_tv = (pixels * tv.scale - np.asarray(tv.mean)) / np.asarray(tv.std)
    a = np.asarray(other.std) / (255 * other.scale * np.asarray(tv.std))
    b = (np.asarray(other.mean) / (255 * other.scale) - np.asarray(tv.mean)) / np.asarray(tv.std)
    assert np.allclose(a * x_other + b, x_tv)
