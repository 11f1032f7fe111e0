"""Preprocessing travels (issue 20, reproductions 10, 11 and 12): what `models quantize`, `models pull --file`
and `train` write, used alone, is preprocessed and scored as its source with its sidecar; a model with no
preprocessing evidence says so."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import onnx
import pytest
from conftest import REAL_MODEL, jsonl, real_model, run_cli

import imgclass

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import dequantize  # noqa: E402
from support.photo_crops import random_crops  # noqa: E402

# Not the default preset in three ways, so a file that lost it scores differently.
SIDECAR = {"preset": "torchvision", "crop_pct": 0.95, "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5]}


def with_sidecar(source: Path, dest: Path) -> Path:
    shutil.copyfile(source, dest)
    dest.with_suffix(".json").write_text(json.dumps(SIDECAR))
    return dest


def fields(model) -> dict:
    data = imgclass.load(model).model.preset.preset.to_dict()
    return {k: v for k, v in data.items() if k not in ("name", "description", "source")}


def predictions(model, images) -> list:
    done = run_cli("predict", *images, "-m", model, "-f", "jsonl", "--top", "3")
    assert done.returncode == 0, done.stderr
    return [[(p["index"], round(p["probability"], 6)) for p in r["predictions"]] for r in jsonl(done.stdout)]


def test_no_preprocessing_evidence_is_said_once_with_the_remedy(make_model, photos):
    tiny = make_model("tiny", spatial=32, evidence=False)
    done = run_cli("predict", photos["coffee.png"], photos["chelsea.png"], "-m", tiny, "-f", "jsonl")
    assert done.returncode == 0
    warnings = [line for line in done.stderr.splitlines() if "nothing says how to preprocess" in line]
    assert len(warnings) == 1, done.stderr
    assert "--preset" in warnings[0] and "imgclass models doctor" in warnings[0]
    assert not imgclass.load(tiny).info["preset_evidence"] and imgclass.load(tiny).warnings


def test_a_preset_or_sidecar_is_evidence_and_nothing_is_said(tmp_path, make_model, photos):
    tiny = with_sidecar(make_model("tiny", spatial=32, evidence=False), tmp_path / "m.onnx")
    done = run_cli("predict", photos["coffee.png"], "-m", tiny, "-f", "jsonl")
    assert done.returncode == 0 and "nothing says" not in done.stderr
    flagged = run_cli("predict", photos["coffee.png"], "-m", make_model("tiny", spatial=32, evidence=False),
                      "--preset", "keras-tf")  # fmt: skip
    assert "nothing says" not in flagged.stderr


def test_pull_file_carries_the_sidecar_into_the_cached_copy(tmp_path, make_model, photos, home):
    source = with_sidecar(make_model("tiny", spatial=32, evidence=False), tmp_path / "m.onnx")
    assert run_cli("models", "pull", "--file", source, "--name", "mine").returncode == 0
    assert fields("mine") == fields(source)
    images = [photos["coffee.png"], photos["chelsea.png"], photos["china.jpg"]]
    assert predictions("mine", images) == predictions(source, images)


def test_pull_file_takes_the_preprocessing_options(tmp_path, make_model, photos, home):
    source = make_model("tiny", spatial=32, evidence=False)
    done = run_cli("models", "pull", "--file", source, "--name", "flagged", "--preset", "keras-tf", "--crop-pct", "0.9")
    assert done.returncode == 0, done.stderr
    info = imgclass.load("flagged").info
    assert info["preset_source"] == "metadata" and info["preprocessing"]["crop_pct"] == 0.9
    assert info["preprocessing"]["scale"] == imgclass.load(source, preset="keras-tf").info["preprocessing"]["scale"]


def test_pull_preprocessing_options_need_file(home):
    done = run_cli("models", "pull", "resnet50", "--preset", "keras-tf", "--offline")
    assert done.returncode == 2 and "only with --file" in done.stderr


@real_model
def test_real_model_pull_file_copy_scores_as_its_source_with_a_sidecar(tmp_path, photos, home):
    source = with_sidecar(REAL_MODEL, tmp_path / "mobilenetv2.onnx")
    assert run_cli("models", "pull", "--file", source, "--name", "mnv2").returncode == 0
    images = list(photos.values())
    assert predictions("mnv2", images) == predictions(source, images)


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_real_model_quantized_alone_scores_what_quantize_reported(tmp_path, photos, home):
    """Repro 10: quantize's evaluation saw the sidecar's preprocessing, the file alone must too."""
    fp32 = with_sidecar(dequantize.dequantize(REAL_MODEL, tmp_path / "fp32.onnx"), tmp_path / "mnv2-fp32.onnx")
    labelled = tmp_path / "labelled"
    for name, label in (("coffee.png", "967"), ("chelsea.png", "285")):
        (labelled / label).mkdir(parents=True)
        for path in random_crops([photos[name]], tmp_path / "crops", 3, 3):
            path.rename(labelled / label / path.name)
    calibration = tmp_path / "calibration"
    random_crops([photos[n] for n in ("china.jpg", "flower.jpg", "astronaut.png")], calibration, 4, 4)
    out = tmp_path / "int8.onnx"
    done = run_cli("models", "quantize", fp32, "--calibrate", calibration, "-o", out, "--evaluate", labelled,
                   "--max-drop", "100", "--format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout)["comparison"]["int8"]["top1"]
    alone = run_cli("evaluate", labelled, "-m", out, "-f", "json")
    assert json.loads(alone.stdout)["top1"] == reported
    assert fields(out) == fields(fp32)
    meta = {p.key for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert {"imgclass.preprocess", "imgclass.provenance"} <= meta


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_real_model_trained_head_alone_is_preprocessed_as_its_source(tmp_path, photos, home):
    from test_train import photo_classes

    source = with_sidecar(REAL_MODEL, tmp_path / "mobilenetv2.onnx")
    data = photo_classes(tmp_path / "data", names=("coffee", "chelsea", "astronaut"), per_class=7, side=200)
    out = tmp_path / "mine.onnx"
    done = run_cli("train", data, "--model", source, "-o", out, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert fields(out) == fields(source)
    images = sorted(data.rglob("*.jpg"))[:6]
    beside = with_sidecar(out, tmp_path / "mine-with-sidecar.onnx")  # as it was trained: the source's sidecar
    assert predictions(out, images) == predictions(beside, images)
