"""The cache you can see and clean: list, prune, remove with its optimised graphs, no lingering locks."""

import json
import time

import pytest
from conftest import run_cli


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32, seed=21)


def _pull(path, name, *extra):
    return run_cli("models", "pull", "--file", path, "--name", name, *extra)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_list_shows_models_graphs_and_index_with_sizes(tiny, photos, home):
    assert _pull(tiny, "mine").returncode == 0
    time.sleep(2.1)  # inspection is only remembered for files that have not changed in the last 2 s
    assert run_cli("predict", photos["china.jpg"], "-m", "mine").returncode == 0
    held = json.loads(run_cli("cache", "list", "--format", "json").stdout)
    assert held["folders"]["home"] == str(home)
    assert [item["path"].rsplit("/", 1)[1] for item in held["models"]] == ["mine.onnx", "registry.json"]
    graphs = [item for item in held["optimized"] if item["path"].endswith(".onnx")]
    assert len(graphs) == 1 and graphs[0]["size"] > 0  # (beside it: the binding to the bytes it came from)
    assert held["index"] and held["leftovers"] == []
    text = run_cli("cache", "list").stdout
    assert "optimized" in text and "MB" in text


def test_remove_takes_the_optimised_graphs_and_prune_the_rest(tiny, photos, home):
    _pull(tiny, "mine")
    run_cli("predict", photos["china.jpg"], "-m", "mine")
    removed = run_cli("models", "remove", "mine")
    assert removed.returncode == 0 and "optimized" in removed.stdout
    assert list((home / "optimized").iterdir()) == []
    run_cli("predict", photos["china.jpg"], "-m", tiny)
    (home / "models").mkdir(exist_ok=True)
    (home / "models" / ".x.onnx.123.part").write_bytes(b"half")
    pruned = run_cli("cache", "prune")
    assert pruned.returncode == 0 and pruned.stdout.startswith("removed ")
    held = json.loads(run_cli("cache", "list", "--format", "json").stdout)
    assert held["optimized"] == [] and held["index"] == [] and held["leftovers"] == []


def test_no_lock_files_linger_after_pulls(tiny, home):
    _pull(tiny, "one")
    _pull(tiny, "two")
    assert not [p.name for p in home.rglob("*.lock")]


def test_pull_file_onto_a_used_name_needs_force(tiny, make_model, home):
    assert _pull(tiny, "mine").returncode == 0
    other = make_model("tiny", spatial=32, seed=22)
    refused = _pull(other, "mine")
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert (home / "models" / "mine.onnx").read_bytes() == tiny.read_bytes()
    assert _pull(other, "mine", "--force").returncode == 0
    assert (home / "models" / "mine.onnx").read_bytes() == other.read_bytes()
