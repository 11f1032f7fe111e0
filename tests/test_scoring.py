"""Test-time augmentation (--tta) and ensembles (--model given several times), against numpy references."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import jsonl, run_cli
from PIL import Image

import imgclass
from imgclass.data.presets import Overrides
from imgclass.graph.activation import softmax
from imgclass.output.sinks import csv_header, read_delimited
from imgclass.records import Record

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=None)


def _all(record: Record) -> np.ndarray:
    """Every class's probability, by class index, from a record ranked with top=classes."""
    probs = np.zeros(len(record.predictions))
    for p in record.predictions:
        probs[p.index] = p.probability
    return probs


def _torchvision_sample(crop: np.ndarray) -> np.ndarray:
    """A (h, w, 3) uint8 crop normalised as torchvision does, NCHW float32, in numpy."""
    x = (crop.astype(np.float64) / 255.0 - MEAN) / STD
    return x.astype(np.float32).transpose(2, 0, 1)


def _run_one(model_path, sample: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return softmax(session.run(None, {name: sample[None]})[0])[0]


def test_one_view_equals_plain_predict_exactly(tiny, photos):
    """No TTA is one view: the same probabilities as the model run on the preset's sample, bit for bit."""
    classifier = imgclass.load(tiny, preset="torchvision", overrides=Overrides(size=64), exact_decode=True)
    model = classifier.model
    img = Image.open(photos["chelsea.png"]).convert("RGB")
    reference = model.activation.probabilities(model.runner.run(model.transform(img)[None]))[0]
    record = classifier.predict(img, top=1000)
    assert record.tta is None and "tta" not in record.to_dict()
    assert np.array_equal(_all(record), reference)
    batched = list(
        imgclass.load(tiny, preset="torchvision", overrides=Overrides(size=64), tta="none").classify(
            [photos["chelsea.png"]]
        )
    )
    assert batched[0].tta is None


def test_ten_crop_equals_a_numpy_reference_of_the_ten_crops(tiny, photos):
    """Resize(73) then the four corners and the centre at 64x64, and their mirror images, averaged."""
    classifier = imgclass.load(
        tiny, preset="torchvision", overrides=Overrides(size=64), tta="ten-crop", exact_decode=True
    )
    img = Image.open(photos["coffee.png"]).convert("RGB")  # 600x400
    short = int(64 / 0.875 + 0.5)  # torchvision's Resize(int(size / crop_pct)) = 73
    resized = np.asarray(img.resize((int(short * 600 / 400), short), Image.Resampling.BILINEAR))
    h, w = resized.shape[:2]
    top, left = int(round((h - 64) / 2.0)), int(round((w - 64) / 2.0))
    corners = [(0, 0), (0, w - 64), (h - 64, 0), (h - 64, w - 64), (top, left)]
    crops = [resized[y : y + 64, x : x + 64] for y, x in corners]
    crops += [c[:, ::-1] for c in crops]
    reference = np.mean([_run_one(tiny, _torchvision_sample(c)) for c in crops], axis=0)
    record = classifier.predict(img, top=1000)
    assert record.tta == "ten-crop"
    assert np.abs(_all(record) - reference).max() < 1e-6
    # The ten crops differ: an average of one crop ten times would not pass.
    single = _run_one(tiny, _torchvision_sample(crops[0]))
    assert np.abs(single - reference).max() > 1e-4


def test_flip_averages_the_sample_and_its_mirror(tiny, photos):
    classifier = imgclass.load(tiny, preset="torchvision", overrides=Overrides(size=64), tta="flip", exact_decode=True)
    plain = imgclass.load(tiny, preset="torchvision", overrides=Overrides(size=64), exact_decode=True)
    img = Image.open(photos["astronaut.png"]).convert("RGB")
    mirrored = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sample = plain.model.transform(img)
    reference = (_run_one(tiny, sample) + _run_one(tiny, np.ascontiguousarray(sample[:, :, ::-1]))) / 2
    flipped = classifier.predict(img, top=1000)
    assert np.abs(_all(flipped) - reference).max() < 1e-6
    # A mirror-symmetric image looks the same both ways: flip TTA changes nothing.
    symmetric = Image.fromarray(np.concatenate([np.asarray(img), np.asarray(mirrored)], axis=1))  # 1024x512
    assert np.allclose(_all(classifier.predict(symmetric, top=1000)), _all(plain.predict(symmetric, top=1000)),
                       rtol=0, atol=1e-7)  # fmt: skip


@pytest.mark.parametrize("preset", ["keras-tf", "tf-slim", "mlperf-resnet"])
def test_five_crop_centre_view_and_corners_for_every_resize_mode(tiny, photos, preset):
    """Squash and central-fraction presets crop the whole image at the input's scale; the corners touch the edges."""
    from imgclass.inference.scoring import five_crops

    classifier = imgclass.load(tiny, preset=preset, overrides=Overrides(size=64), exact_decode=True)
    transform = classifier.model.transform
    img = Image.open(photos["coffee.png"]).convert("RGB")
    crops = five_crops(transform, img)
    assert all(c.shape == (64, 64, 3) for c in crops)
    resized = transform.resized(img)
    assert np.array_equal(crops[0], resized[:64, :64]) and np.array_equal(crops[3], resized[-64:, -64:])
    if preset == "mlperf-resnet":  # short side then centre crop: the centre view is the plain sample
        assert np.array_equal(transform.finish(crops[4]), transform(img))
    if preset == "tf-slim":  # the whole image at 64 / 0.875, so its centre is the central 87.5%
        assert resized.shape[:2] == (73, 73)


def test_tta_in_batch_equals_predict_and_names_the_tta(tiny, photos, tmp_path):
    names = ["china.jpg", "coffee.png", "chelsea.png", "flower.jpg"]
    classifier = imgclass.load(tiny, tta="five-crop", exact_decode=True)
    batched = list(classifier.classify([photos[n] for n in names], batch_size=3, top=1000))
    for name, record in zip(names, batched, strict=True):
        single = classifier.predict(photos[name], top=1000)
        assert record.tta == single.tta == "five-crop"
        assert np.abs(_all(record) - _all(single)).max() < 1e-6
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    records = list(classifier.classify([broken, photos["china.jpg"]]))
    assert records[0].error and records[0].tta == "five-crop" and records[1].ok


def test_ensemble_of_a_model_with_itself_equals_the_model(tiny, photos):
    single = imgclass.load(tiny)
    pair = imgclass.load_ensemble([tiny, tiny])
    assert pair.name == f"{tiny}+{tiny}" and len(pair.members) == 2
    for name in ("china.jpg", "chelsea.png"):
        a, b = single.predict(photos[name], top=1000), pair.predict(photos[name], top=1000)
        assert a.predictions == b.predictions  # exactly: (p + p) / 2 == p
        assert b.model == f"{tiny}+{tiny}" and b.preset == f"{a.preset}+{a.preset}"
    records = list(pair.classify([photos["china.jpg"], photos["coffee.png"]], top=1000))
    assert [r.predictions for r in records] == [
        r.predictions for r in single.classify([photos["china.jpg"], photos["coffee.png"]], top=1000)
    ]


def test_weighted_ensemble_with_a_preset_each(make_model, photos):
    """Each member preprocesses with its own preset; probabilities are the weighted mean."""
    a = make_model("tiny", seed=1, spatial=None, metadata=(("imgclass.preset", "torchvision"),))
    b = make_model("tiny", seed=2, spatial=None, metadata=(("imgclass.preset", "keras-tf"),))
    options = imgclass.LoadOptions(overrides=Overrides(size=48), exact_decode=True)  # a JPEG: the same decode for all
    pa, pb = (imgclass.load(m, options=options).predict(photos["flower.jpg"], top=1000) for m in (a, b))
    assert (pa.preset, pb.preset) == ("torchvision", "keras-tf")
    ensemble = imgclass.load_ensemble([a, b], [3, 1], options=options)
    record = ensemble.predict(photos["flower.jpg"], top=1000)
    reference = 0.75 * _all(pa) + 0.25 * _all(pb)
    assert np.abs(_all(record) - reference).max() < 1e-12
    assert np.abs(_all(pa) - _all(pb)).max() > 1e-3  # the members disagree: the weights matter
    assert record.preset == "torchvision+keras-tf"
    assert ensemble.info["weights"] == [0.75, 0.25] and len(ensemble.info["members"]) == 2


def test_background_class_members_average_over_the_labels(make_model, photos):
    """A 1001-class export (background at 0) and a 1000-class one name the same labels: they combine."""
    with_bg = make_model("tiny", spatial=None, classes=1001)
    plain = make_model("tiny", seed=3, spatial=None)
    record = imgclass.load_ensemble([with_bg, plain]).predict(photos["china.jpg"], top=1000)
    reference = (_all(imgclass.load(with_bg).predict(photos["china.jpg"], top=1000))
                 + _all(imgclass.load(plain).predict(photos["china.jpg"], top=1000))) / 2  # fmt: skip
    assert len(record.predictions) == 1000 and np.abs(_all(record) - reference).max() < 1e-12


def test_ensembles_refuse_different_labels_and_mixed_heads(make_model, photos, home):
    ten = make_model("tiny", spatial=None, classes=10)
    twelve = make_model("tiny", spatial=None, classes=12)
    single = make_model("tiny", spatial=None)
    multi = make_model("tiny", spatial=None, head="sigmoid")
    with pytest.raises(imgclass.ModelError, match="different label sets"):
        imgclass.load_ensemble([ten, twelve])
    result = run_cli("predict", photos["china.jpg"], "-m", ten, "-m", twelve)
    assert result.returncode == 3 and "different label sets (10 and 12 classes)" in result.stderr
    result = run_cli("batch", photos["china.jpg"], "-m", single, "-m", multi)
    assert result.returncode == 3
    assert "all be single-label or all multi-label" in result.stderr and result.stdout == ""


def test_cli_ensemble_and_tta_records(tiny, photos, home, tmp_path):
    result = run_cli("batch", photos["china.jpg"], photos["coffee.png"], "-m", tiny, "-m", tiny, "--tta", "flip")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert [r["model"] for r in records] == [f"{tiny}+{tiny}"] * 2 and [r["tta"] for r in records] == ["flip"] * 2
    assert [Record.from_dict(r).to_dict() for r in records] == records  # round trip keeps tta
    plain = jsonl(run_cli("batch", photos["china.jpg"], "-m", tiny).stdout)[0]
    assert "tta" not in plain and set(plain) == {"path", "model", "preset", "multi_label", "predictions", "error"}
    # csv keeps its columns; the TTA is said in JSON records only
    out = tmp_path / "r.csv"
    assert run_cli("batch", photos["china.jpg"], "-m", tiny, "--tta", "ten-crop", "-o", out).returncode == 0
    assert out.read_text().splitlines()[0] == ",".join(csv_header(False))  # the plain header
    assert len(read_delimited(out.read_text(), "csv")) == 1


def test_cli_refusals(tiny, photos, home):
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "--weights", "1,2")
    assert result.returncode == 2 and "--weights needs --model given several times" in result.stderr
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "-m", tiny, "--weights", "1")
    assert result.returncode == 2 and "1 weight(s) for 2 models" in result.stderr
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "-m", tiny, "--weights", "0,0")
    assert result.returncode == 2 and "not all zero" in result.stderr
    result = run_cli("bench", "-m", tiny, "-m", tiny)
    assert result.returncode == 2 and "only predict, batch and evaluate average an ensemble" in result.stderr
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "--tta", "twelve-crop")
    assert result.returncode == 2 and "twelve-crop" in result.stderr
    with pytest.raises(imgclass.UsageError, match="tta 'sideways'"):
        imgclass.load(tiny, tta="sideways")


def test_imgclass_model_environment_variable_still_picks_the_model(tiny, photos, home):
    result = run_cli("predict", photos["china.jpg"], "-f", "json", env={"IMGCLASS_MODEL": str(tiny)})
    assert result.returncode == 0 and json.loads(result.stdout)[0]["model"] == str(tiny)


def test_evaluate_with_tta_and_an_ensemble_scores_the_averaged_records(make_model, photos, tmp_path, home):
    """evaluate --tta flip with two models: the same top-1 as batch's records with the same options."""
    a = make_model("tiny", seed=4, spatial=None)
    b = make_model("tiny", seed=5, spatial=None)
    names = ["china.jpg", "coffee.png", "chelsea.png", "flower.jpg", "astronaut.png"]
    common = ["-m", a, "-m", b, "--weights", "2,1", "--tta", "flip"]
    records = jsonl(run_cli("batch", *(photos[n] for n in names), *common).stdout)
    folder = tmp_path / "data"
    truth = records[0]["predictions"][0]["index"]  # every image filed under the first image's top-1
    for name in names:
        (folder / str(truth)).mkdir(parents=True, exist_ok=True)
        (folder / str(truth) / name).write_bytes(photos[name].read_bytes())
    result = run_cli("evaluate", folder, *common, "-f", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == f"{a}+{b}" and report["preset"].count("+") == 1
    expected = sum(r["predictions"][0]["index"] == truth for r in records)
    assert report["correct_top1"] == expected >= 1
