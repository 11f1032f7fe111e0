"""Choosing a preset: flag, catalog, sidecar, ONNX metadata, detection from the signature."""

import json

import numpy as np
import onnx
import pytest
from conftest import GOLDEN, photo_paths

from imgclass.data.images import load_rgb
from imgclass.data.presets import Overrides, choose_preset, get_preset, preset_from_hf, preset_from_timm
from imgclass.data.transforms import Transform
from imgclass.errors import UsageError
from imgclass.store.loader import inspect_file


@pytest.mark.parametrize(
    "sig, expected",
    [
        (dict(spatial=224, input_name="data"), "torchvision"),
        (dict(spatial=299), "timm-inception"),
        (dict(spatial=224, input_name="pixel_values"), "hf-resnet"),
        (dict(spatial=224, input_name="input_tensor:0", classes=1001), "mlperf-resnet"),
        (dict(spatial=299, layout="NHWC", softmax=True, classes=1001), "tf-slim"),
        (dict(spatial=299, layout="NHWC", softmax=True), "keras-tf"),
        (dict(spatial=224, layout="NHWC", softmax=True), "keras-caffe"),
        (dict(spatial=None), "torchvision"),
    ],
)
def test_detection_from_signature(make_model, sig, expected):
    path = make_model("tiny", evidence=False, **sig)
    choice = choose_preset(path, inspect_file(path), None)
    assert choice.preset.name == expected
    assert choice.source.startswith(("detected", "default"))


def test_precedence_flag_then_catalog_then_sidecar_then_metadata(make_model, tmp_path):
    model = onnx.load(str(make_model("tiny", spatial=224)))
    onnx.helper.set_model_props(model, {"imgclass.preset": "keras-tf"})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    sig = inspect_file(path)
    assert choose_preset(path, sig, None).preset.name == "keras-tf"
    assert choose_preset(path, sig, None).source == "metadata"
    (tmp_path / "m.json").write_text(json.dumps({"preset": "timm-inception"}))
    assert choose_preset(path, sig, None).preset.name == "timm-inception"
    assert choose_preset(path, sig, None, catalog="torchvision-v2").preset.name == "torchvision-v2"
    assert choose_preset(path, sig, "mlperf-resnet", catalog="torchvision-v2").preset.name == "mlperf-resnet"


def test_own_sidecar_overrides_fields(make_model, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(make_model("tiny", spatial=224).read_bytes())
    (tmp_path / "m.json").write_text(
        json.dumps({"preset": "torchvision", "crop_pct": 0.95, "interpolation": "bicubic"})
    )
    preset = choose_preset(path, inspect_file(path), None).preset
    assert (preset.crop_pct, preset.interpolation, preset.mean) == (0.95, "bicubic", get_preset("torchvision").mean)


def test_hf_preprocessor_config_reproduces_transformers_golden():
    config = json.loads((GOLDEN / "hf_resnet_preprocessor_config.json").read_text())
    preset = preset_from_hf(config, "test")
    data = np.load(GOLDEN / "hf-resnet_224_china.npz")
    out = Transform(preset, 224, 224)(load_rgb(photo_paths()["china.jpg"]))
    assert np.abs(out - data["tensor"]).max() < 2e-5


def test_hf_sidecar_is_found_next_to_the_model(make_model, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(make_model("tiny", spatial=224, input_name="pixel_values").read_bytes())
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 256},
                "crop_size": {"height": 224, "width": 224},
                "do_center_crop": True,
                "resample": 2,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    choice = choose_preset(path, inspect_file(path), None)
    assert choice.source.startswith("sidecar")
    assert choice.preset.resize_size(224) == 256
    assert choice.preset.interpolation == "bilinear"
    assert choice.preset.mean == (0.5, 0.5, 0.5)


def test_timm_pretrained_cfg_matches_timm_inception_preset():
    cfg = {
        "input_size": [3, 299, 299],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }
    preset = preset_from_timm(cfg, "config.json")
    builtin = get_preset("timm-inception")
    assert preset.resize_size(299) == builtin.resize_size(299) == 341
    for field in ("interpolation", "crop_offset", "mean", "std", "scale", "resize"):
        assert getattr(preset, field) == getattr(builtin, field)
    assert preset.default_size == 299


def test_overrides_apply_on_top():
    base = get_preset("torchvision")
    changed = Overrides(resize=300, interpolation="bicubic", mean=(0.5, 0.5, 0.5), bgr=True).apply(base, 224)
    assert changed.resize_size(224) == 300
    assert (changed.interpolation, changed.mean, changed.channel_order) == ("bicubic", (0.5, 0.5, 0.5), "BGR")
    assert changed.name.startswith("torchvision+")
    assert Overrides().apply(base, 224) is base
    assert Overrides(crop_pct=0.95).apply(base, 224).resize_size(224) == round(224 / 0.95)


def test_unknown_preset_and_bad_values_are_usage_errors():
    with pytest.raises(UsageError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(UsageError, match="interpolation"):
        Overrides(interpolation="cubic-spline").apply(get_preset("torchvision"), 224)


@pytest.mark.parametrize("select", ["gather", "slice"])
def test_torchvision_inception_transform_input_selects_torchvision(make_model, select):
    path = make_model("tiny", spatial=299, transform_input=select)
    signature = inspect_file(path)
    assert signature.transform_input is True
    choice = choose_preset(path, signature, None)
    assert choice.preset.name == "torchvision"
    assert choice.source == "detected (torchvision Inception v3: transform_input at the graph input)"


def _edited(path, tmp_path, edit):
    model = onnx.load(str(path))
    edit(model.graph)
    out = tmp_path / "edited.onnx"
    onnx.save(model, str(out))
    return out


def test_only_torchvisions_transform_input_counts(make_model, tmp_path):
    """Graphs that look alike but do something else keep the timm Inception preset."""
    path = make_model("tiny", spatial=299, transform_input="gather")

    def other_constant(graph):  # channel 0 scaled by 1: not ImageNet std / 0.5
        mul = next(n for n in graph.node if n.op_type == "Mul")
        const = next(n for n in graph.node if n.output[0] == mul.input[1])
        const.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(1.0, np.float32)))

    def channels_swapped(graph):  # Concat takes the channels as B, G, R
        concat = next(n for n in graph.node if n.op_type == "Concat")
        concat.input[0], concat.input[2] = concat.input[2], concat.input[0]

    for edit in (other_constant, channels_swapped):
        edited = _edited(path, tmp_path, edit)
        signature = inspect_file(edited)
        assert signature.transform_input is False, edit.__name__
        assert choose_preset(edited, signature, None).preset.name == "timm-inception", edit.__name__


def test_cached_inspection_from_before_transform_input_is_redone(make_model, tmp_path, home, monkeypatch):
    from imgclass.store import index as modelindex

    monkeypatch.setattr(modelindex, "RACY_SECONDS", 0.0)  # the file counts as settled at once
    path = tmp_path / "tv.onnx"
    path.write_bytes(make_model("tiny", spatial=299, transform_input="gather").read_bytes())
    assert modelindex.signature_of(path).transform_input is True
    modelindex._memo.clear()  # a new process: what it knows comes from the file
    entry = modelindex._entry_path(path)
    data = json.loads(entry.read_text())
    del data["signature"]["transform_input"]
    data["version"] = 1  # what an older imgclass wrote
    entry.write_text(json.dumps(data))
    assert modelindex.signature_of(path).transform_input is True
    assert json.loads(entry.read_text())["version"] == modelindex.VERSION
