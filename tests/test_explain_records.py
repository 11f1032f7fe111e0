"""`explain` gives one record per image like `batch` (issue 20, reproductions 16 and 18), in memory bounded by the overlay."""

from __future__ import annotations

import pytest
from conftest import imgclass_command, jsonl, run_cli
from PIL import Image
from support.memory import run_measured
from test_hostile import grey_images, nan_for_dark_images


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_explain_long_file_name_is_explained_not_the_end_of_the_run(tmp_path, tiny, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    long_name = folder / ("é" * 122 + "x.png")  # 245 bytes: with ".cam.png" over the 255 of a file name
    Image.open(photos["coffee.png"]).save(long_name)
    Image.open(photos["chelsea.png"]).save(folder / "cat.png")
    done = run_cli("explain", folder, "-m", tiny, "-o", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    records = jsonl(done.stdout)
    assert len(records) == 2 and all(r["error"] is None for r in records)
    assert all(len(r["overlay"].rsplit("/", 1)[-1].encode()) <= 255 for r in records)
    assert {p.name for p in (tmp_path / "maps").iterdir()} >= {"cat.cam.png"}


def test_explain_nothing_above_threshold_is_that_images_error_record(tmp_path, make_model, photos):
    sigmoid = make_model("tiny", spatial=32, head="sigmoid", classes=4)
    done = run_cli("explain", photos["coffee.png"], photos["chelsea.png"], "-m", sigmoid, "-o", tmp_path / "maps")
    records = jsonl(done.stdout)
    assert len(records) == 2, done.stderr
    failed = [r for r in records if r["error"]]
    assert all("no class to explain" in r["error"] for r in failed)
    assert done.returncode == (1 if failed else 0)


def test_explain_non_finite_outputs_are_error_records_not_nan(tmp_path):
    model = nan_for_dark_images(tmp_path / "nan.onnx")
    dark, bright = grey_images(tmp_path / "greys", (10, 240))
    done = run_cli("explain", dark, bright, "-m", model, "--class", "3", "-o", tmp_path / "maps",
                   "--preset", "keras-tf", "--method", "occlusion")  # fmt: skip
    assert ": NaN" not in done.stdout  # JSON has no NaN
    records = {r["path"].rsplit("/", 1)[-1]: r for r in jsonl(done.stdout)}
    assert done.returncode == 1, done.stderr
    assert "not finite" in records[dark.name]["error"]
    assert records[bright.name]["error"] is None


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_explain_memory_does_not_grow_with_the_photo(tmp_path, tiny):
    big = tmp_path / "big.png"
    Image.new("RGB", (9000, 9000), (90, 140, 200)).save(big)  # 81 MP: 5.8 GB before the overlay was downscaled
    done = run_measured([*imgclass_command(), "explain", big, "-m", tiny, "-o", tmp_path / "maps", "--max-pixels",
                         "100000000"])  # fmt: skip
    assert done["rc"] == 0, done["stderr"]
    with Image.open(tmp_path / "maps" / "big.cam.png") as overlay:
        assert max(overlay.size) == 2048
    assert done["peak_mib"] < 1200  # the decoded photo (243 MB) and a resize of it, not 72 bytes a pixel
