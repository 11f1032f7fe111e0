"""Nothing silent (issue 20, reproductions 13, 16 and 20): labels by name first, weights that cannot
overflow, typed errors for bad API arguments, label lists with a BOM or nulls."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image
from support import onnx_builders as builders

import imgclass
from imgclass.errors import InputError, UsageError


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


def _numbered_model(path):
    """Three classes whose labels are the numbers 3, 1, 2: folder "1" is class 1 by name, not index 1."""
    meta = (("imgclass.labels", json.dumps(["3", "1", "2"])),)
    return builders.save(builders.tiny(builders.Signature(spatial=32, classes=3, metadata=meta)), path)


def _class_folders(root, names, per_class=2):
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40, 40), (len(name) * 40, i * 60, 90)).save(root / name / f"{i}.png")
    return root


def test_evaluate_matches_numeric_folders_to_labels_by_name_first(tmp_path):
    model = _numbered_model(tmp_path / "m.onnx")
    data = _class_folders(tmp_path / "d", ["1", "2", "3"])
    done = run_cli("evaluate", data, "-m", model, "--format", "json", "--mapping")
    assert done.returncode == 0, done.stderr
    mapping = {row["name"]: (row["index"], row["matched_by"]) for row in json.loads(done.stdout)["mapping"]}
    assert mapping == {"1": (1, "label"), "2": (2, "label"), "3": (0, "label")}


def test_evaluate_list_with_a_bom_is_read(tmp_path, tiny):
    _class_folders(tmp_path / "d", ["a"])
    listing = tmp_path / "list.csv"
    listing.write_bytes("\ufeffpath,label\nd/a/0.png,3\nd/a/1.png,3\n".encode())
    done = run_cli("evaluate", listing, "-m", tiny, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 2


@pytest.mark.parametrize("line", ['{"path": null, "label": 3}', '{"path": "d/a/0.png", "label": null}'])
def test_evaluate_jsonl_null_is_refused_with_a_message(tmp_path, tiny, line):
    _class_folders(tmp_path / "d", ["a"])
    listing = tmp_path / "list.jsonl"
    listing.write_text(line + "\n")
    done = run_cli("evaluate", listing, "-m", tiny)
    assert done.returncode == 2
    assert "line 1" in done.stderr and "null" in done.stderr and "None" not in done.stderr


def test_train_takes_a_class_named_train_beside_other_classes(tmp_path, tiny):
    from imgclass.tasks.train import read_training_data

    root = _class_folders(tmp_path / "d", ["bus", "car", "train"], per_class=6)
    split = read_training_data(root)
    assert sorted(split.classes) == ["bus", "car", "train"]


def test_train_refuses_an_ambiguous_train_folder(tmp_path):
    from imgclass.tasks.train import read_training_data

    root = _class_folders(tmp_path / "d", ["bus", "car"], per_class=6)
    _class_folders(root / "train", ["x", "y"], per_class=6)
    with pytest.raises(UsageError, match="'train' holds class folders"):
        read_training_data(root)


def test_ensemble_weights_that_overflow_a_sum_are_normalised(tiny, photos):
    done = run_cli("predict", photos["coffee.png"], "-m", tiny, "-m", tiny, "--weights", "1e308,1e308",
                   "--format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    single = run_cli("predict", photos["coffee.png"], "-m", tiny, "--format", "json")
    probs = [p["probability"] for p in json.loads(done.stdout)[0]["predictions"]]
    assert probs == pytest.approx([p["probability"] for p in json.loads(single.stdout)[0]["predictions"]], rel=1e-5)
    assert probs[0] > 0


@pytest.mark.parametrize("image", [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)])
def test_api_predict_of_an_empty_array_is_an_input_error(tiny, image):
    with pytest.raises(InputError, match="no pixels"):
        imgclass.load(tiny).predict(image)


def test_api_predict_of_an_empty_pil_image_is_an_input_error(tiny):
    with pytest.raises(InputError, match="no pixels"):
        imgclass.load(tiny).predict(Image.new("RGB", (0, 0)))


def test_api_classify_none_is_a_usage_error(tiny):
    with pytest.raises(UsageError, match="not NoneType"):
        imgclass.load(tiny).classify(None)  # type: ignore[arg-type]


def test_api_classify_a_folder_as_a_string_is_one_input(tmp_path, tiny, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos["coffee.png"]).save(folder / "coffee.png")
    records = list(imgclass.load(tiny).classify(str(folder)))
    assert [r.path for r in records] == [str(folder / "coffee.png")] and records[0].error is None
