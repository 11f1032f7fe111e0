"""Preprocessing against golden arrays from each framework's own code (scripts/make_golden.py)."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, photo_paths
from imgclass.images import DecodeOptions, load_rgb
from imgclass.preprocess import Transform, center_crop, resize_array, tf_central_crop
from imgclass.presets import Preset, get_preset

GOLDEN_FILES = sorted(GOLDEN.glob("*.npz"))


def golden(path):
    data = np.load(path)
    return data["tensor"], json.loads(str(data["meta"]))


def test_golden_arrays_cover_every_builtin_preset():
    from imgclass.presets import builtin_presets

    covered = {golden(p)[1]["preset"] for p in GOLDEN_FILES}
    assert covered == set(builtin_presets())


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_preset_reproduces_framework_preprocessing(path):
    expected, meta = golden(path)
    transform = Transform(get_preset(meta["preset"]), meta["size"], meta["size"], layout=meta["layout"])
    image = load_rgb(photo_paths()[meta["image"]])
    actual = transform(image)
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    diff = np.abs(actual - expected)
    if meta["preset"] == "mlperf-resnet":
        # OpenCV's INTER_AREA rounds in fixed point: a handful of pixels may land one grey level apart.
        assert diff.max() <= 1.0 + 1e-4
        assert (diff > 1e-4).mean() < 1e-3
    else:
        assert diff.max() < 2e-5


def test_torchvision_resize_rule():
    tv = get_preset("torchvision")
    assert tv.resize_size(224) == 256
    assert tv.resize_size(299) == 342
    assert tv.resize_size(160) == round(160 / 0.875) == 183
    assert get_preset("torchvision-v2").resize_size(224) == 232
    assert get_preset("timm-inception").resize_size(299) == 341  # timm floors size / crop_pct
    assert get_preset("mlperf-resnet").resize_size(224) == int(100.0 * 224 / 87.5) == 256


def test_short_side_resize_keeps_torchvision_long_side_rule():
    img = Image.new("RGB", (640, 427))
    t = Transform(get_preset("torchvision"), 224, 224)
    resized = t.preset.resize_size(224)
    assert resized == 256
    # torchvision: long side int(256 * 640 / 427) = 383, then crop offsets int(round((383 - 224) / 2)) = 80
    arr = np.zeros((256, 383, 3), np.uint8)
    arr[:, 80] = 255
    cropped = center_crop(arr, 224, 224, "round")
    assert cropped[:, 0].max() == 255 and cropped[:, 1:].max() == 0
    assert t(img).shape == (3, 224, 224)


def test_center_crop_offset_rounding_differs_as_the_frameworks_do():
    arr = np.arange(7)[None, :, None].repeat(3, axis=2)
    # (7 - 4) / 2 = 1.5: torchvision rounds half to even (2), MLPerf/HF floor (1)
    assert center_crop(arr, 1, 4, "round")[0, 0, 0] == 2
    assert center_crop(arr, 1, 4, "floor")[0, 0, 0] == 1


def test_tf_central_crop_matches_static_shape_rule():
    arr = np.zeros((400, 600, 3), np.float32)
    assert tf_central_crop(arr, 0.875).shape == (400 - 2 * 25, 600 - 2 * 37, 3)


def test_area_resize_averages_whole_blocks():
    arr = np.arange(16, dtype=np.float32).reshape(4, 4, 1).repeat(3, axis=2)
    out = resize_array(arr, 2, 2, "area")
    assert np.allclose(out[..., 0], [[2.5, 4.5], [10.5, 12.5]])


def test_bgr_layout_and_uint8_input():
    img = Image.new("RGB", (50, 40), (10, 20, 30))
    caffe = Transform(get_preset("keras-caffe"), 8, 8, layout="NHWC")
    out = caffe(img)
    assert out.shape == (8, 8, 3)
    assert np.allclose(out[0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)
    raw = Transform(get_preset("torchvision"), 8, 8, layout="NCHW", dtype="uint8")(img)
    assert raw.dtype == np.uint8 and raw.shape == (3, 8, 8)
    assert list(raw[:, 0, 0]) == [10, 20, 30]


def test_normalisation_values():
    img = Image.new("RGB", (32, 32), (255, 0, 128))
    out = Transform(get_preset("torchvision"), 16, 16)(img)
    assert np.allclose(out[:, 5, 5], [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225], atol=1e-5)
    out = Transform(Preset("x", scale=1 / 127.5, mean=(1, 1, 1), std=(1, 1, 1)), 16, 16)(img)
    assert np.allclose(out[:, 5, 5], [1.0, -1.0, 128 / 127.5 - 1], atol=1e-6)


def test_draft_decode_stays_close_to_full_decode_on_real_photos(photos, tmp_path):
    """Reduced-scale JPEG decoding keeps a reducing gap of 2: mean difference well under 1 grey level."""
    for name in ("china.jpg", "flower.jpg"):
        big = tmp_path / name
        # Upscale the 640x427 photo to phone size so that draft mode has room to act.
        Image.open(photos[name]).resize((2560, 1708), Image.Resampling.BICUBIC).save(big, quality=90)
        t = Transform(get_preset("torchvision"), 224, 224)
        full = load_rgb(big)
        draft = load_rgb(big, DecodeOptions(draft_min_short_side=t.min_decode_side))
        assert min(draft.size) < min(full.size)  # draft really decoded at a reduced scale
        assert min(draft.size) >= t.min_decode_side
        a = np.asarray(t.geometry(full), np.float32)
        b = np.asarray(t.geometry(draft), np.float32)
        assert np.abs(a - b).mean() < 1.0


def _reference_resize_crop(img, preset, size):
    """torchvision's Resize(short side) + CenterCrop, with Pillow directly: the arithmetic to match."""
    short = preset.resize_size(size)
    w, h = img.size
    new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    resized = np.asarray(img.resize((new_w, new_h), getattr(Image.Resampling, preset.interpolation.upper())))
    rnd = round if preset.crop_offset == "round" else (lambda v: int(v // 1))
    top, left = int(rnd((new_h - size) / 2.0)), int(rnd((new_w - size) / 2.0))
    return resized[top : top + size, left : left + size]


ODD_SIZES = [(296, 500), (200, 319), (500, 296), (319, 200), (451, 300), (257, 1200), (3000, 260)]


@pytest.mark.parametrize("preset_name, size", [
    ("torchvision", 224), ("torchvision", 299), ("torchvision-v2", 224), ("timm-inception", 299),
    ("timm-resnet", 224), ("hf-resnet", 224),
])
def test_geometry_equals_resize_then_crop_exactly(photos, preset_name, size):
    """What predict and batch compute (fast=True, no draft) is bit-identical to resize + crop."""
    preset = get_preset(preset_name)
    transforms = (Transform(preset, size, size, fast=True), Transform(preset, size, size))
    for name in ("chelsea.png", "china.jpg"):
        photo = load_rgb(photos[name])
        for width, height in [photo.size, *ODD_SIZES]:
            img = photo.resize((width, height), Image.Resampling.LANCZOS)
            expected = _reference_resize_crop(img, preset, size)
            for transform in transforms:
                assert np.array_equal(transform.geometry(img), expected), (name, width, height, transform.fast)

