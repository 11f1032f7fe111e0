"""Every resize is bounded before it is spent: flags exit 2, a model's own preprocessing exits 3, an image is an error record.

Reproductions 7, 8 and 9 of issue 20. Memory is measured (peak RSS of the command) for the bomb cases.
"""

from __future__ import annotations

import json

import pytest
from conftest import imgclass_command, jsonl, run_cli
from PIL import Image
from support import onnx_builders as builders
from support.memory import run_measured

BOUNDED_MIB = 700  # a tiny model's run is ~150 MiB; the unbounded cases needed gigabytes


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


@pytest.fixture
def thin_png(tmp_path):
    """A 107-byte-class PNG of 8000x1 pixels: its short side resized to 256 made the long side 2 million."""
    path = tmp_path / "thin.png"
    Image.new("RGB", (8000, 1), (120, 80, 40)).save(path, optimize=True)
    assert path.stat().st_size < 200
    return path


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_thin_image_is_an_error_record_in_bounded_memory(tiny, thin_png, photos):
    done = run_measured([*imgclass_command(), "batch", thin_png, photos["coffee.png"], "-m", tiny, "-f", "jsonl"])
    records = {r["path"].rsplit("/", 1)[-1]: r for r in jsonl(done["stdout"])}
    assert done["rc"] == 1, done["stderr"]
    assert "resized to" in records["thin.png"]["error"] and records["thin.png"]["predictions"] == []
    assert records["coffee.png"]["error"] is None
    assert done["peak_mib"] < BOUNDED_MIB


def test_thin_image_predict_through_the_library_is_an_input_error(tiny, thin_png):
    import imgclass
    from imgclass.errors import InputError

    with pytest.raises(InputError, match="resized to"):
        imgclass.load(tiny).predict(thin_png)


@pytest.mark.parametrize(
    "flags",
    [
        ("--crop-pct", "0.001"),
        ("--crop-pct", "1e-7"),
        ("--crop-pct", "1e-300"),
        ("--resize", "100000"),
        ("--size", "100000"),
    ],  # fmt: skip
)
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_resize_flags_over_the_bounds_exit_2_before_any_work(make_model, photos, flags):
    dynamic = make_model("tiny", spatial=None)
    done = run_measured([*imgclass_command(), "predict", photos["coffee.png"], "-m", dynamic, *flags])
    assert done["rc"] == 2, done["stderr"]
    assert "limit" in done["stderr"] and "Traceback" not in done["stderr"]
    assert done["peak_mib"] < BOUNDED_MIB


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_model_metadata_crop_pct_over_the_bounds_exits_3(make_model, photos):
    meta = (("imgclass.preprocess", json.dumps({"crop_pct": 0.02})),)
    model = make_model("tiny", spatial=224, metadata=meta)
    done = run_measured([*imgclass_command(), "predict", photos["coffee.png"], "-m", model])
    assert done["rc"] == 3, done["stderr"]
    assert "metadata" in done["stderr"] and "limit" in done["stderr"]
    assert done["peak_mib"] < BOUNDED_MIB


def test_metadata_over_the_bounds_is_fixed_by_a_flag(make_model, photos):
    meta = (("imgclass.preprocess", json.dumps({"crop_pct": 0.02})),)
    model = make_model("tiny", spatial=224, metadata=meta)
    done = run_cli("predict", photos["coffee.png"], "-m", model, "--crop-pct", "0.875")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_huge_declared_input_exits_3(tmp_path, photos):
    model = builders.save(builders.tiny(builders.Signature(spatial=100000)), tmp_path / "huge.onnx")
    done = run_measured([*imgclass_command(), "predict", photos["coffee.png"], "-m", model])
    assert done["rc"] == 3, done["stderr"]
    assert "100000x100000" in done["stderr"]
    assert done["peak_mib"] < BOUNDED_MIB


def test_sidecar_crop_pct_takes_effect_with_a_sizes_table(tmp_path, make_model):
    """Repro 12: the README's {"preset": "torchvision", "crop_pct": 0.9} changed nothing (sizes 224 -> 256 won)."""
    import imgclass

    model = tmp_path / "m.onnx"
    model.write_bytes(make_model("tiny", spatial=224).read_bytes())
    model.with_suffix(".json").write_text(json.dumps({"preset": "torchvision", "crop_pct": 0.9}))
    transform = imgclass.load(model).model.transform
    assert transform.preset.crop_pct == 0.9
    assert transform.resized_size(1000, 800)[1] == round(224 / 0.9)  # 249, not torchvision's 256


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_quantize_memory_does_not_grow_with_the_calibration_images(tmp_path):
    """400 calibration tensors of a 224 input are 240 MB: they are streamed to the calibrator, not held."""
    model = builders.save(builders.tiny(builders.Signature(spatial=224)), tmp_path / "m.onnx")
    peaks = {}
    for count in (20, 400):
        cal = tmp_path / f"cal{count}"
        cal.mkdir()
        for i in range(count):
            Image.new("RGB", (64, 48), (i % 256, (i * 7) % 256, 90)).save(cal / f"{i:04d}.png")
        done = run_measured([*imgclass_command(), "models", "quantize", model, "--calibrate", cal, "-o",
                             tmp_path / f"int8-{count}.onnx", "--method", "minmax", "--limit", "1000",
                             "--preset", "torchvision"])  # fmt: skip
        assert done["rc"] == 0, done["stderr"]
        peaks[count] = done["peak_mib"]
    assert peaks[400] - peaks[20] < 60, peaks  # held, the 380 more tensors alone were 217 MiB


def test_a_second_interrupt_stops_the_report_thumbnail_pass(tmp_path, monkeypatch):
    """Repro 9: after Ctrl-C with --report, a second Ctrl-C during the thumbnails waited for every thumbnail."""
    import threading

    from imgclass.output import report
    from imgclass.records import Record

    release, calls, finished = threading.Event(), [], []

    def slow_thumbnail(path, size):
        calls.append(path)
        if path != "p0":
            release.wait(10)  # a big photo's thumbnail, still being made when the interrupt comes
        finished.append(path)
        return None

    class Interrupting(report.Entry):
        def __setattr__(self, name, value):
            if name == "thumbnail" and self.record.path == "p0":
                raise KeyboardInterrupt  # the second Ctrl-C, in the main thread, as the first thumbnail lands
            super().__setattr__(name, value)

    monkeypatch.setattr(report, "thumbnail_uri", slow_thumbnail)
    entries = [Interrupting.__new__(Interrupting) for _ in range(50)]
    for i, entry in enumerate(entries):
        object.__setattr__(entry, "record", Record(f"p{i}", "m", "p", [], None))
        object.__setattr__(entry, "thumbnail", None)
        object.__setattr__(entry, "heatmap", None)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(tmp_path / "r.html", entries, report.ReportOptions(workers=2))
    unfinished = len(calls) - len(finished)  # thumbnails in flight when the interrupt left: not waited for
    release.set()
    assert unfinished >= 1 and len(calls) <= 3  # the one that landed and one in flight, not all 50
    assert not (tmp_path / "r.html").exists()
