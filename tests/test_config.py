"""Config that says what it does: strict sidecars and metadata, errors with the right exit code."""

import json

import onnx
import pytest
from conftest import run_cli


@pytest.fixture
def tiny_copy(make_model, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(make_model("tiny", spatial=32).read_bytes())
    return path


def test_unknown_sidecar_key_names_the_key_and_the_nearest(tiny_copy, photos, home):
    tiny_copy.with_suffix(".json").write_text(json.dumps({"preset": "torchvision", "crop_pc": 0.9}))
    result = run_cli("predict", photos["china.jpg"], "-m", tiny_copy)
    assert result.returncode == 3
    assert "unknown key 'crop_pc'" in result.stderr and "did you mean 'crop_pct'" in result.stderr


def test_sidecar_that_works_is_used_and_reported(tiny_copy, photos, home):
    tiny_copy.with_suffix(".json").write_text(json.dumps({"preset": "timm-inception", "crop_pct": 0.9}))
    result = run_cli("predict", photos["china.jpg"], "-m", tiny_copy, "-v")
    assert result.returncode == 0
    assert "timm-inception+sidecar" in result.stdout and "sidecar" in result.stderr


def _with_metadata(path, **props):
    model = onnx.load(str(path))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key.replace("__", "."), value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "props, message",
    [
        ({"imgclass__preset": "torchvison"}, "unknown preset 'torchvison'"),
        ({"imgclass__preprocess": json.dumps({"preset": "torchvision", "meen": [0, 0, 0]})}, "did you mean 'mean'"),
        ({"imgclass__preprocess": "{not json"}, "is not JSON"),
        ({"imgclass__preprocess": json.dumps({"crop_pct": "wide"})}, "bad preprocessing values"),
        ({"labels": json.dumps(["a", "b"])}, "2 labels in metadata labels, but the model has 1000 outputs"),
    ],
)
def test_broken_metadata_is_a_model_error_not_a_usage_error(tiny_copy, photos, home, props, message):
    _with_metadata(tiny_copy, **props)
    result = run_cli("predict", photos["china.jpg"], "-m", tiny_copy)
    assert result.returncode == 3, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "config, message",
    [
        ({"size": {"shortest_edge": 0}, "crop_size": 224, "do_center_crop": True}, "malformed preprocessor_config"),
        ({"size": "big"}, "malformed preprocessor_config"),
    ],
)
def test_malformed_hugging_face_config_is_exit_3(tiny_copy, photos, home, config, message):
    (tiny_copy.parent / "preprocessor_config.json").write_text(json.dumps(config))
    result = run_cli("predict", photos["china.jpg"], "-m", tiny_copy)
    assert result.returncode == 3 and message in result.stderr and "Traceback" not in result.stderr


def test_every_preset_field_is_read():
    """No dead knobs: each field of Preset is used by preprocessing or shown to people."""
    import dataclasses
    import inspect

    from imgclass.data import presets
    from imgclass.data import transforms as preprocess
    from imgclass.store import loader as model

    source = inspect.getsource(preprocess) + inspect.getsource(presets.Preset) + inspect.getsource(model)
    for field in dataclasses.fields(presets.Preset):
        if field.name in ("name", "description", "source"):
            continue
        assert source.count(field.name) >= 2, field.name
