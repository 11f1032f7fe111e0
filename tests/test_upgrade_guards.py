"""What an ONNX Runtime (or Pillow) upgrade could break unnoticed: each guarded end to end.

The optimised-graph cache and its fallback, model-index invalidation, fixed-batch
padding, --exact-decode, the preprocessing overrides and --labels.
"""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from conftest import jsonl, run_cli
from PIL import Image

import imgclass
from imgclass.data.presets import Overrides, get_preset
from imgclass.data.transforms import Transform
from imgclass.graph.ranking import softmax


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


def _probs(result) -> list[tuple[int, float]]:
    assert result.returncode == 0, result.stderr
    return [(p["index"], p["probability"]) for p in jsonl(result.stdout)[0]["predictions"]]


def test_optimised_graph_is_saved_reused_and_replaced_when_damaged(tiny, photos, home):
    first = _probs(run_cli("predict", photos["china.jpg"], "-m", tiny, "-k", "5"))
    graphs = list((home / "optimized").glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].stat().st_size > 0
    assert _probs(run_cli("predict", photos["china.jpg"], "-m", tiny, "-k", "5")) == first  # from the saved graph
    graphs[0].write_bytes(b"\x08garbage, not a graph")
    assert _probs(run_cli("predict", photos["china.jpg"], "-m", tiny, "-k", "5")) == first  # fell back to the model
    assert graphs[0].read_bytes()[:20] != b"\x08garbage, not a graph"  # and the damaged copy was replaced


def test_model_index_notices_a_changed_file(make_model, photos, home, tmp_path):
    path = tmp_path / "model.onnx"
    shutil.copyfile(make_model("tiny", spatial=32, classes=1000), path)
    assert (
        len(jsonl(run_cli("predict", photos["china.jpg"], "-m", path, "-k", "2000").stdout)[0]["predictions"]) == 1000
    )
    shutil.copyfile(make_model("tiny", spatial=32, classes=10, seed=3), path)  # same path, other model
    records = jsonl(
        run_cli("predict", photos["china.jpg"], "-m", path, "-k", "2000", "--labels", _labels(tmp_path, 10)).stdout
    )
    assert len(records[0]["predictions"]) == 10


def _labels(folder, count):
    path = folder / f"labels{count}.txt"
    path.write_text("\n".join(f"thing {i}" for i in range(count)) + "\n")
    return path


def test_fixed_batch_is_padded_and_cut(make_model, photos, home):
    fixed = make_model("tiny", spatial=32, batch=4, seed=2)
    dynamic = make_model("tiny", spatial=32, seed=2)
    files = [photos[n] for n in ("china.jpg", "coffee.png", "chelsea.png", "flower.jpg", "astronaut.png")]
    a = jsonl(run_cli("batch", *files, "-m", fixed, "-k", "3", "--batch-size", "4").stdout)
    b = jsonl(run_cli("batch", *files, "-m", dynamic, "-k", "3").stdout)
    assert len(a) == 5  # 5 images = one full batch of 4 and one padded batch
    assert [[p["index"] for p in r["predictions"]] for r in a] == [[p["index"] for p in r["predictions"]] for r in b]
    assert np.allclose(
        [p["probability"] for r in a for p in r["predictions"]],
        [p["probability"] for r in b for p in r["predictions"]],
        atol=1e-6,
    )


def _reference(model_path, image: Image.Image, preset, size) -> np.ndarray:
    sample = Transform(preset, size, size)(image.convert("RGB"))
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return softmax(session.run(None, {session.get_inputs()[0].name: sample[None]})[0])[0]


def test_exact_decode_equals_a_full_decode_and_the_default_takes_the_draft(make_model, photos, home, tmp_path):
    model = make_model("tiny", spatial=224, seed=4)
    big = tmp_path / "big.jpg"
    Image.open(photos["china.jpg"]).resize((2560, 1708), Image.Resampling.BICUBIC).save(big, quality=92)
    reference = _reference(model, Image.open(big), get_preset("torchvision"), 224)
    exact = _probs(run_cli("predict", big, "-m", model, "-k", "1000", "--exact-decode"))
    assert max(abs(p - reference[i]) for i, p in exact) < 1e-6
    fast = _probs(run_cli("predict", big, "-m", model, "-k", "1000"))
    assert max(abs(p - reference[i]) for i, p in fast) > 0  # a reduced-scale decode really happened


def test_overrides_change_exactly_what_they_name(tiny, photos, home):
    flags = [
        "--crop-pct",
        "0.8",
        "--interpolation",
        "bicubic",
        "--mean",
        "0.5,0.4,0.3",
        "--std",
        "0.2,0.3,0.4",
        "--bgr",
    ]
    result = run_cli("predict", photos["coffee.png"], "-m", tiny, "-k", "1000", "--exact-decode", *flags)
    record = jsonl(result.stdout)[0]
    assert record["preset"].startswith("torchvision+") and "crop_pct=0.8" in record["preset"]
    preset = Overrides(
        crop_pct=0.8, interpolation="bicubic", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), bgr=True
    ).apply(get_preset("torchvision"), 32)
    reference = _reference(tiny, Image.open(photos["coffee.png"]), preset, 32)
    assert max(abs(p["probability"] - reference[p["index"]]) for p in record["predictions"]) < 1e-6
    resized = jsonl(run_cli("predict", photos["coffee.png"], "-m", tiny, "--resize", "40", "--exact-decode").stdout)[0]
    assert "sizes=40" in resized["preset"]
    ref40 = _reference(
        tiny, Image.open(photos["coffee.png"]), Overrides(resize=40).apply(get_preset("torchvision"), 32), 32
    )
    assert resized["predictions"][0]["index"] == int(np.argmax(ref40))


def test_labels_file_end_to_end(make_model, photos, home, tmp_path):
    model = make_model("tiny", spatial=32, classes=10, seed=5)
    labels = _labels(tmp_path, 10)
    record = jsonl(run_cli("predict", photos["china.jpg"], "-m", model, "--labels", labels, "-k", "10").stdout)[0]
    assert {p["label"] for p in record["predictions"]} == {f"thing {i}" for i in range(10)}
    assert all(p["label"] == f"thing {p['index']}" for p in record["predictions"])
    short = tmp_path / "short.txt"
    short.write_text("\n".join(f"thing {i}" for i in range(9)))
    refused = run_cli("predict", photos["china.jpg"], "-m", model, "--labels", short)
    assert refused.returncode == 2 and "has 9 labels but the model has 10 outputs" in refused.stderr
    as_json = tmp_path / "id2label.json"
    as_json.write_text(json.dumps({"id2label": {str(i): f"json {i}" for i in range(10)}}))
    via_library = imgclass.load(model, labels=as_json).predict(photos["china.jpg"], top=1)
    assert via_library.predictions[0].label == f"json {via_library.predictions[0].index}"
