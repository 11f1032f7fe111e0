"""`imgclass models quantize`: int8 models that agree with fp32, carry their metadata, and refuse a bad drop."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REAL_MODEL, jsonl, real_model, run_cli
from PIL import Image

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.presets import Overrides
from imgclass.tasks.quantize import QuantizeOptions, head_nodes, precision_of, preset_metadata, quantize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import dequantize  # noqa: E402
from support.photo_crops import random_crops  # noqa: E402


def crops(photos: dict[str, Path], folder: Path, per: int, names=None, seed: int = 0) -> list[Path]:
    """Square crops (35-100% of the short side), some mirrored, of real photos, saved as JPEGs."""
    return random_crops([photos[name] for name in names or sorted(photos)], folder, per, seed)


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def labelled_by(classifier, images: list[Path], folder: Path) -> Path:
    """A labelled folder whose truth is `classifier`'s own top-1 (class-index folder names)."""
    for path in images:
        index = classifier.predict(path, top=1).predictions[0].index
        (folder / str(index)).mkdir(parents=True, exist_ok=True)
        (folder / str(index) / path.name).write_bytes(path.read_bytes())
    return folder


def inprocess(*args, **env_fields):
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), **env_fields)
    code = run([str(a) for a in args], env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def calibration(photos, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    crops(photos, folder, 4, seed=1)
    return folder


@pytest.fixture(scope="module")
def held_out(photos, tmp_path_factory) -> list[Path]:
    """Real photos and crops of them that are not among the calibration images."""
    folder = tmp_path_factory.mktemp("held-out")
    return [*photos.values(), *crops(photos, folder, 5, seed=7)]


def agreement(a, b, images) -> float:
    same = [a.predict(p, top=1).predictions[0].index == b.predict(p, top=1).predictions[0].index for p in images]
    return sum(same) / len(same)


@pytest.mark.slow
@pytest.mark.parametrize("kind, spatial", [("resnet50", 224), ("inception_v3", 299)])
def test_int8_agrees_with_fp32_and_predict_needs_no_flags(
    kind, spatial, make_model, calibration, held_out, tmp_path, home
):
    source = make_model(kind, spatial=spatial)
    out = tmp_path / f"{kind}-int8.onnx"
    done = run_cli("models", "quantize", source, "--calibrate", calibration, "--output", out, "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["output"] == str(out) and out.is_file()
    assert report["size_int8"] < report["size_fp32"] / 3  # int8 weights
    fp32, int8 = imgclass.load(source), imgclass.load(out)
    assert precision_of(onnx.load(str(out))) == "int8" and precision_of(onnx.load(str(source))) == "fp32"
    assert agreement(fp32, int8, held_out) >= 0.8
    meta = metadata(out)
    assert meta["imgclass.preset"] == fp32.model.preset.preset.name
    assert json.loads(meta["imgclass.labels"]) == list(fp32.labels)
    prov = json.loads(meta["imgclass.provenance"])
    assert prov["source"]["sha256"] == report["provenance"]["source"]["sha256"]
    assert prov["source"]["sha256"] == __import__("hashlib").sha256(source.read_bytes()).hexdigest()
    assert prov["calibration"]["images"] == len(list(calibration.iterdir()))
    assert len(prov["calibration"]["sha256"]) == 64 and prov["method"] == "entropy" and prov["format"] == "QDQ"
    assert prov["float_nodes"] and prov["onnxruntime"]
    assert int8.info["preset_source"] == "metadata" and int8.info["labels"] == "metadata imgclass.labels"
    predicted = run_cli("predict", held_out[0], "--model", out, "--format", "jsonl")
    assert predicted.returncode == 0, predicted.stderr
    record = jsonl(predicted.stdout)[0]
    assert record["preset"] == fp32.model.preset.preset.name
    assert record["predictions"][0]["label"] == int8.predict(held_out[0], top=1).predictions[0].label


def test_overridden_preprocessing_and_own_labels_travel_in_the_metadata(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=3, classes=4, spatial=32)
    labels = tmp_path / "labels.txt"
    labels.write_text("ant\nbee\ncat\ndog\n")
    calibration = tmp_path / "calibration"
    crops(photos, calibration, 1)
    out = tmp_path / "tiny-int8.onnx"
    code, stdout, stderr = inprocess("models", "quantize", source, "--calibrate", calibration, "-o", out,
                                     "--crop-pct", "0.95", "--interpolation", "bicubic", "--labels", labels,
                                     "--activation", "sigmoid")  # fmt: skip
    assert code == 0, stderr
    meta = metadata(out)
    assert json.loads(meta["imgclass.preprocess"]) == {"preset": "torchvision", "crop_pct": 0.95, "interpolation": "bicubic",
                                                       "sizes": {}}  # fmt: skip
    assert json.loads(meta["imgclass.labels"]) == ["ant", "bee", "cat", "dog"]
    assert meta["imgclass.activation"] == "sigmoid"
    int8 = imgclass.load(out)
    assert int8.model.preset.preset.crop_pct == 0.95 and int8.model.preset.preset.interpolation == "bicubic"
    assert int8.labels == ("ant", "bee", "cat", "dog") and int8.multi_label
    fp32 = imgclass.load(source, labels=labels)
    assert fp32.model.preset.preset.crop_pct != 0.95  # the flag made the difference, and the file kept it


def test_the_calibration_tensors_are_imgclass_preprocessing(make_model, photos, tmp_path, home, monkeypatch):
    """What ONNX Runtime is fed is exactly Transform(load_rgb(path)) for the chosen preset."""
    import imgclass.tasks.quantize as q

    source = make_model("tiny", seed=4, spatial=32)
    calibration = tmp_path / "calibration"
    images = crops(photos, calibration, 1, names=["coffee.png", "chelsea.png"])
    seen = []
    original = q._reader

    def spy(input_name, batches, progress):
        seen.extend(batches)
        return original(input_name, batches, progress)

    monkeypatch.setattr(q, "_reader", spy)
    quantize(source, calibration, tmp_path / "out.onnx", load_options=imgclass.LoadOptions(preset="keras-tf"))
    clf = imgclass.load(source, preset="keras-tf")
    expected = np.stack([clf.model.transform(__import__("imgclass.data.images").data.images.load_rgb(str(p), clf.decode))
                         for p in sorted(images)])  # fmt: skip
    assert len(seen) == 1 and np.array_equal(seen[0], expected)
    assert metadata(tmp_path / "out.onnx")["imgclass.preset"] == "keras-tf"


def test_max_drop_refuses_with_exit_3_and_writes_nothing(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=5, spatial=32)
    fp32 = imgclass.load(source)
    labelled = labelled_by(fp32, crops(photos, tmp_path / "eval", 3, seed=9), tmp_path / "labelled")
    dark = tmp_path / "dark"  # one flat black image: every activation range is wrong for real photos
    dark.mkdir()
    Image.new("RGB", (64, 64)).save(dark / "black.png")
    out = tmp_path / "out" / "int8.onnx"
    out.parent.mkdir()
    code, stdout, stderr = inprocess("models", "quantize", source, "--calibrate", dark, "-o", out, "--evaluate", labelled,
                                     "--max-drop", "0", "--name", "never")  # fmt: skip
    assert code == 3, stderr
    assert "nothing written" in stderr and "--max-drop" in stderr
    assert list(out.parent.iterdir()) == []
    assert "top-1" in stdout and "100.0%" in stdout  # the comparison is shown: fp32 scores its own labels
    assert "never" not in run_cli("models", "list", "--format", "json").stdout


def test_an_accepted_model_records_its_evaluation(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=5, spatial=32)
    fp32 = imgclass.load(source)
    labelled = labelled_by(fp32, crops(photos, tmp_path / "eval", 2, seed=9), tmp_path / "labelled")
    calibration = tmp_path / "calibration"
    crops(photos, calibration, 2, seed=2)
    done = run_cli("models", "quantize", source, "--calibrate", calibration, "--name", "tiny-int8",
                   "--evaluate", labelled, "--max-drop", "100", "-f", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout is the report alone: ONNX Runtime's calibrators print, not here
    comparison = report["comparison"]
    assert comparison["fp32"]["top1"] == 1.0 and comparison["accepted"] is True
    assert comparison["drop"] == pytest.approx((1.0 - comparison["int8"]["top1"]) * 100)
    assert comparison["fp32"]["model_only_images_per_s"] > 0 and comparison["int8"]["model_only_images_per_s"] > 0
    assert comparison["images"] == sum(1 for _ in labelled.rglob("*.jpg"))
    int8 = imgclass.load("tiny-int8")  # by name, from the cache
    prov = json.loads(int8.model.signature.metadata["imgclass.provenance"])
    assert prov["evaluation"]["top1_fp32"] == 1.0 and prov["evaluation"]["images"] == comparison["images"]
    again = run_cli("models", "quantize", source, "--calibrate", calibration, "--name", "tiny-int8")
    assert again.returncode == 2 and "--force" in again.stderr


def test_progress_lines_on_a_terminal(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=6, spatial=32)
    calibration = tmp_path / "calibration"
    crops(photos, calibration, 2)
    code, _, stderr = inprocess("models", "quantize", source, "--calibrate", calibration, "-o", tmp_path / "o.onnx",
                                stderr_isatty=True)  # fmt: skip
    assert code == 0, stderr
    assert "reading calibration images 10/10" in stderr and "calibrating 2/2" in stderr
    assert stderr.endswith("\r\x1b[2K")  # cleared at the end
    code, _, quiet = inprocess("models", "quantize", source, "--calibrate", calibration, "-o", tmp_path / "p.onnx")
    assert code == 0 and "calibrating" not in quiet  # not a terminal: no progress


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--calibrate", "{cal}"], 2, "--output OUT.onnx, --name NAME"),
        (["--calibrate", "{tmp}/missing", "-o", "{tmp}/o.onnx"], 2, "no such folder"),
        (["--calibrate", "{tmp}/empty", "-o", "{tmp}/o.onnx"], 2, "no images"),
        (["--calibrate", "{cal}", "-o", "{tmp}"], 2, "is a directory"),
        (["--calibrate", "{cal}", "-o", "{tmp}/nowhere/o.onnx"], 2, "does not exist"),
        (["--calibrate", "{cal}", "-o", "{source}"], 2, "is one of the inputs"),
        (["--calibrate", "{cal}", "--name", "resnet50"], 2, "catalog model's name"),
        (["--calibrate", "{cal}", "-o", "{tmp}/o.onnx", "--method", "kl"], 2, "kl"),
    ],
)
def test_bad_requests_fail_before_calibrating(args, code, message, make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=7, spatial=32)
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png"])
    (tmp_path / "empty").mkdir()
    filled = [a.format(cal=cal, tmp=tmp_path, source=source) for a in args]
    code_, _, stderr = inprocess("models", "quantize", source, *filled)
    assert code_ == code and message in stderr, stderr
    assert not (tmp_path / "o.onnx").exists()


def test_an_int8_model_is_not_quantised_again(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=8, spatial=32)
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png"])
    first = tmp_path / "int8.onnx"
    assert inprocess("models", "quantize", source, "--calibrate", cal, "-o", first)[0] == 0
    code, _, stderr = inprocess("models", "quantize", first, "--calibrate", cal, "-o", tmp_path / "again.onnx")
    assert code == 3 and "already quantised" in stderr


def test_unreadable_calibration_images_are_skipped_and_counted(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=9, spatial=32)
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png", "chelsea.png"])
    (cal / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    result = quantize(source, cal, tmp_path / "o.onnx")
    assert [Path(p).name for p, _ in result.skipped] == ["broken.jpg"]
    assert result.provenance["calibration"]["images"] == 2


def test_head_nodes_are_the_classifier_and_what_follows(make_model):
    model = onnx.load(str(make_model("tiny", seed=1, spatial=32, head="softmax", behind=("Reshape",))))
    ops = {n.name: n.op_type for n in model.graph.node}
    names = head_nodes(model, model.graph.output[0].name)
    assert [ops[n] for n in names] == ["Reshape", "Softmax", "Gemm"]
    assert head_nodes(model, "no such tensor") == []


def test_a_builtin_preset_unchanged_is_stored_by_name(make_model, photos, tmp_path, home):
    clf = imgclass.load(make_model("tiny", seed=2, spatial=32), preset="timm-inception")
    assert preset_metadata(clf) == {"imgclass.preset": "timm-inception"}
    source = make_model("tiny", seed=2, spatial=None)
    dynamic = imgclass.load(source, overrides=Overrides(size=48))
    assert json.loads(preset_metadata(dynamic)["imgclass.preprocess"]) == {
        "preset": "torchvision",
        "default_size": 48,
    }
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png"])
    quantize(source, cal, tmp_path / "o.onnx", load_options=imgclass.LoadOptions(overrides=Overrides(size=48)))
    assert imgclass.load(tmp_path / "o.onnx").model.transform.height == 48  # the size it was calibrated at


def test_options_are_checked():
    with pytest.raises(imgclass.UsageError, match="method .kl."):
        quantize("x.onnx", ".", Path("o.onnx"), options=QuantizeOptions(method="kl"))


@real_model
@pytest.mark.slow
def test_real_model_fp32_against_int8_end_to_end(photos, tmp_path, home):
    """The zoo's int8 MobileNet v2 made float again, quantised by imgclass, and compared on labelled photos."""
    fp32_path = dequantize.dequantize(REAL_MODEL, tmp_path / "mobilenetv2-fp32.onnx")
    assert precision_of(onnx.load(str(fp32_path))) == "fp32"
    labelled = tmp_path / "labelled"
    for name, label in (("coffee.png", "967"), ("chelsea.png", "285")):  # espresso, Egyptian cat (class indices)
        (labelled / label).mkdir(parents=True)
        for path in crops(photos, tmp_path / "crops", 3, names=[name], seed=3):
            path.rename(labelled / label / path.name)
    calibration = tmp_path / "calibration"
    crops(photos, calibration, 4, names=["china.jpg", "flower.jpg", "astronaut.png"], seed=4)
    out = tmp_path / "mobilenetv2-int8.onnx"
    done = run_cli("models", "quantize", fp32_path, "--calibrate", calibration, "-o", out, "--evaluate", labelled,
                   "--max-drop", "100", "--format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)["comparison"]
    assert comparison["images"] == 6
    assert comparison["fp32"]["top1"] is not None and comparison["int8"]["top1"] is not None
    assert comparison["fp32"]["top5"] >= comparison["fp32"]["top1"] and comparison["fp32"]["top5"] > 0.5
    assert comparison["int8"]["model_only_images_per_s"] > 0
    assert json.loads(metadata(out)["imgclass.provenance"])["evaluation"]["images"] == 6
    assert run_cli("predict", photos["coffee.png"], "--model", out, "-f", "jsonl").returncode == 0
    again = run_cli("models", "quantize", REAL_MODEL, "--calibrate", calibration, "-o", tmp_path / "x.onnx")
    assert again.returncode == 3 and "already quantised" in again.stderr


def test_catalog_marks_int8_entries_and_models_list_shows_precision(home):
    from imgclass.store import catalog

    int8 = {e.name: e.quantized_from for e in catalog.entries() if e.precision == "int8"}
    assert int8 == {"resnet50-v1-12-int8": "resnet50-v1-12", "resnet50-v1-12-qdq": "resnet50-v1-12"}
    assert {e.precision for e in catalog.entries()} == {"int8", "fp32"}
    listed = json.loads(run_cli("models", "list", "--format", "json").stdout)
    assert {r["name"]: r["precision"] for r in listed}["resnet50-v1-12-int8"] == "int8"
    table = run_cli("models", "list", env={"COLUMNS": "200"}).stdout
    line = next(row for row in table.splitlines() if "resnet50-v1-12-qdq" in row)
    assert "precision" in table and "int8" in line


def test_bench_and_info_put_int8_beside_the_fp32_it_came_from(make_model, photos, tmp_path, home):
    source = tmp_path / "src" / "tiny.onnx"
    source.parent.mkdir()
    source.write_bytes(make_model("tiny", seed=10, spatial=32).read_bytes())
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png", "chelsea.png"])
    out = tmp_path / "tiny-int8.onnx"
    assert inprocess("models", "quantize", source, "--calibrate", cal, "-o", out)[0] == 0
    code, stdout, stderr = inprocess("bench", "--model", out, "--synthetic", "8", "-f", "json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["precision"] == "int8" and result["compared_with"]["precision"] == "fp32"
    assert result["compared_with"]["model"] == str(source)
    ratio = result["int8_vs_fp32"]["model_only_ratio"]
    assert ratio == pytest.approx(
        result["model_only_images_per_s"] / result["compared_with"]["model_only_images_per_s"]
    )
    assert "compared_with" not in json.loads(inprocess("bench", "--model", out, "--synthetic", "8", "-f", "json",
                                                       "--compare", "none")[1])  # fmt: skip
    explicit = json.loads(inprocess("bench", "--model", source, "--synthetic", "8", "-f", "json", "--compare", out)[1])
    assert explicit["int8_vs_fp32"]["model_only_ratio"] > 0 and explicit["compared_with"]["model"] == str(out)
    info = json.loads(inprocess("models", "info", out, "-f", "json")[1])
    assert (
        info["precision"] == "int8"
        and json.loads(inprocess("models", "info", source, "-f", "json")[1])["precision"] == "fp32"
    )
    source.write_bytes(make_model("tiny", seed=11, spatial=32).read_bytes())  # not the file it was made from any more
    assert "compared_with" not in json.loads(inprocess("bench", "--model", out, "--synthetic", "8", "-f", "json")[1])


def test_calibration_batches_are_read_when_asked_and_fill_a_fixed_batch(make_model, photos, tmp_path):
    """Streamed: nothing is decoded before a batch is asked for, and none is kept after (memory is one batch)."""
    from imgclass.tasks.quantize import Calibration

    clf = imgclass.load(make_model("tiny", seed=4, spatial=32))
    paths = sorted(map(str, crops(photos, tmp_path / "cal", 1)))  # 5 photos
    (tmp_path / "cal" / "zz-broken.jpg").write_bytes(b"not an image")
    paths.append(str(tmp_path / "cal" / "zz-broken.jpg"))
    fixed = Calibration(clf, paths, 4, fixed=True)
    assert fixed.used == [] and len(fixed) == 2
    second = fixed[1]  # photo 5 and the broken file: one sample, repeated to fill the batch
    assert second.shape == (4, 3, 32, 32) and all(np.array_equal(second[0], second[i]) for i in range(4))
    assert fixed.used == [paths[4]] and [p for p, _ in fixed.skipped] == [paths[5]]
    assert not hasattr(fixed, "samples") and fixed[0].shape == (4, 3, 32, 32)
    assert Calibration(clf, paths, 4, fixed=False)[1].shape == (1, 3, 32, 32)


def test_a_fixed_batch_model_is_calibrated_in_its_own_batch_size(make_model, photos, tmp_path, home):
    source = make_model("tiny", seed=12, spatial=32, batch=1)
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png", "chelsea.png", "china.jpg"])
    result = quantize(source, cal, tmp_path / "o.onnx", options=QuantizeOptions(method="minmax"))
    assert result.provenance["calibration"]["images"] == 3 and result.provenance["method"] == "minmax"
    assert imgclass.load(tmp_path / "o.onnx").predict(photos["coffee.png"]).predictions


def test_an_evaluation_folder_that_cannot_be_scored_is_refused_before_calibrating(make_model, photos, tmp_path, home,
                                                                                  monkeypatch):  # fmt: skip
    import imgclass.tasks.quantize as q

    source = make_model("tiny", seed=13, spatial=32)
    cal = tmp_path / "cal"
    crops(photos, cal, 1, names=["coffee.png"])
    bad = tmp_path / "bad" / "not a class at all"
    bad.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(bad / "a.png")
    monkeypatch.setattr(q, "_build", lambda *a: pytest.fail("calibrated before checking the evaluation folder"))
    code, _, stderr = inprocess("models", "quantize", source, "--calibrate", cal, "-o", tmp_path / "o.onnx",
                                "--evaluate", tmp_path / "bad")  # fmt: skip
    assert code == 2 and "not a class at all" in stderr


def test_only_this_tools_provenance_marks_a_model_int8(make_model, tmp_path, home):
    from imgclass.tasks.quantize import _quantized_by_imgclass, model_precision

    trained = {"imgclass.provenance": json.dumps({"source_model": "resnet50", "source_sha256": "ab" * 32})}
    assert (
        _quantized_by_imgclass(trained) is None and _quantized_by_imgclass({"imgclass.provenance": "not json"}) is None
    )
    assert _quantized_by_imgclass({"imgclass.provenance": json.dumps({"quantizer": "x"})}) == {"quantizer": "x"}
    source = make_model("tiny", seed=14, spatial=32, metadata=tuple(trained.items()))
    assert model_precision(source, str(source)) == "fp32"


def test_one_model_at_a_time(make_model, photos, tmp_path, home):
    a, b = make_model("tiny", seed=15, spatial=32), make_model("tiny", seed=16, spatial=32)
    code, _, stderr = inprocess(
        "models", "quantize", a, "--model", b, "--calibrate", tmp_path, "-o", tmp_path / "o.onnx"
    )
    assert code == 2 and "one at a time" in stderr
