"""`imgclass train`: a logistic-regression head on a frozen bottleneck, cached features, a standalone model out."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import REAL_MODEL, real_model, run_cli
from PIL import Image

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.images import load_rgb
from imgclass.tasks.train import MIN_TRAIN, TrainOptions, needed_images, read_training_data, train

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def photo_classes(root: Path, names=PHOTOS[:3], per_class: int = 7, seed: int = 0, side: int = 160) -> Path:
    """One folder per scikit-image photo: random crops (60-95 % of each side), every other one flipped."""
    import skimage.data

    rng = np.random.default_rng(seed)
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        width, height = image.size
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            scale = rng.uniform(0.6, 0.95)
            w, h = int(width * scale), int(height * scale)
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            crop = image.crop((x, y, x + w, y + h)).resize((side, side * h // w))
            if i % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(root / name / f"{name}_{i}.jpg", quality=90)
    return root


def in_process(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run([str(a) for a in args], Environment(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def predict_proba_cli(model: Path, image: Path, classes: int) -> np.ndarray:
    code, out, err = in_process("predict", image, "--model", model, "--top", classes, "-f", "json")
    assert code == 0, err
    probabilities = np.zeros(classes)
    for p in json.loads(out)[0]["predictions"]:
        probabilities[p["index"]] = p["probability"]
    return probabilities


@pytest.mark.parametrize("names", [PHOTOS[:3], PHOTOS[:2]])  # 3 classes; 2: sklearn's one-row binary model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_head_equals_predict_proba_and_predict_equals_both(tmp_path, make_model, home, names):
    data = photo_classes(tmp_path / "data", names)
    base = make_model("tiny", spatial=32)
    clf = imgclass.load(base)
    result = train(clf, data, tmp_path / "mine.onnx", TrainOptions(augment=1, cs=(0.1, 1.0, 10.0)))
    estimator = result.estimator
    split = read_training_data(data)
    images = [Path(p) for p, _ in split.val] + [Path(p) for p, _ in split.train[:3]]
    features = np.stack([clf.vector(p) for p in images])
    sklearn = estimator.predict_proba(features)
    logits = features @ result.weight.T + result.bias
    head = np.exp(logits - logits.max(1, keepdims=True))
    head /= head.sum(1, keepdims=True)
    np.testing.assert_allclose(head, sklearn, atol=1e-5)
    session = ort.InferenceSession(str(tmp_path / "mine.onnx"), providers=["CPUExecutionProvider"])
    batch = np.stack([clf.model.transform(load_rgb(p, clf.decode)) for p in images])  # decoded as imgclass does
    np.testing.assert_allclose(session.run(None, {"x": batch})[0], sklearn, atol=1e-5)
    for image, expected in zip(images[:3], sklearn, strict=False):
        np.testing.assert_allclose(predict_proba_cli(tmp_path / "mine.onnx", image, len(names)), expected, atol=1e-5)
    assert sklearn.std() > 0.01  # not a degenerate head: the check above could fail


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_model_metadata_predict_evaluate_and_pull_by_name(tmp_path, make_model, home):
    data = photo_classes(tmp_path / "data")
    mine = tmp_path / "mine.onnx"
    code, out, err = in_process("train", data, "--model", make_model("tiny", spatial=32), "-o", mine, "--augment", "0",
                                "--format", "json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    meta = {p.key: p.value for p in onnx.load(str(mine)).metadata_props}
    assert json.loads(meta["imgclass.labels"]) == ["astronaut", "chelsea", "coffee"] == report["classes"]
    provenance = json.loads(meta["imgclass.provenance"])
    assert provenance["classes"] == report["classes"] and provenance["C"] == report["c"]
    assert provenance["images"] == {"train": 18, "val": 3, "skipped": 0}
    assert len(provenance["source_sha256"]) == 64 and provenance["date"].endswith("+00:00")
    base = imgclass.load(make_model("tiny", spatial=32))
    info = imgclass.load(mine).info
    assert info["preset"] == base.info["preset"] and info["preprocessing"] == base.info["preprocessing"]
    assert info["preset_source"] == "metadata" and info["labels"] == "metadata imgclass.labels"
    assert info["classes"] == 3 and info["activation"] == "softmax" and not info["activation_applied"] == "softmax"
    image = data / "coffee" / "coffee_0.jpg"
    printed = run_cli("predict", image, "--model", mine, "--top", "3", "-f", "json")
    labels = [p["label"] for p in json.loads(printed.stdout)[0]["predictions"]]
    assert sorted(labels) == ["astronaut", "chelsea", "coffee"]
    code, out, _ = in_process("evaluate", data, "--model", mine, "-f", "json")
    assert code == 0 and json.loads(out)["images"] == 21
    assert in_process("models", "pull", "--file", mine, "--name", "mine")[0] == 0
    code, out, _ = in_process("predict", image, "--model", "mine", "-f", "json", "--top", "3")
    assert (
        code == 0
        and json.loads(out)[0]["predictions"][0]["label"] == json.loads(printed.stdout)[0]["predictions"][0]["label"]
    )


def test_report_counts_and_per_class_scores(tmp_path, make_model, home):
    data = photo_classes(tmp_path / "data", per_class=8)
    code, out, _ = in_process("train", data, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "m.onnx", "--force",
                              "--augment", "2", "--c", "1", "-f", "json")  # fmt: skip
    report = json.loads(out)
    assert code == 0
    assert (report["train_images"], report["val_images"], report["training_vectors"]) == (18, 6, 54)
    assert [c["val_images"] for c in report["per_class"]] == [2, 2, 2]
    confusion = np.array(report["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 6
    assert report["val_top1"] == pytest.approx(np.trace(confusion) / 6)
    for i, c in enumerate(report["per_class"]):
        assert c["recall"] == pytest.approx(confusion[i, i] / 2)
        assert c["precision"] == (
            pytest.approx(confusion[i, i] / confusion[:, i].sum()) if confusion[:, i].sum() else None
        )
    assert report["c"] == 1.0 and list(report["cv_scores"]) == ["1"]
    assert set(report["seconds"]) == {"scan", "features", "fit", "validate", "export"}
    table = in_process("train", data, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "m.onnx", "--force",
                       "--augment", "2", "--c", "1")[1]  # fmt: skip
    assert "confusion matrix" in table and "val top-1" in table and "60 vectors read, 0 computed" in table


@pytest.mark.slow
def test_a_second_run_with_other_settings_does_not_run_the_backbone(tmp_path, make_model, home):
    data = photo_classes(tmp_path / "data", per_class=8)
    model = make_model("tiny", spatial=32)
    args = ("train", data, "--model", model, "-o", tmp_path / "m.onnx", "--force", "--augment", "2", "-f", "json")
    first = json.loads(in_process(*args)[1])["cache"]
    assert first == {"enabled": True, "hits": 0, "computed": 18 * 3 + 6}
    second = json.loads(in_process(*args, "--c", "0.5,5", "--folds", "3")[1])["cache"]
    assert second == {"enabled": True, "hits": 60, "computed": 0}
    # another split: a larger validation fraction holds out a superset (nothing new to compute);
    # a smaller one moves images into training, and only their crops are new
    assert json.loads(in_process(*args, "--val-split", "0.4")[1])["cache"]["computed"] == 0
    val = {f: {p for p, _ in read_training_data(data, f).val} for f in (0.1, 0.2, 0.4)}
    assert val[0.1] < val[0.2] < val[0.4]
    third = json.loads(in_process(*args, "--val-split", "0.1")[1])["cache"]
    assert third["computed"] == 2 * len(val[0.2] - val[0.1]) == 6
    off = json.loads(in_process(*args, "--no-cache")[1])["cache"]
    assert off == {"enabled": False, "hits": 0, "computed": 60}


@pytest.mark.slow
def test_unreadable_images_are_reported_skipped_and_counted(tmp_path, make_model, home):
    data = photo_classes(tmp_path / "data")
    (data / "coffee" / "zz_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    code, out, err = in_process("train", data, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "m.onnx", "--force",
                                "--augment", "1", "-f", "json")  # fmt: skip
    report = json.loads(out)
    assert code == 1
    assert [Path(f["path"]).name for f in report["failures"]] == ["zz_broken.jpg"]
    assert (tmp_path / "m.onnx").is_file() and "1 unreadable image(s) skipped" in err
    assert report["train_images"] + report["val_images"] == 21
    # when skipping leaves a class short, training is refused, saying how many it has
    for path in sorted((data / "chelsea").iterdir())[:3]:
        path.write_bytes(b"garbage")
    code, _, err = in_process("train", data, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "n.onnx")
    assert code == 2 and "class 'chelsea' has" in err and f"at least {MIN_TRAIN} are needed" in err
    assert not (tmp_path / "n.onnx").exists()


def test_refusals(tmp_path, make_model, home):
    model = make_model("tiny", spatial=32)
    one = photo_classes(tmp_path / "one", names=("coffee",))
    code, _, err = in_process("train", one, "--model", model, "-o", tmp_path / "m.onnx", "--force")
    assert code == 2 and "at least 2 class folders (only 'coffee')" in err
    few = photo_classes(tmp_path / "few")
    for path in sorted((few / "chelsea").iterdir())[3:]:
        path.unlink()
    code, _, err = in_process("train", few, "--model", model, "-o", tmp_path / "m.onnx", "--force")
    assert code == 2 and f"class 'chelsea' has 3 images; at least {needed_images(0.2)} are needed" in err
    assert needed_images(0.2) == 6 and needed_images(0.4) == 8
    code, _, err = in_process("train", tmp_path / "missing", "--model", model, "-o", tmp_path / "m.onnx", "--force")
    assert code == 2 and "not a folder" in err
    code, _, err = in_process("train", few, "--model", model, "-o", tmp_path / "nowhere" / "m.onnx")
    assert code == 2
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_train_and_val_folders_are_used_as_given(tmp_path, make_model, home):
    root = tmp_path / "data"
    photo_classes(root / "train", per_class=6)
    photo_classes(root / "val", names=PHOTOS[:2], per_class=2, seed=7)
    code, out, err = in_process("train", root, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "m.onnx", "--force",
                                "--augment", "0", "-f", "json")  # fmt: skip
    report = json.loads(out)
    assert code == 0, err
    assert report["layout"] == "train/val" and (report["train_images"], report["val_images"]) == (18, 4)
    assert [c["val_images"] for c in report["per_class"]] == [0, 2, 2] and report["per_class"][0]["recall"] is None
    photo_classes(root / "val", names=("rocket",), per_class=1)
    code, _, err = in_process(
        "train", root, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "m.onnx", "--force"
    )
    assert code == 2 and "'rocket' are not in" in err


def test_without_scikit_learn_train_names_the_extra(tmp_path, make_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    code, _, err = in_process("train", photo_classes(tmp_path / "d"), "--model", make_model("tiny", spatial=32),
                              "-o", tmp_path / "m.onnx", "--force")  # fmt: skip
    assert code == 2 and "pip install 'imgclass[train]'" in err


def test_a_model_without_a_bottleneck_exits_3(tmp_path, home):
    from test_surgery import _headless, _labels

    code, _, err = in_process("train", photo_classes(tmp_path / "d"), "--model", _headless(tmp_path),
                              "--labels", _labels(tmp_path), "-o", tmp_path / "m.onnx", "--force")  # fmt: skip
    assert code == 3 and "no bottleneck to train on" in err


@pytest.mark.slow
@real_model
def test_real_model_learns_photo_classes_and_predicts_them_by_name(tmp_path, home):
    data = photo_classes(tmp_path / "data", names=PHOTOS, per_class=10, side=256)
    mine = tmp_path / "photos.onnx"
    proc = run_cli("train", data, "--model", REAL_MODEL, "--preset", "torchvision", "-o", mine, "--augment", "2",
                   "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["val_top1"] >= 0.9 and report["dim"] == 1280
    fresh = photo_classes(tmp_path / "fresh", names=PHOTOS, per_class=2, seed=99, side=256)
    printed = run_cli("batch", fresh, "-r", "--model", mine, "--top", "1", "-f", "jsonl")
    rows = [json.loads(line) for line in printed.stdout.splitlines()]
    assert len(rows) == 8
    right = sum(r["predictions"][0]["label"] == Path(r["path"]).parent.name for r in rows)
    assert right >= 7, rows


def test_views_are_seeded_by_content_and_index_and_drop_draft_geometry(photos):
    from imgclass.data.images import DRAFT_INFO, DecodeOptions
    from imgclass.tasks.features import View, file_digest

    path = str(photos["china.jpg"])
    full = load_rgb(path)
    draft = load_rgb(path, DecodeOptions(draft_min_short_side=100))
    assert DRAFT_INFO in draft.info and draft.size != full.size  # a reduced-scale decode
    digest = file_digest(path)
    first, again = View(path, digest, 1, 0).view(full), View(path, digest, 1, 0).view(full)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    others = [np.asarray(View(path, digest, i, s).view(full)) for i, s in ((2, 0), (1, 1))]
    assert all(o.shape != np.asarray(first).shape or not np.array_equal(o, first) for o in others)
    assert View(path, digest, 0).view(full) is full
    cropped = View(path, digest, 1, 0).view(draft)
    assert DRAFT_INFO not in cropped.info and cropped.width <= draft.width


@pytest.mark.slow
@real_model
def test_real_model_matches_a_hand_written_logistic_regression_and_batch_reproduces_it(tmp_path, home):
    from sklearn.linear_model import LogisticRegression

    data = photo_classes(tmp_path / "data", names=PHOTOS, per_class=8, seed=5, side=224)
    mine = tmp_path / "mine.onnx"
    code, out, err = in_process("train", data, "--model", REAL_MODEL, "--preset", "torchvision", "-o", mine,
                                "--augment", "0", "--c", "1", "-f", "json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    # by hand: the same split, the bottleneck read with onnxruntime, scikit-learn's defaults
    split = read_training_data(data)
    clf = imgclass.load(REAL_MODEL, preset="torchvision")
    x = np.stack([clf.vector(p) for p, _ in split.train])
    by_hand = LogisticRegression(C=1.0, max_iter=1000).fit(x, [c for _, c in split.train])
    x_val, y_val = np.stack([clf.vector(p) for p, _ in split.val]), np.array([c for _, c in split.val])
    assert report["val_top1"] == pytest.approx(float((by_hand.predict(x_val) == y_val).mean()))
    # the saved model gives the same answers through batch: the hand-written model's probabilities
    printed = run_cli("batch", *[p for p, _ in split.val], "--model", mine, "-k", "4", "-f", "jsonl").stdout
    rows = [json.loads(line) for line in printed.splitlines()]
    assert [r["path"] for r in rows] == [p for p, _ in split.val]
    probabilities = np.zeros((len(rows), 4))
    for i, row in enumerate(rows):
        for p in row["predictions"]:
            probabilities[i, p["index"]] = p["probability"]
    np.testing.assert_allclose(probabilities, by_hand.predict_proba(x_val), atol=1e-4)
    assert float((probabilities.argmax(1) == y_val).mean()) == pytest.approx(report["val_top1"])
