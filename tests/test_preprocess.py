"""Preprocessing against golden arrays from each framework's own code (scripts/make_golden.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GOLDEN, photo_paths
from PIL import Image

from imgclass.data.images import DRAFT_INFO, DecodeOptions, load_rgb
from imgclass.data.presets import Preset, get_preset
from imgclass.data.transforms import Transform, center_crop, resize_array, tf_central_crop

GOLDEN_FILES = sorted(GOLDEN.glob("*.npz"))


def golden(path):
    data = np.load(path)
    return data["tensor"], json.loads(str(data["meta"]))


def test_golden_arrays_cover_every_builtin_preset():
    from imgclass.data.presets import builtin_presets

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


@pytest.mark.parametrize(
    "preset_name, size",
    [
        ("torchvision", 224),
        ("torchvision", 299),
        ("torchvision-v2", 224),
        ("timm-inception", 299),
        ("timm-resnet", 224),
        ("hf-resnet", 224),
    ],
)
def test_geometry_equals_resize_then_crop_exactly(photos, preset_name, size):
    """What predict and batch compute (after any draft decode) is bit-identical to resize + crop."""
    preset = get_preset(preset_name)
    transforms = (Transform(preset, size, size),)
    for name in ("chelsea.png", "china.jpg"):
        photo = load_rgb(photos[name])
        for width, height in [photo.size, *ODD_SIZES]:
            img = photo.resize((width, height), Image.Resampling.LANCZOS)
            expected = _reference_resize_crop(img, preset, size)
            for transform in transforms:
                assert np.array_equal(transform.geometry(img), expected), (name, width, height)


@pytest.fixture(scope="module")
def odd_phone_jpegs(tmp_path_factory):
    """A real photo at 4035x2723 (neither side a multiple of 8), saved under each EXIF orientation."""
    import skimage

    photo = Image.open(Path(skimage.__file__).parent / "data" / "motorcycle_left.png").convert("RGB")
    big = photo.resize((4035, 2723), Image.Resampling.BICUBIC)
    folder = tmp_path_factory.mktemp("odd-jpegs")
    paths = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        paths[orientation] = folder / f"o{orientation}.jpg"
        big.save(paths[orientation], quality=92, exif=exif)
    return paths


@pytest.mark.parametrize("preset_name, bound", [("torchvision", 0.5), ("hf-resnet", 0.6)])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_draft_decode_keeps_the_full_images_geometry(odd_phone_jpegs, preset_name, bound):
    """libjpeg rounds a 1/4-scale size up (4035x2723 -> 1009x681): the resize must still map the
    whole image where a full decode puts it, under every EXIF orientation. Mapping the partial
    last block as a whole one (the old behaviour) moved the crop: 1.0-1.3 grey levels on average."""
    t = Transform(get_preset(preset_name), 224, 224)
    for orientation, path in odd_phone_jpegs.items():
        full = t.geometry(load_rgb(path)).astype(np.float32)
        draft = load_rgb(path, DecodeOptions(draft_min_short_side=t.min_decode_side))
        full_w, full_h, box = draft.info[DRAFT_INFO]
        assert (full_w, full_h) == ((2723, 4035) if orientation >= 5 else (4035, 2723))
        assert sorted(draft.size) == [681, 1009] and box[2] - box[0] == full_w / 4
        diff = np.abs(t.geometry(draft).astype(np.float32) - full)
        assert diff.mean() < bound, (orientation, diff.mean())


def test_area_resize_of_a_fractional_box_equals_the_box_of_a_finer_image():
    """INTER_AREA of a box with fractional edges = INTER_AREA of the same box on the image with
    every pixel repeated 4x4 (where the edges fall on whole pixels): the mean is the same."""
    arr = np.random.default_rng(0).integers(0, 256, (20, 31, 3)).astype(np.float32)
    box = (0.25, 0.0, 30.75, 19.5)
    fine = arr.repeat(4, axis=0).repeat(4, axis=1)
    x0, y0, x1, y1 = (int(v * 4) for v in box)
    expected = resize_array(fine[y0:y1, x0:x1], 9, 7, "area")
    np.testing.assert_allclose(resize_array(arr, 9, 7, "area", box), expected, atol=1e-3)
    assert not np.allclose(resize_array(arr, 9, 7, "area"), expected, atol=0.5)


def test_no_draft_decode_for_resizes_that_pick_pixels():
    assert Transform(get_preset("torchvision"), 224, 224).min_decode_side == 512
    assert Transform(get_preset("keras-tf"), 299, 299).min_decode_side is None  # nearest
    assert Transform(get_preset("tf-slim"), 299, 299).min_decode_side is None  # TF legacy bilinear
