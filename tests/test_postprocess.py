"""Softmax once, the background class, top-k order, thresholds, labels."""

import json
from pathlib import Path

import numpy as np
import pytest

from imgclass.data.labels import LabelSet, background_offset, choose_labels, imagenet, read_labels_file
from imgclass.errors import ModelError, UsageError
from imgclass.graph.activation import Activation
from imgclass.graph.ranking import Ranker, softmax

LABELS = tuple(f"c{i}" for i in range(6))
LOGITS = Activation("softmax", False, "test")
PROBABILITIES = Activation("softmax", True, "test")


def test_softmax_is_applied_once_only_when_needed():
    logits = np.array([[1.0, 2.0, 3.0, 0.0, -1.0, 0.5]])
    probs = softmax(logits)
    from_logits = Ranker(LABELS, 0, LOGITS, top=6).rank(logits)[0]
    from_probs = Ranker(LABELS, 0, PROBABILITIES, top=6).rank(probs)[0]
    assert [p.probability for p in from_logits] == pytest.approx([p.probability for p in from_probs])
    assert from_logits[0].probability == pytest.approx(np.exp(3) / np.exp(logits).sum())


def test_background_class_is_dropped_and_indices_shift():
    outputs = np.array([[0.9, 0.01, 0.05, 0.02, 0.01, 0.005, 0.005]])  # index 0 = background
    preds = Ranker(LABELS, 1, PROBABILITIES, top=3).rank(outputs)[0]
    assert [(p.rank, p.index, p.label) for p in preds] == [(1, 1, "c1"), (2, 2, "c2"), (3, 0, "c0")]
    assert preds[0].probability == pytest.approx(0.05)


def test_ties_keep_index_order_and_threshold_cuts():
    outputs = np.log(np.array([[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]]))
    preds = Ranker(LABELS, 0, LOGITS, top=6, threshold=0.1).rank(outputs)[0]
    assert [p.index for p in preds] == [0, 1, 2, 3]


def _label_data() -> dict:

    from imgclass._util.resources import load_json

    return load_json("imagenet1k_labels.json")


def test_imagenet_labels_are_first_wordnet_lemmas_and_unique():
    names = imagenet().names
    assert len(names) == 1000 and len(set(names)) == 1000
    assert [names[i] for i in (0, 281, 282, 285, 450, 744, 968)] == [
        "tench",
        "tabby",
        "tiger cat",
        "Egyptian cat",
        "bobsled",
        "projectile",
        "cup",
    ]
    assert [names[i] for i in (134, 517, 638, 639)] == [
        "crane (bird)",
        "crane (machine)",
        "maillot (tights)",
        "maillot (swimsuit)",
    ]
    data = _label_data()
    assert data["wnids"][281] == "n02123045" and data["synonyms"][281] == "tabby, tabby cat"
    qualified = [i for i, name in enumerate(names) if name != data["synonyms"][i].split(",")[0]]
    assert qualified == [134, 517, 638, 639]


def test_label_file_is_what_the_script_makes_from_its_synonyms():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_labels.py"
    spec = importlib.util.spec_from_file_location("make_labels", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = _label_data()
    assert module.display_names(data["synonyms"], data["wnids"]) == data["names"]


def test_labels_files(tmp_path):
    (tmp_path / "l.txt").write_text("cat\n\ndog\n")
    assert read_labels_file(tmp_path / "l.txt").names == ("cat", "dog")
    (tmp_path / "l.json").write_text(json.dumps({"1": "dog", "0": "cat"}))
    assert read_labels_file(tmp_path / "l.json").names == ("cat", "dog")
    (tmp_path / "gap.json").write_text(json.dumps({"0": "cat", "2": "dog"}))
    with pytest.raises(UsageError, match="without gaps"):
        read_labels_file(tmp_path / "gap.json")


def test_label_sources_and_offsets(tmp_path):
    model = tmp_path / "m.onnx"
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "a", "1": "b", "2": "c"}}))
    assert choose_labels(model, {}, None, 3).names == ("a", "b", "c")
    assert choose_labels(model, {"labels": json.dumps(["x", "y", "z"])}, None, 3).names == ("x", "y", "z")
    assert choose_labels(tmp_path / "other" / "m.onnx", {}, None, 1001).source == "imagenet-1k"
    labels = LabelSet(("a", "b"), "t")
    assert background_offset(2, labels, "m") == 0 and background_offset(3, labels, "m") == 1
    with pytest.raises(ModelError, match="pass labels"):
        background_offset(5, labels, "m")
