"""A real pretrained classifier on real photos: the labels, not just the numbers, must be right.

The model is the ONNX Model Zoo's MobileNet v2 (int8), kept in the workplace's shared/models
beside the project (never in the repository): these tests skip where it is absent.
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import jsonl, run_cli
from PIL import Image

REAL_MODEL = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "mobilenetv2-12-int8.onnx"
CATS = {"tabby", "tiger cat", "Egyptian cat"}
SCOOTERS = {"moped", "motor scooter"}


@pytest.fixture(scope="module")
def real_model() -> Path:
    if not REAL_MODEL.is_file():
        pytest.skip(f"real model not found at {REAL_MODEL.resolve()} (it lives in the workplace's shared/models)")
    return REAL_MODEL.resolve()


@pytest.fixture(scope="module")
def sk_photos() -> dict[str, Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return {name: data / f"{name}.png" for name in ("coffee", "chelsea", "motorcycle_left")}


@pytest.fixture(scope="module")
def phone_jpegs(sk_photos, tmp_path_factory) -> dict[str, Path]:
    """The same photos scaled up to phone size (long side 4032) as JPEGs: draft decoding acts on these."""
    folder = tmp_path_factory.mktemp("phone")
    out = {}
    for name, path in sk_photos.items():
        img = Image.open(path).convert("RGB")
        scale = 4032 / max(img.size)
        big = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        assert min(big.size) >= 2 * 512  # short side at least twice the 512 a 224 model's draft keeps
        big.save(folder / f"{name}.jpg", quality=90)
        out[name] = folder / f"{name}.jpg"
    return out


def _predict(model: Path, photos: dict[str, Path], *extra) -> dict[str, list[dict]]:
    names = list(photos)
    result = run_cli(
        "predict",
        *(photos[n] for n in names),
        "--model",
        model,
        "--top",
        "5",
        "--format",
        "jsonl",
        "--device",
        "cpu",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert [r["error"] for r in records] == [None] * len(names)
    return {name: record["predictions"] for name, record in zip(names, records, strict=False)}


ESPRESSO_FLOOR = 0.3  # the lowest seen on any CPU (AVX2-only, phone-size JPEG), well above the runner-up


def _check_labels(predictions: dict[str, list[dict]]) -> None:
    coffee = predictions["coffee"][0]
    # The zoo's int8 kernels round differently by CPU: espresso p ~ 0.998 with VNNI, 0.37-0.54 on AVX2 only.
    assert coffee["label"] == "espresso" and coffee["probability"] > ESPRESSO_FLOOR, coffee
    assert {p["label"] for p in predictions["chelsea"][:3]} <= CATS, predictions["chelsea"][:3]
    assert predictions["motorcycle_left"][0]["label"] in SCOOTERS, predictions["motorcycle_left"][0]


def test_real_photos_get_the_right_labels(real_model, sk_photos, home):
    predictions = _predict(real_model, sk_photos)
    _check_labels(predictions)
    assert [p["index"] for p in predictions["coffee"][:1]] == [967]  # espresso, n07920052


@pytest.mark.parametrize("which", ["photos", "phone-size JPEGs"])
def test_default_and_exact_decode_agree_on_real_photos(real_model, sk_photos, phone_jpegs, which, home):
    photos = sk_photos if which == "photos" else phone_jpegs
    default = _predict(real_model, photos)
    exact = _predict(real_model, photos, "--exact-decode")
    _check_labels(default)
    _check_labels(exact)
    for name in photos:
        assert default[name][0]["index"] == exact[name][0]["index"], name
        if which == "photos":  # PNGs are never draft-decoded: the two runs are the same computation
            assert np.allclose([p["probability"] for p in default[name]], [p["probability"] for p in exact[name]])
