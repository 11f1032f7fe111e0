"""The OpenVINO device and explicit precision: parsing, native-precision refusals, the missing extra,
nothing importing OpenVINO unless asked, the cache keys, `auto`'s measured choice, and (where an
OpenVINO provider lists a CPU here) parity with the CPU provider within 1e-4."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli

from imgclass.errors import MissingExtra, ModelError, UsageError
from imgclass.graph import openvino
from imgclass.graph.runtime import Device, parse_device

AMD_ZEN2 = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 sha_ni\n"
SAPPHIRE = "flags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_int8 amx_tile\n"


def _provider_here() -> bool:
    try:
        found = openvino.source()
    except ModelError:
        return False
    return found is not None and "CPU" in found.devices


needs_openvino = pytest.mark.skipif(not _provider_here(), reason="no OpenVINO provider with a CPU device here")


def test_parse_device_openvino_targets_and_precisions():
    assert parse_device("openvino") == Device("openvino", 0, "CPU", "f32")
    assert parse_device("OpenVINO:gpu.1", "BF16") == Device("openvino", 0, "GPU.1", "bf16")
    assert str(parse_device("openvino:npu")) == "openvino:NPU" and str(parse_device("openvino")) == "openvino"
    assert parse_device("cpu", "f32") == Device("cpu")
    for bad in ("openvino:1", "openvino:tpu", "cuda:gpu", "openvino:", "openvino:cpu;rm"):
        with pytest.raises(UsageError):
            parse_device(bad)
    with pytest.raises(UsageError, match="precision 'f8'"):
        parse_device("openvino", "f8")
    for device in ("cpu", "auto", "cuda"):  # never chosen silently: only OpenVINO computes in bf16/f16
        with pytest.raises(UsageError, match="only the OpenVINO device"):
            parse_device(device, "bf16")


def test_cpu_features_from_cpuinfo_flags():
    assert openvino.cpu_flags(AMD_ZEN2) >= {"avx2", "sha_ni"}
    features = openvino.cpu_features(openvino.cpu_flags(SAPPHIRE))
    assert features["amx_bf16"] and features["avx512_bf16"] and features["avx512_vnni"] and not features["amx_fp16"]
    assert openvino.cpu_flags("processor: 0\n") == set()


def test_precision_is_refused_where_the_device_would_emulate_it():
    amd, spr = openvino.cpu_flags(AMD_ZEN2), openvino.cpu_flags(SAPPHIRE)
    assert openvino.native_precisions("CPU", amd, "x86_64") == ("f32",)
    assert openvino.native_precisions("CPU", spr, "x86_64") == ("f32", "bf16")
    openvino.check_precision("CPU", "bf16", spr, "x86_64")
    with pytest.raises(UsageError, match="does not compute in bf16 natively.*avx512_bf16.*Native here: f32"):
        openvino.check_precision("CPU", "bf16", amd, "x86_64")
    with pytest.raises(UsageError, match="f16 natively"):
        openvino.check_precision("CPU", "f16", spr, "x86_64")
    openvino.check_precision("CPU", "f16", {"asimdhp"}, "aarch64")
    openvino.check_precision("GPU.1", "f16", amd)
    with pytest.raises(UsageError, match="GPU.1 device does not compute in bf16"):
        openvino.check_precision("GPU.1", "bf16", amd)


def test_load_config_sets_the_precision_explicitly():
    assert json.loads(openvino.load_config("CPU", "f32", 3)) == {
        "CPU": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "3"}
    }
    assert json.loads(openvino.load_config("GPU.1", "f16", 3)) == {"GPU.1": {"INFERENCE_PRECISION_HINT": "f16"}}


def _without_provider(monkeypatch):
    import onnxruntime as ort

    if openvino.PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime is the onnxruntime-openvino build: the provider cannot be taken away")
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)  # as if imgclass[openvino] were not installed
    openvino._register_plugin.cache_clear()
    monkeypatch.setattr(openvino, "_register_plugin", lambda: None)


def test_without_the_extra_the_device_is_a_missing_extra(monkeypatch):
    _without_provider(monkeypatch)
    assert openvino.source() is None
    with pytest.raises(MissingExtra, match=r"imgclass\[openvino\]"):
        openvino.require("CPU")
    assert "not installed" in openvino.describe()["provider"]


def test_without_the_extra_the_cli_exits_2_naming_it(make_model, photos, home):
    import onnxruntime as ort

    if openvino.PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime is the onnxruntime-openvino build")
    model = make_model("tiny", spatial=None)
    code = (
        "import sys\n"
        "sys.modules['onnxruntime_ep_openvino'] = None\n"
        f"sys.argv = ['imgclass', 'predict', {str(photos['china.jpg'])!r}, '-m', {str(model)!r}, '--device', 'openvino']\n"
        "from imgclass.cli import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=home.parent,
                            env={**__import__("os").environ, "NO_COLOR": "1"})  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "imgclass[openvino]" in result.stderr and result.stdout == ""


def test_nothing_imports_openvino_unless_asked(make_model, photos, home):
    model = make_model("tiny", spatial=None)
    code = (
        "import sys, imgclass\n"
        f"clf = imgclass.load({str(model)!r}, device='auto')\n"
        f"clf.predict({str(photos['china.jpg'])!r})\n"
        "maps = open('/proc/self/maps').read()\n"
        "loaded = [m for m in ('onnxruntime_ep_openvino', 'openvino') if m in sys.modules]\n"
        "sys.stderr.write('LOADED=' + ','.join(loaded) + (',libopenvino' if 'libopenvino.so' in maps else ''))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=home.parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("LOADED="), result.stderr[-300:]


def test_the_cli_refuses_emulated_precision_with_exit_2(make_model, photos, home):
    result = run_cli("predict", photos["china.jpg"], "-m", make_model("tiny", spatial=None), "--precision", "bf16")
    assert result.returncode == 2 and "only the OpenVINO device" in result.stderr and result.stdout == ""
    result = run_cli("predict", photos["china.jpg"], "-m", make_model("tiny", spatial=None), "--device", "openvino:tpu")
    assert result.returncode == 2 and result.stdout == ""


def _fake_source(monkeypatch, version="9.9"):
    found = openvino.Source("plugin", version, ("CPU",))
    monkeypatch.setattr(openvino, "source", lambda: found)


def test_cache_keys_name_provider_version_and_precision(monkeypatch, tmp_path):
    from imgclass.store import optimized

    _fake_source(monkeypatch)
    sha = "ab" * 32
    f32 = optimized.graph_path(tmp_path, sha, Device("openvino", 0, "CPU", "f32"))
    bf16 = optimized.graph_path(tmp_path, sha, Device("openvino", 0, "CPU", "bf16"))
    cpu = optimized.graph_path(tmp_path, sha, Device("cpu"))
    assert f32 != bf16 and "-openvino-plugin9.9-" in f32.name and "-openvino-f32-" in f32.name and f32.suffix == ".ov"
    assert "-openvino-bf16-" in bf16.name and cpu.suffix == ".onnx" and "openvino" not in cpu.name
    _fake_source(monkeypatch, "10.0")
    assert optimized.graph_path(tmp_path, sha, Device("openvino", 0, "CPU", "f32")) != f32  # a new plugin: new key


def test_auto_picks_openvino_only_where_measured_faster(monkeypatch, tmp_path):
    from imgclass.store import optimized

    _fake_source(monkeypatch)
    sha, other = "cd" * 32, "ef" * 32
    ov = Device("openvino", 0, "CPU", "f32")
    assert optimized.resolve_auto(tmp_path, sha, Device("auto")) == Device("auto")  # nothing measured
    optimized.remember_speed(tmp_path, sha, Device("cpu"), 10.0)
    optimized.remember_speed(tmp_path, sha, ov, 9.0)
    assert optimized.resolve_auto(tmp_path, sha, Device("auto")) == Device("auto")  # measured slower
    optimized.remember_speed(tmp_path, sha, ov, 30.0)
    assert optimized.resolve_auto(tmp_path, sha, Device("auto")) == ov
    assert optimized.resolve_auto(tmp_path, other, Device("auto")) == Device("auto")  # other bytes: not measured
    assert optimized.resolve_auto(tmp_path, sha, Device("cpu")) == Device("cpu")  # an explicit device stays
    # a bf16 measurement never makes auto pick bf16
    optimized.remember_speed(tmp_path, other, Device("openvino", 0, "CPU", "bf16"), 99.0)
    optimized.remember_speed(tmp_path, other, Device("cpu"), 1.0)
    assert optimized.resolve_auto(tmp_path, other, Device("auto")) == Device("auto")
    # a record that names other bytes is not believed
    path = optimized.measured_path(tmp_path, sha, ov)
    path.write_text(json.dumps({**json.loads(path.read_text()), "source_sha256": other}))
    assert optimized.measured_speed(tmp_path, sha, ov) is None


@needs_openvino
def test_openvino_f32_matches_the_cpu_provider_within_1e4(make_model, photos, home):
    import imgclass

    model = make_model("resnet50")
    images = [str(p) for p in list(photos.values())[:6]]
    cpu = imgclass.load(model, device="cpu")
    ov = imgclass.load(model, device="openvino", precision="f32")
    assert ov.model.providers[0] == openvino.PROVIDER and ov.model.device.precision == "f32"
    batch = np.stack([cpu.model.transform(cpu._open(p)[1]) for p in images])
    logits_cpu, logits_ov = cpu.model.runner.run(batch), ov.model.runner.run(batch)

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    assert np.abs(softmax(logits_cpu) - softmax(logits_ov)).max() < 1e-4
    probs = [[(p.index, p.probability) for p in r.predictions] for r in (cpu.predict(i) for i in images)]
    probs_ov = [[(p.index, p.probability) for p in r.predictions] for r in (ov.predict(i) for i in images)]
    for mine, theirs in zip(probs, probs_ov, strict=True):
        assert [i for i, _ in mine] == [i for i, _ in theirs]
        assert max(abs(x - y) for (_, x), (_, y) in zip(mine, theirs, strict=True)) < 1e-4


@needs_openvino
def test_cli_batch_on_openvino_and_bench_compare_devices(make_model, photos, home, tmp_path):
    model = make_model("tiny", spatial=None)
    folder = photos["china.jpg"].parent
    result = run_cli("batch", folder, "-m", model, "--device", "openvino", "--precision", "f32", "-v")
    assert result.returncode == 0, result.stderr
    assert "OpenVINOExecutionProvider" in result.stderr and "compute precision f32" in result.stderr
    result = run_cli("bench", "-m", model, "--compare", "devices", "--synthetic", "4", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert {(r["device"], r["precision"]) for r in rows} >= {("cpu", "f32"), ("openvino", "f32")}
    assert all(r["model_only_images_per_s"] > 0 for r in rows)
    assert list((home / "optimized").glob("*-openvino-f32-*.measured.json"))


@needs_openvino
def test_embeddings_and_ensembles_run_on_openvino(make_model, photos, home):
    import imgclass

    model, image = make_model("tiny", spatial=None), str(photos["china.jpg"])
    cpu = imgclass.load(model, device="cpu")
    ov = imgclass.load(model, device="openvino")
    assert np.abs(cpu.vector(image) - ov.vector(image)).max() < 1e-4
    assert ov.bottleneck.runner.providers[0] == openvino.PROVIDER
    pair = imgclass.load_ensemble([model, model], device="openvino", tta="flip")
    mine = imgclass.load_ensemble([model, model], device="cpu", tta="flip").predict(image).predictions
    theirs = pair.predict(image).predictions
    assert pair.model.providers[0] == openvino.PROVIDER
    assert [p.index for p in mine] == [p.index for p in theirs]
    assert max(abs(a.probability - b.probability) for a, b in zip(mine, theirs, strict=True)) < 1e-4


def test_ray_actors_get_the_device_and_precision_the_driver_runs_f32(make_model, home):
    import imgclass
    from imgclass.cli.options import pop_engine_options
    from imgclass.engines.work import ModelSpec

    values = {"engine": "ray", "device": "openvino", "precision": "bf16"}
    engine = pop_engine_options(values)
    assert (engine.device, engine.precision) == ("openvino", "bf16")
    assert (values["device"], values["precision"]) == ("cpu", "f32")  # the driver's own copy: CPU, f32
    clf = imgclass.load(make_model("tiny", spatial=None), device="cpu")
    spec = ModelSpec.of(clf, 5, None, 1, engine.device, precision=engine.precision)
    assert (spec.options.device, spec.options.precision) == ("openvino", "bf16")
