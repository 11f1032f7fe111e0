"""Integrity is bound to content: damaged cached models and optimised graphs are never used.

Through the installed entry point. A catalog model is faked with a sitecustomize that
adds an entry to the catalog (the real ones are 100 MB downloads).
"""

import hashlib
import json
import os
import time

import numpy as np
import onnx
import pytest
from conftest import jsonl, run_cli
from support import sandbox

from imgclass.errors import ExitCode


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def damage_bias(path, value=1e4):
    """Overwrite 4 bytes of fc.bias in place: same size, a valid model, other answers."""
    data = path.read_bytes()
    bias = next(t for t in onnx.load_from_string(data).graph.initializer if t.name == "fc.bias")
    at = data.index(bias.raw_data)
    with open(path, "r+b") as handle:
        handle.seek(at)
        handle.write(np.float32(value).tobytes())


def top1(result):
    assert result.returncode == 0, result.stderr
    first = jsonl(result.stdout)[0]["predictions"][0]
    return first["label"], round(first["probability"], 6)


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32, seed=3)


def fake_catalog(tmp_path, model_path, name="zoo-tiny"):
    """Env that makes the installed imgclass know `model_path`'s bytes as catalog model `name`."""
    data = model_path.read_bytes()
    folder = tmp_path / "fake-catalog"
    folder.mkdir(exist_ok=True)
    entry = dict(name=name, aliases=[], family="tiny", file=f"{name}.onnx", urls=["http://127.0.0.1:9/none"],
                 sha256=sha(data), size=len(data), preset="torchvision", labels="imagenet-1k", license="test",
                 source="test", accuracy={})  # fmt: skip
    (folder / "sitecustomize.py").write_text(
        "import json\nimport imgclass.store.catalog as c\n_entries = c.entries\n"
        f"_extra = json.loads({json.dumps(json.dumps(entry))})\n"
        "def entries():\n"
        "    extra = c.Entry(**{k: tuple(v) if isinstance(v, list) else v for k, v in _extra.items()})\n"
        "    return _entries() + [extra]\n"
        "c.entries = entries\n"
    )
    return {"PYTHONPATH": str(folder)}


def test_damaged_pulled_model_exits_3_and_no_graph_outlives_the_damage(tiny, photos, home, tmp_path):
    china = photos["china.jpg"]
    pristine = top1(run_cli("predict", china, "-m", tiny, env={"IMGCLASS_HOME": str(tmp_path / "other-home")}))
    assert run_cli("models", "pull", "--file", tiny, "--name", "mine").returncode == 0
    cached = home / "models" / "mine.onnx"
    damage_bias(cached)
    used = run_cli("predict", china, "-m", "mine")
    assert used.returncode == ExitCode.MODEL and used.stdout == ""
    line = used.stderr.strip()
    assert "mine" in line and "damaged" in line and "Traceback" not in line and len(line.splitlines()) == 1
    assert f"imgclass models pull --file {tiny} --name mine --force" in line
    # The damaged copy given by its path in the cache is checked too.
    assert run_cli("predict", china, "-m", cached).returncode == ExitCode.MODEL
    # The damaged bytes, copied out and given by path, build their own graph...
    outside = tmp_path / "copy.onnx"
    outside.write_bytes(cached.read_bytes())
    damaged_answer = top1(run_cli("predict", china, "-m", outside))
    assert damaged_answer != pristine
    # ...which never serves the pristine file, by path or after a fresh pull.
    assert top1(run_cli("predict", china, "-m", tiny)) == pristine
    assert run_cli("models", "remove", "mine").returncode == 0
    assert run_cli("models", "pull", "--file", tiny, "--name", "mine").returncode == 0
    assert top1(run_cli("predict", china, "-m", "mine")) == pristine
    assert top1(run_cli("predict", china, "-m", outside)) == damaged_answer


def test_the_remedy_in_the_message_works(tiny, photos, home):
    assert run_cli("models", "pull", "--file", tiny, "--name", "mine").returncode == 0
    before = top1(run_cli("predict", photos["china.jpg"], "-m", "mine"))
    damage_bias(home / "models" / "mine.onnx")
    failed = run_cli("predict", photos["china.jpg"], "-m", "mine")
    remedy = failed.stderr.split("put the right bytes back with: imgclass ", 1)[1].strip().split()
    assert run_cli(*remedy).returncode == 0
    assert top1(run_cli("predict", photos["china.jpg"], "-m", "mine")) == before


@pytest.mark.slow
def test_damage_that_keeps_size_and_mtime_is_still_found(tiny, photos, home):
    """A remembered verdict is keyed by ctime too: restoring the mtime does not hide a write."""
    assert run_cli("models", "pull", "--file", tiny, "--name", "mine").returncode == 0
    cached = home / "models" / "mine.onnx"
    time.sleep(sandbox_settle())  # let the file settle, so that its verdict is remembered
    assert run_cli("predict", photos["china.jpg"], "-m", "mine").returncode == 0
    index = [json.loads(p.read_text()) for p in (home / "index").iterdir()]
    assert any(entry.get("sha256") == sha(tiny.read_bytes()) for entry in index)  # a warm start does not re-hash
    st = cached.stat()
    damage_bias(cached)
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cached.stat().st_mtime_ns == st.st_mtime_ns and cached.stat().st_size == st.st_size
    result = run_cli("predict", photos["china.jpg"], "-m", "mine")
    assert result.returncode == ExitCode.MODEL and "damaged" in result.stderr


def sandbox_settle() -> float:
    from imgclass.store.index import RACY_SECONDS

    return RACY_SECONDS + 0.2


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_catalog_model_of_the_right_size_is_not_trusted_on_size(tiny, photos, home, tmp_path):
    env = fake_catalog(tmp_path, tiny)
    assert run_cli("models", "pull", "--file", tiny, "--name", "zoo-tiny", env=env).returncode == 0
    cached = home / "models" / "zoo-tiny.onnx"
    good = top1(run_cli("predict", photos["china.jpg"], "-m", "zoo-tiny", env=env))
    damage_bias(cached)
    offline = run_cli("predict", photos["china.jpg"], "-m", "zoo-tiny", "--offline", env=env)
    assert offline.returncode == ExitCode.MODEL and "damaged" in offline.stderr
    assert "imgclass models pull zoo-tiny" in offline.stderr
    verify = run_cli("models", "verify", "-f", "json", env=env)
    assert verify.returncode == ExitCode.MODEL
    rows = {r["name"]: r for r in json.loads(verify.stdout)}
    assert rows["zoo-tiny"]["ok"] is False and rows["zoo-tiny"]["remedy"] == "imgclass models pull zoo-tiny"
    # A fresh import of the right bytes repairs it.
    assert run_cli("models", "pull", "--file", tiny, "--name", "zoo-tiny", "--force", env=env).returncode == 0
    assert top1(run_cli("predict", photos["china.jpg"], "-m", "zoo-tiny", env=env)) == good


def test_verify_checks_optimised_graphs(tiny, photos, home):
    assert run_cli("predict", photos["china.jpg"], "-m", tiny).returncode == 0
    graphs = sorted((home / "optimized").glob("*.onnx"))
    assert len(graphs) == 1
    binding = json.loads(graphs[0].with_name(graphs[0].name + ".json").read_text())
    assert binding["source_sha256"] == sha(tiny.read_bytes()) and binding["sha256"] == sha(graphs[0].read_bytes())
    ok = run_cli("models", "verify", "-f", "json")
    assert ok.returncode == 0 and [r["ok"] for r in json.loads(ok.stdout)] == [True]
    good = top1(run_cli("predict", photos["china.jpg"], "-m", tiny))
    data = bytearray(graphs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    graphs[0].write_bytes(bytes(data))
    bad = run_cli("models", "verify")
    assert bad.returncode == ExitCode.MODEL and "DAMAGED" in bad.stdout and "imgclass cache prune" in bad.stderr
    # A damaged graph is never used: it is rebuilt from the model.
    assert top1(run_cli("predict", photos["china.jpg"], "-m", tiny)) == good
    assert run_cli("models", "verify").returncode == 0


def test_a_graph_whose_binding_names_other_bytes_is_not_used(make_model, tiny, photos, home):
    other = make_model("tiny", spatial=32, seed=4)
    expected = top1(run_cli("predict", photos["china.jpg"], "-m", tiny))
    assert run_cli("predict", photos["china.jpg"], "-m", other).returncode == 0
    mine, theirs = (next((home / "optimized").glob(sha(m.read_bytes())[:32] + "*.onnx")) for m in (tiny, other))
    mine.write_bytes(theirs.read_bytes())  # a swapped graph, whose own binding is kept
    binding = json.loads(mine.with_name(mine.name + ".json").read_text())
    binding.update(sha256=sha(theirs.read_bytes()), size=theirs.stat().st_size)
    mine.with_name(mine.name + ".json").write_text(json.dumps(binding))  # even a consistent-looking one
    assert top1(run_cli("predict", photos["china.jpg"], "-m", tiny)) == expected


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_read_only_catalog_cache_works_offline(tiny, photos, home, tmp_path):
    """Models baked into a read-only container layer: no lock, no optimised graph, no index needed."""
    env = fake_catalog(tmp_path, tiny)
    assert run_cli("models", "pull", "--file", tiny, "--name", "zoo-tiny", env=env).returncode == 0
    good = top1(run_cli("predict", photos["china.jpg"], "-m", "zoo-tiny", env=env))
    for folder in ("optimized", "index"):
        for path in (home / folder).glob("*"):
            path.unlink()
    result = sandbox.run_in(sandbox.read_only(home), "predict", photos["china.jpg"], "-m", "zoo-tiny", "--offline",
                            env=env)  # fmt: skip
    assert top1(result) == good and result.stderr == ""
    listed = sorted(p.name for p in home.rglob("*"))
    assert not any(name.endswith((".lock", ".tmp", ".part")) for name in listed)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_full_disk_for_optimised_graphs_degrades_and_leaves_nothing(tiny, photos, home, tmp_path):
    """A real full disk under the cache (16 KiB tmpfs, the graph is 80 KB): the model still runs."""
    expected = top1(run_cli("predict", photos["china.jpg"], "-m", tiny, env={"IMGCLASS_HOME": str(tmp_path / "h2")}))
    (home / "optimized").mkdir(parents=True)
    listing = tmp_path / "left.txt"
    result = sandbox.run_in(sandbox.full_disk(home / "optimized", 16), "predict", photos["china.jpg"], "-m", tiny,
                            after=f"ls -A {home / 'optimized'} > {listing}")  # fmt: skip
    assert top1(result) == expected and result.stderr == ""
    assert listing.read_text() == ""  # no temporary graph keeps the disk full


def test_full_disk_for_an_import_says_no_space_and_leaves_nothing(tiny, home, tmp_path):
    (home / "models").mkdir(parents=True)
    listing = tmp_path / "left.txt"
    result = sandbox.run_in(sandbox.full_disk(home / "models", 32), "models", "pull", "--file", tiny, "--name", "mine",
                            after=f"ls -A {home / 'models'} > {listing}")  # fmt: skip
    assert result.returncode == ExitCode.ENVIRONMENT
    line = result.stderr.strip()
    assert "no space left on device" in line and "IMGCLASS_HOME" in line and len(line.splitlines()) == 1
    assert "INVALID_PROTOBUF" not in line and "Traceback" not in line
    assert listing.read_text() == ""


def test_a_damaged_registry_is_an_error_and_a_pull_never_orphans_earlier_models(tiny, make_model, home):
    assert run_cli("models", "pull", "--file", tiny, "--name", "first").returncode == 0
    registry = home / "models" / "registry.json"
    registry.write_text(registry.read_text()[:-20])  # cut short
    for args in (["models", "verify"], ["models", "list"], ["models", "pull", "--file", make_model("tiny", seed=9),
                                                             "--name", "second"]):  # fmt: skip
        result = run_cli(*args)
        assert result.returncode == ExitCode.ENVIRONMENT, (args, result.stderr)
        assert "registry" in result.stderr and "damaged" in result.stderr and "Traceback" not in result.stderr
    assert not (home / "models" / "second.onnx").exists()
    assert (home / "models" / "first.onnx").exists()


# --- models that are wrong in small ways: one clear line, the right exit code ------------------


def with_metadata(src, dest, **props):
    model = onnx.load(str(src))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key.replace("_", "."), value
    onnx.save(model, str(dest))
    return dest


def test_a_labels_file_one_line_short_is_refused_not_shifted(tiny, photos, home, tmp_path):
    from imgclass.data.labels import imagenet

    short = tmp_path / "labels.txt"
    short.write_text("\n".join(imagenet().names[1:]) + "\n")  # 999 names: every label would move by one
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "--labels", short)
    assert result.returncode == ExitCode.USAGE and result.stdout == ""
    assert "999 labels" in result.stderr and "1000 outputs" in result.stderr
    model = with_metadata(tiny, tmp_path / "meta.onnx", imgclass_labels=json.dumps(list(imagenet().names[1:])))
    bad_meta = run_cli("predict", photos["china.jpg"], "-m", model)
    assert bad_meta.returncode == ExitCode.MODEL and "999 labels" in bad_meta.stderr


@pytest.mark.parametrize("config", [
    {"size": {"shortest_edge": 0}},
    {"size": {"height": 0}},
    {"size": {"shortest_edge": 256}, "image_mean": "not numbers"},
    {"size": {"height": "tall"}},
])  # fmt: skip
def test_malformed_hf_preprocessor_config_is_exit_3_in_one_line(tiny, photos, home, tmp_path, config):
    folder = tmp_path / "hf"
    folder.mkdir()
    model = folder / "model.onnx"
    model.write_bytes(tiny.read_bytes())
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    result = run_cli("predict", photos["china.jpg"], "-m", model)
    assert result.returncode == ExitCode.MODEL, result.stderr
    line = result.stderr.strip()
    assert "preprocessor_config.json" in line and len(line.splitlines()) == 1 and "Traceback" not in line


@pytest.mark.parametrize("value", ['{"crop_pct": 0}', '{"std": [0, 1, 1]}', '{"mean": [1, 2]}', "{not json", '["x"]',
                                   '{"size": "big"}', '{"scale": NaN}'])  # fmt: skip
def test_malformed_preprocess_metadata_is_exit_3_in_one_line(tiny, photos, home, tmp_path, value):
    model = with_metadata(tiny, tmp_path / "meta.onnx", imgclass_preprocess=value)
    result = run_cli("predict", photos["china.jpg"], "-m", model)
    assert result.returncode == ExitCode.MODEL, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_one_class_model_is_refused(make_model, photos, home):
    result = run_cli("predict", photos["china.jpg"], "-m", make_model("tiny", spatial=32, classes=1))
    assert result.returncode == ExitCode.MODEL and "at least 2 classes" in result.stderr


def test_hostile_labels_from_model_metadata_reach_the_terminal_inert(make_model, photos, home, tmp_path, monkeypatch):
    import io

    monkeypatch.setenv("COLUMNS", "300")  # a wide terminal: rows are not cut short
    from imgclass.cli import run
    from imgclass.cli.environment import Environment

    hostile = ["\x1b]0;pwned\x07title", "[bold red]x[/red]", "[/red]", "ok"]
    model = with_metadata(make_model("tiny", spatial=32, classes=4), tmp_path / "m.onnx",
                          imgclass_labels=json.dumps(hostile))  # fmt: skip
    for command in ("predict", "batch"):
        screen = io.StringIO()
        env = Environment(stdout=screen, stderr=screen, stdout_isatty=True, stderr_isatty=True, no_color=True)
        assert run([command, str(photos["china.jpg"]), "-m", str(model), "-k", "4", "-f", "table"], env) == 0
        text = screen.getvalue()
        assert "\x07" not in text and "\x1b]" not in text
        assert "\\x1b]0;pwned\\x07title" in text and "[bold red]x[/red]" in text and "[/red]" in text


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_onnx_runtime_log_lines_never_reach_stderr(tiny, photos, home, tmp_path):
    """Even with ONNX Runtime's own logger turned up to verbose before imgclass starts."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text("import onnxruntime\nonnxruntime.set_default_logger_severity(0)\n")
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "-f", "jsonl", env={"PYTHONPATH": str(inject)})
    assert result.returncode == 0 and result.stderr == ""


def test_python_warnings_never_reach_stderr_without_debug(tiny, photos, home):
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "--std", "1e-320,1,1", "-f", "jsonl")
    assert result.returncode == 1 and "Warning" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"imgclass: {photos['china.jpg']}: " + jsonl(result.stdout)[0]["error"]
    ]
    debug = run_cli("predict", photos["china.jpg"], "-m", tiny, "--std", "1e-320,1,1", "-f", "jsonl", "--debug")
    assert "RuntimeWarning" in debug.stderr
