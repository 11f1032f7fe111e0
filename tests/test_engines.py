"""Engines without a cluster: the distributed work units equal a local run, shards, and Ray stays optional.

Everything here runs whether or not the `imgclass[ray]` extra is installed
(the URI tests need pyarrow, which the extra brings, and skip without it).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import jsonl, run_cli
from PIL import Image

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.images import display_path
from imgclass.data.sources import path_bytes
from imgclass.engines import is_uri
from imgclass.engines.work import ModelSpec, ModelWorker, locate, prepare_batch
from imgclass.errors import ExitCode, InputError, UsageError

BLOCK_RAY = (
    "import sys\n"
    "class _NoRay:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'ray' or name.startswith('ray.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)', name=name)\n"
    "        return None\n"
    "sys.meta_path.insert(0, _NoRay())\n"
)


def _folder(root: Path, photos, count: int = 6) -> list[str]:
    """Small JPEGs cut from real photos (big enough for draft decoding), a PNG, and three bad files."""
    root.mkdir(parents=True, exist_ok=True)
    source = Image.open(photos["china.jpg"]).convert("RGB")
    for i in range(count):
        x, y = (i * 20) % 300, (i * 10) % 180
        source.crop((x, y, x + 320, y + 240)).save(root / f"img{i:02d}.jpg", quality=90)
    (root / "coffee.png").write_bytes(photos["coffee.png"].read_bytes())
    (root / os.fsdecode(b"caf\xe9.jpg")).write_bytes(photos["flower.jpg"].read_bytes())  # a name that is not UTF-8
    (root / "broken.jpg").write_bytes(b"not an image at all")
    (root / "empty.png").write_bytes(b"")
    data = (root / "img00.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return sorted(str(p) for p in root.iterdir())


def _same(ours: list[dict], theirs: list[dict]) -> None:
    """Same paths, errors, models, presets, class indices and labels; probabilities within 1e-6."""
    assert [r["path"] for r in ours] == [r["path"] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        keys = ("error", "model", "preset", "multi_label", "path_bytes")
        assert [a.get(k) for k in keys] == [b.get(k) for k in keys], a["path"]
        assert [(p["rank"], p["index"], p["label"]) for p in a["predictions"]] == [
            (p["rank"], p["index"], p["label"]) for p in b["predictions"]
        ]
        assert np.allclose([p["probability"] for p in a["predictions"]], [p["probability"] for p in b["predictions"]],
                           rtol=0, atol=1e-6)  # fmt: skip


def _rows(paths: list[str]) -> dict:
    """The input block the ray engine builds on the driver."""
    return {
        "index": np.arange(len(paths), dtype=np.int64),
        "path": np.array([display_path(p) for p in paths], dtype=object),
        "location": np.array([locate(p) for p in paths], dtype=object),
        "raw": np.array([path_bytes(p) or "" for p in paths], dtype=object),
    }


def _work(clf, paths: list[str], **spec) -> list:
    """prepare_batch then ModelWorker in two uneven batches, as Ray Data would call them; the objects back."""
    rows = _rows(paths)
    assert all(os.path.isabs(os.fsdecode(loc)) for loc in rows["location"])
    prepared = prepare_batch(rows, clf.model.transform, clf.decode)
    worker = ModelWorker(ModelSpec.of(clf, top=3, threshold=None, threads=1, device="cpu", **spec))
    out = worker({k: v[:5] for k, v in prepared.items()}), worker({k: v[5:] for k, v in prepared.items()})
    assert np.concatenate([part["index"] for part in out]).tolist() == list(range(len(paths)))
    return [pickle.loads(data) for part in out for data in part["record"]]


def _relative_inputs(photos, tmp_path, monkeypatch) -> list[str]:
    _folder(tmp_path / "imgs", photos)
    monkeypatch.chdir(tmp_path)  # relative inputs: records keep them, workers get absolute locations
    return sorted(os.path.join("imgs", name) for name in os.listdir("imgs")) + ["imgs/missing.jpg"]


@pytest.mark.parametrize("head", ["logits", "sigmoid"])
def test_prepare_and_model_worker_give_the_records_of_a_local_run(make_model, photos, tmp_path, monkeypatch, head):
    paths = _relative_inputs(photos, tmp_path, monkeypatch)
    clf = imgclass.load(make_model("tiny", spatial=32, head=head), device="cpu")
    local = [r.to_dict() for r in clf.classify(paths, top=3, batch_size=4, expand_inputs=False)]
    assert all(r["multi_label"] == (head == "sigmoid") for r in local)
    records = [r.to_dict() for r in _work(clf, paths)]
    _same(records, local)
    assert sum("path_bytes" in r for r in records) == 1
    errors = {r["path"]: r["error"] for r in records if r["error"]}
    assert set(errors) == {"imgs/broken.jpg", "imgs/empty.png", "imgs/missing.jpg", "imgs/truncated.jpg"}
    assert errors["imgs/empty.png"] == "empty file" and "no such file" in errors["imgs/missing.jpg"]


@pytest.mark.parametrize("normalize", [False, True])
def test_prepare_and_model_worker_give_the_vectors_of_a_local_embed(make_model, photos, tmp_path, monkeypatch,
                                                                    normalize):  # fmt: skip
    paths = _relative_inputs(photos, tmp_path, monkeypatch)
    clf = imgclass.load(make_model("tiny", spatial=32), device="cpu")
    local = list(clf.embed(paths, normalize=normalize, batch_size=4, expand_inputs=False))
    ours = _work(clf, paths, task="embed", normalize=normalize)
    assert [(e.path, e.model, e.error) for e in ours] == [(e.path, e.model, e.error) for e in local]
    good = [(a.vector, b.vector) for a, b in zip(ours, local, strict=True) if a.error is None]
    assert len(good) == len(paths) - 4 and all(a.shape == (clf.bottleneck.dim,) for a, _ in good)
    assert max(float(np.abs(a - b).max()) for a, b in good) < 1e-6
    if normalize:
        assert all(abs(float(np.linalg.norm(a)) - 1.0) < 1e-5 for a, _ in good)


def test_model_worker_names_the_model_as_the_driver_does(make_model, tmp_path, monkeypatch):
    model = make_model("tiny", spatial=32)
    (tmp_path / "m.onnx").write_bytes(model.read_bytes())
    monkeypatch.chdir(tmp_path)
    clf = imgclass.load("m.onnx", device="cpu", preset="timm-inception")
    spec = ModelSpec.of(clf, top=2, threshold=0.0, threads=1, device="cpu")
    assert spec.spec == str(tmp_path / "m.onnx") and spec.name == "m.onnx"
    worker = ModelWorker(spec)
    assert worker.classifier.model.name == "m.onnx"
    assert worker.classifier.model.preset.preset.name == clf.model.preset.preset.name == "timm-inception"


def test_model_worker_keeps_a_catalog_preset_that_the_file_alone_does_not_say(make_model):
    from imgclass.classifier import Classifier, LoadOptions
    from imgclass.data.presets import Overrides
    from imgclass.store.loader import ModelSettings, load_model

    options = LoadOptions(device="cpu", overrides=Overrides(crop_pct=0.8))
    settings = ModelSettings(overrides=options.overrides)
    loaded = load_model(make_model("tiny", spatial=32), "zoo-model", settings, catalog_preset="timm-resnet")
    clf = Classifier(loaded, options)
    assert clf.model.preset.source.startswith("catalog") and clf.model.preset.preset.name.startswith("timm-resnet+")
    worker = ModelWorker(ModelSpec.of(clf, top=2, threshold=0.0, threads=1, device="cpu"))
    assert worker.classifier.model.name == "zoo-model"
    assert worker.classifier.model.preset.preset == clf.model.preset.preset
    assert worker.classifier.model.transform == clf.model.transform


def test_a_folder_output_takes_jsonl_shards_and_resumes_into_new_ones(make_model, photos, tmp_path, monkeypatch):
    import imgclass.output.shards

    paths = [p for p in _folder(tmp_path / "imgs", photos, 5) if "broken" not in p and "empty" not in p]
    paths = [p for p in paths if "truncated" not in p]
    model = make_model("tiny", spatial=32)
    out = tmp_path / "shards"
    out.mkdir()
    monkeypatch.setattr(imgclass.output.shards, "SHARD_RECORDS", 2)

    def batch(*args: str) -> tuple[int, str]:
        stderr = io.StringIO()
        code = run(["batch", *args, "-m", str(model), "-o", str(out)], Environment(stdout=io.StringIO(), stderr=stderr))
        return code, stderr.getvalue()

    assert batch(*paths[:3])[0] == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "part-00000.jsonl",
        "part-00001.jsonl",
    ]
    assert len(jsonl((out / "part-00000.jsonl").read_text())) == 2
    code, stderr = batch(*paths)
    assert code == ExitCode.USAGE and "--resume" in stderr
    with open(out / "part-00001.jsonl", "a") as handle:
        handle.write('{"path": "half a rec')  # a run that died mid-write
    assert batch(*paths, "--resume")[0] == 0
    shards = sorted(p for p in out.iterdir() if not p.name.startswith("."))  # .imgclass-job: the job header
    assert [p.name for p in shards] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl", "part-00003.jsonl"]
    written = [r["path"] for shard in shards for r in jsonl(shard.read_text())]
    assert written == [display_path(p) for p in paths]  # every input once, in input order across the shards
    code, stderr = batch(*paths, "-f", "csv")
    assert code == ExitCode.USAGE and "jsonl" in stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_ray_engine_without_ray_exits_2_naming_the_extra(make_model, photos, tmp_path, home):
    folder = tmp_path / "inject"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCK_RAY)
    result = run_cli("batch", photos["china.jpg"], "-m", make_model("tiny", spatial=32), "--engine", "ray",
                     env={"PYTHONPATH": str(folder)})  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "--engine ray needs the optional extra: pip install 'imgclass[ray]'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    local = run_cli("batch", photos["china.jpg"], "-m", make_model("tiny", spatial=32), env={"PYTHONPATH": str(folder)})
    assert local.returncode == 0 and len(jsonl(local.stdout)) == 1  # the local engine does not care


@pytest.mark.parametrize("args", [["batch", "--help"], ["batch", "PHOTO", "-m", "MODEL", "-o", "OUT"]])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_local_batch_never_imports_ray_or_pyarrow(args, make_model, photos, tmp_path, home):
    args = [{"PHOTO": str(photos["china.jpg"]), "MODEL": str(make_model("tiny", spatial=32)),
             "OUT": str(tmp_path / "out.jsonl")}.get(a, a) for a in args]  # fmt: skip
    code = (
        "import sys\n"
        f"sys.argv = ['imgclass', *{args!r}]\n"
        "from imgclass.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "sys.stderr.write('LOADED=' + ','.join(m for m in ('ray', 'pyarrow') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=home.parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("LOADED=")


def test_engine_options_that_need_ray_are_refused_locally(make_model, photos, home):
    tiny = make_model("tiny", spatial=32)
    actors = run_cli("batch", photos["china.jpg"], "-m", tiny, "--actors", "2")
    assert actors.returncode == ExitCode.USAGE and "--engine ray" in actors.stderr
    bucket = run_cli("batch", "s3://bucket/photos/", "-m", tiny)
    assert (
        bucket.returncode == ExitCode.USAGE
        and "--engine ray" in bucket.stderr
        and "s3://bucket/photos/" in bucket.stderr
    )
    assert is_uri("s3://b/k") and is_uri("file:///tmp/x") and not is_uri("photos/a.jpg") and not is_uri("C://x")


def test_object_store_uris_are_listed_sorted_and_read(photos, tmp_path):
    pytest.importorskip("pyarrow")
    from imgclass.engines.storage import list_uri, read_uri

    _folder(tmp_path / "imgs", photos, 3)
    odd = tmp_path / "imgs" / os.fsdecode(b"caf\xe9.jpg")
    with pytest.raises(UsageError, match="not UTF-8"):
        list(list_uri((tmp_path / "imgs").as_uri()))
    odd.unlink()
    (tmp_path / "imgs" / "sub").mkdir()
    (tmp_path / "imgs" / "sub" / "deep.jpg").write_bytes(photos["flower.jpg"].read_bytes())
    (tmp_path / "imgs" / "notes.txt").write_text("not listed")
    base = (tmp_path / "imgs").as_uri()
    flat = list(list_uri(base + "/"))
    assert flat == [f"{base}/{n}" for n in sorted(os.listdir(tmp_path / "imgs")) if n not in ("sub", "notes.txt")]
    deep = list(list_uri(base, recursive=True))
    assert deep == sorted(flat + [f"{base}/sub/deep.jpg"])
    assert list(list_uri(base + "/img*.jpg")) == [f"{base}/img0{i}.jpg" for i in range(3)]
    assert list(list_uri(base + "/nothing-*.jpg")) == [base + "/nothing-*.jpg"]  # reading it fails, on its own
    assert list(list_uri(base + "/missing.jpg")) == [base + "/missing.jpg"]
    assert read_uri(f"{base}/img00.jpg", "x") == (tmp_path / "imgs" / "img00.jpg").read_bytes()
    with pytest.raises(InputError, match="no such object"):
        read_uri(base + "/missing.jpg", "missing")


@pytest.mark.parametrize(
    "cpus, gpus, device, threads, actors, expected",
    [
        (2, 0, "auto", None, None, (1, 1, 0, "cpu")),  # a laptop: one actor, one CPU left for decoding
        (16, 0, "auto", None, None, (8, 1, 0, "cpu")),
        (16, 0, "cpu", 3, 5, (5, 3, 0, "cpu")),
        (32, 4, "auto", None, None, (4, 1, 1, "cuda")),  # a GPU per actor when the cluster has them
        (32, 4, "cpu", None, 2, (2, 1, 0, "cpu")),
        (32, 4, "cuda:1", None, 2, (2, 1, 1, "cuda")),  # Ray picks the GPU; the actor sees it as cuda
        (0, 0, "auto", None, None, (1, 1, 0, "cpu")),  # an autoscaler starting from nothing
        (2, 0, "auto", None, 2, "needs 2 CPUs and one more"),
        (8, 0, "cuda", None, None, "has no GPUs"),
        (32, 2, "cuda", None, 3, "has 2 GPUs"),
    ],
)
def test_ray_placement_of_model_actors(cpus, gpus, device, threads, actors, expected):
    from imgclass.engines import Cluster
    from imgclass.engines.ray import RayEngine
    from imgclass.errors import UsageError

    engine = RayEngine(actors=actors)  # not connected: placement only reads the cluster's size
    engine.cluster = Cluster(cpus=cpus, gpus=gpus)
    if isinstance(expected, str):
        with pytest.raises(UsageError, match=expected):
            engine.placement(device, threads)
    else:
        assert engine.placement(device, threads) == expected


def test_ray_engine_refuses_ensembles_and_tta_before_starting_anything(make_model):
    from imgclass.engines import Cluster, RunOptions
    from imgclass.engines.ray import RayEngine

    engine = RayEngine()
    engine.cluster = Cluster(cpus=4)  # not connected: the refusal comes first
    tta = imgclass.load(make_model("tiny", spatial=32), device="cpu", tta="flip")
    with pytest.raises(UsageError, match="engine local"):
        engine.classify(tta, ["a.jpg"], RunOptions())
