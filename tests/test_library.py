"""`import imgclass`: the library gives the records the CLI prints, raises typed errors, prints nothing."""

import json
import os

import numpy as np
import pytest
from conftest import REAL_MODEL, jsonl, real_model, run_cli
from PIL import Image

import imgclass


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=None)


def test_predict_equals_the_cli_json_record(tiny, photos, home, capsys):
    classifier = imgclass.load(tiny)
    record = classifier.predict(photos["chelsea.png"], top=5)
    printed = json.loads(run_cli("predict", photos["chelsea.png"], "--model", tiny, "--format", "json").stdout)
    assert [record.to_dict()] == printed
    assert capsys.readouterr() == ("", "")  # the library never prints


@real_model
def test_predict_equals_the_cli_on_the_real_model(photos, home):
    record = imgclass.load(REAL_MODEL).predict(photos["coffee.png"], top=3)
    printed = json.loads(run_cli("predict", photos["coffee.png"], "-m", REAL_MODEL, "-k", "3", "-f", "json").stdout)
    assert [record.to_dict()] == printed
    # espresso; its probability depends on the CPU's int8 kernels
    assert record.predictions[0].index == 967 and record.predictions[0].probability > 0.3


def test_classify_equals_batch_jsonl(tiny, photos, tmp_path, home):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("china.jpg", "coffee.png", "chelsea.png", "flower.jpg"):
        (folder / name).write_bytes(photos[name].read_bytes())
    (folder / "broken.png").write_text("not an image")
    classifier = imgclass.load(tiny)
    exact = [r.to_dict() for r in classifier.classify([folder], batch_size=1)]
    assert exact == jsonl(run_cli("batch", folder, "--model", tiny, "--batch-size", "1").stdout)
    batched = [r.to_dict() for r in classifier.classify([folder])]
    printed = jsonl(run_cli("batch", folder, "--model", tiny).stdout)
    assert [r["path"] for r in batched] == [r["path"] for r in printed] == [r["path"] for r in exact]
    for ours, theirs in zip(batched, printed, strict=True):
        assert ours["error"] == theirs["error"]
        assert [p["index"] for p in ours["predictions"]] == [p["index"] for p in theirs["predictions"]]
        assert np.allclose(
            [p["probability"] for p in ours["predictions"]],
            [p["probability"] for p in theirs["predictions"]],
            atol=1e-6,
        )


def test_in_memory_images_give_the_same_predictions_as_the_file(tiny, photos, home):
    classifier = imgclass.load(tiny, exact_decode=True)
    from_file = classifier.predict(photos["chelsea.png"])
    image = Image.open(photos["chelsea.png"])
    from_pil = classifier.predict(image)
    from_array = classifier.predict(np.asarray(image.convert("RGB")))
    assert from_pil.path == from_array.path == "<memory>"
    assert from_pil.predictions == from_array.predictions == from_file.predictions


def test_info_is_plain_data_that_round_trips(tiny, home):
    info = imgclass.load(tiny, preset="torchvision").info
    assert json.loads(json.dumps(info)) == info
    assert info["preset"] == "torchvision" and info["preset_source"] == "flag"
    assert info["providers"] == ["CPUExecutionProvider"] and info["classes"] == 1000


def test_records_round_trip_through_their_dicts(tiny, photos, home):
    record = imgclass.load(tiny).predict(photos["china.jpg"])
    assert imgclass.Record.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_errors_are_typed_and_carry_exit_codes(tiny, home, tmp_path):
    with pytest.raises(imgclass.ModelError) as missing:
        imgclass.load(tmp_path / "nope.onnx")
    assert missing.value.exit_code == imgclass.ExitCode.MODEL
    classifier = imgclass.load(tiny)
    with pytest.raises(imgclass.InputError, match="no such file"):
        classifier.predict(tmp_path / "missing.jpg")
    with pytest.raises(imgclass.UsageError, match="top must be at least 1"):
        classifier.predict(tmp_path / "missing.jpg", top=0)
    with pytest.raises(TypeError, match="unknown option"):
        imgclass.load(tiny, crop_pc=0.9)


def test_import_is_light():
    import subprocess
    import sys

    code = "import imgclass, sys; print(','.join(m for m in ('numpy', 'onnxruntime', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.sep, check=True)
    assert out.stdout.strip() == ""


def test_the_test_session_never_uses_the_real_user_cache():
    from imgclass.store import cache

    real = os.path.expanduser("~/.cache/imgclass")
    assert not str(cache.home()).startswith(real)
    assert "imgclass-test-home-" in os.environ["IMGCLASS_HOME"] or "imgclass-home" in os.environ["IMGCLASS_HOME"]
