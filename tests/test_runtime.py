"""Execution providers (with faked provider lists), batching, ordering and bench."""

import json
import random
import time

import pytest
from conftest import run_cli

from imgclass.errors import ModelError, UsageError
from imgclass.graph.runtime import CPU, CUDA, Device, check_providers, parse_device, plan_providers


def test_parse_device():
    assert parse_device("auto") == Device("auto")
    assert parse_device("CUDA:1") == Device("cuda", 1)
    assert str(parse_device("cuda:1")) == "cuda:1"
    for bad in ("gpu", "cpu:1", "cuda:x", ""):
        if bad == "":
            assert parse_device(bad) == Device("auto")
            continue
        with pytest.raises(UsageError):
            parse_device(bad)


def test_plan_providers_with_and_without_cuda():
    gpu_build = [CUDA, CPU]
    cpu_build = [CPU]
    assert plan_providers(Device("cpu"), gpu_build) == [CPU]
    planned = plan_providers(Device("auto"), gpu_build)
    assert planned[0][0] == CUDA and planned[0][1]["cudnn_conv_algo_search"] == "HEURISTIC" and planned[1] == CPU
    assert plan_providers(Device("cuda", 2), gpu_build)[0][1]["device_id"] == 2
    assert plan_providers(Device("auto"), cpu_build) == [CPU]
    with pytest.raises(ModelError, match="pip install onnxruntime-gpu"):
        plan_providers(Device("cuda"), cpu_build)


def test_silent_cuda_fallback_is_an_error_only_when_cuda_was_asked_for():
    check_providers(Device("auto"), [CPU])
    check_providers(Device("cuda"), [CUDA, CPU])
    with pytest.raises(ModelError, match="could not start CUDA"):
        check_providers(Device("cuda"), [CPU])


def test_cuda_request_on_cpu_build_exits_3(make_model, photos, home, monkeypatch):
    result = run_cli("predict", photos["china.jpg"], "--model", make_model("tiny", spatial=None), "--device", "cuda")
    assert result.returncode == 3 and "CUDA" in result.stderr and result.stdout == ""


def test_auto_falls_back_to_cpu_and_reports_it(make_model, photos, home):
    result = run_cli("predict", photos["china.jpg"], "--model", make_model("tiny", spatial=None), "-v")
    assert result.returncode == 0 and "providers CPUExecutionProvider" in result.stderr


def test_fixed_batch_of_one_runs_each_image(make_model, photos, home):
    fixed = make_model("tiny", spatial=32, batch=1)
    dynamic = make_model("tiny", spatial=32)
    files = [photos[n] for n in ("china.jpg", "coffee.png", "chelsea.png")]
    a = run_cli("predict", *files, "--model", fixed, "--top", "3").stdout
    b = run_cli("predict", *files, "--model", dynamic, "--top", "3").stdout
    strip = lambda text: [
        [(p["index"], round(p["probability"], 6)) for p in json.loads(line)["predictions"]]
        for line in text.splitlines()
    ]
    assert strip(a) == strip(b) and len(strip(a)) == 3


def test_uint8_model_gets_raw_pixels(make_model, photos, home):
    as_uint8 = make_model("tiny", spatial=32, dtype="uint8")
    result = run_cli("predict", photos["china.jpg"], "--model", as_uint8, "--top", "1", "-v")
    assert result.returncode == 0 and "uint8" in result.stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_pipeline_keeps_order_with_slow_and_failing_items(make_model, photos, tmp_path, home):
    from imgclass.inference.pipeline import Pipeline, PipelineOptions
    from imgclass.store.loader import ModelSettings, load_model

    loaded = load_model(make_model("tiny", spatial=32), "tiny", ModelSettings())
    names = []
    for i in range(23):
        path = tmp_path / f"{i:02d}.png"
        if i in (3, 11):
            path.write_text("broken")
        else:
            path.write_bytes(photos["chelsea.png" if i % 2 else "coffee.png"].read_bytes())
        names.append(str(path))
    original = loaded.transform.__class__.__call__
    jitter = random.Random(5)

    class SlowTransform(loaded.transform.__class__):
        """Workers finish out of order: some images take much longer than others."""

        def __call__(self, img, out=None):
            time.sleep(jitter.choice((0.0, 0.0, 0.05)))
            return original(self, img, out)

    fields = ("preset", "height", "width", "layout", "dtype")
    loaded.transform = SlowTransform(**{f: getattr(loaded.transform, f) for f in fields})
    pipeline = Pipeline(loaded, loaded.ranker(3), PipelineOptions(batch_size=4, workers=4))
    records = list(pipeline.run(names))
    assert [r.path for r in records] == names
    assert [i for i, r in enumerate(records) if r.error] == [3, 11]
    single = Pipeline(loaded, loaded.ranker(3), PipelineOptions(batch_size=1, workers=1))
    expected = list(single.run(names))
    assert [[p.index for p in r.predictions] for r in records] == [[p.index for p in r.predictions] for r in expected]


def test_bench_reports_every_field(make_model, photos, home, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("china.jpg", "coffee.png", "chelsea.png"):
        (folder / name).write_bytes(photos[name].read_bytes())
    result = run_cli(
        "bench", "--model", make_model("tiny", spatial=32), "--images", folder, "--synthetic", "8", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["images"] == 3 and data["failed"] == 0
    assert data["providers"] == ["CPUExecutionProvider"]
    for key in ("model_only_images_per_s", "end_to_end_images_per_s", "ratio_to_model_only"):
        assert data[key] > 0
    assert set(data["latency_ms"]) == {"p50", "p90", "p99"}
    assert all(v > 0 for v in data["latency_ms"].values())  # None when no latency was measured
    assert set(data["time_s"]) == {"decode", "preprocess", "inference", "wall"}
    assert all(v > 0 for v in data["time_s"].values())
