"""`--engine ray` on a local Ray instance the tests start (2 CPUs): the same records as local, faults, Ctrl-C.

Skipped without the `imgclass[ray]` extra. One Ray instance serves the module
(in-process runs reuse it); the Ctrl-C test runs the real command, which starts
and stops its own. Every wait is bounded.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import time

import pytest
from conftest import imgclass_command, jsonl, run_cli
from test_engines import _folder, _same

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.images import display_path
from imgclass.errors import ExitCode

ray = pytest.importorskip("ray", reason="the imgclass[ray] extra is not installed")
pytest.importorskip("ray.data", reason="the imgclass[ray] extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for the module; shut down after it."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _batch(*args) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(["batch", *map(str, args), "-f", "jsonl"], Environment(stdout=out, stderr=err))
    return code, jsonl(out.getvalue()), err.getvalue()


def test_ray_gives_the_records_of_local_in_input_order(ray_instance, make_model, photos, tmp_path, monkeypatch):
    _folder(tmp_path / "imgs", photos, 12)
    (tmp_path / "imgs" / "sub").mkdir()
    (tmp_path / "imgs" / "sub" / "flower.jpg").write_bytes(photos["flower.jpg"].read_bytes())
    monkeypatch.chdir(tmp_path)  # relative paths in, the same relative paths in the records
    model = make_model("tiny", spatial=32)
    common = ("imgs", "-r", "-m", model, "--top", "3", "--batch-size", "4")
    local_code, local, _ = _batch(*common)
    code, records, stderr = _batch(*common, "--engine", "ray")
    assert local_code == code == ExitCode.INPUT_FAILED  # three broken files
    assert len(records) == 18 and os.path.join("imgs", "sub", "flower.jpg") in [r["path"] for r in records]
    _same(records, local)  # input order: each folder sorted, as locally
    assert sum(r["error"] is not None for r in records) == 3
    assert "imgs/broken.jpg: not an image Pillow can read" in stderr
    assert "ray: 18 images in" in stderr and "on 1 node, 2 CPUs, 0 GPUs, 1 model actor" in stderr

    assert [r["path"] for r in records if "path_bytes" in r] == ["imgs/caf\\udce9.jpg"]  # a name that is not UTF-8

    (tmp_path / "imgs" / os.fsdecode(b"caf\xe9.jpg")).unlink()  # pyarrow lists UTF-8 names only
    uri = (tmp_path / "imgs").as_uri()  # the object store path: pyarrow's filesystem, bytes decoded in the tasks
    code, remote, _ = _batch(uri + "/", "-m", model, "--top", "3", "--engine", "ray")
    flat = [r for r in local if os.sep not in r["path"].removeprefix("imgs" + os.sep) and "path_bytes" not in r]
    assert [r["path"] for r in remote] == [uri + "/" + os.path.basename(r["path"]) for r in flat]
    for record in remote + flat:
        record["path"] = os.path.basename(record["path"])
    _same(remote, flat)


def test_a_killed_actor_is_restarted_and_every_input_comes_once(ray_instance, make_model, photos, tmp_path):
    from ray._private import state

    from imgclass.engines import EngineOptions, RunOptions, open_engine

    _folder(tmp_path / "imgs", photos, 160)
    paths = sorted(str(p) for p in (tmp_path / "imgs").iterdir())
    clf = imgclass.load(make_model("resnet50", spatial=64), device="cpu")
    local = [r.to_dict() for r in clf.classify(paths, batch_size=4, expand_inputs=False)]
    records, killed = [], None
    with open_engine(EngineOptions("ray")) as engine:
        run_ = engine.classify(clf, paths, RunOptions(batch_size=4))
        for record in run_:
            records.append(record.to_dict())
            if killed is None and len(records) >= 4:
                actors = [a for a in state.actors().values() if "ImgclassModel" in a["ActorClassName"]]
                alive = [a["Pid"] for a in actors if a["State"] == "ALIVE"]
                assert len(alive) == 1, actors
                killed = alive[0]
                os.kill(killed, signal.SIGKILL)
    assert killed is not None and killed in run_.workers
    assert len(run_.workers) == 2  # records came from the killed actor and from its restart: it died mid-job
    assert [r["path"] for r in records] == [display_path(p) for p in paths]  # every input once, in input order
    _same(records, local)


def test_a_model_the_workers_cannot_load_fails_the_run_with_a_model_error(ray_instance, make_model, photos, tmp_path):
    from imgclass.engines import EngineOptions, open_engine
    from imgclass.errors import ModelError

    model = tmp_path / "gone.onnx"
    model.write_bytes(make_model("tiny", spatial=32).read_bytes())
    clf = imgclass.load(model, device="cpu")
    clf.model.runner  # noqa: B018 - the driver's copy is loaded
    model.unlink()  # the actors load the file by path: as on a node that does not mount it
    with open_engine(EngineOptions("ray")) as engine, pytest.raises(ModelError, match="gone.onnx"):
        list(engine.classify(clf, [str(photos["china.jpg"])]))


def test_embed_on_ray_writes_the_vectors_of_local_to_parquet(ray_instance, make_model, photos, tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    _folder(tmp_path / "imgs", photos, 6)
    model = make_model("tiny", spatial=32)
    out = io.StringIO()
    code = run(
        ["embed", str(tmp_path / "imgs"), "-m", str(model), "--normalize"],
        Environment(stdout=out, stderr=io.StringIO()),
    )
    local = jsonl(out.getvalue())
    err = io.StringIO()
    target = tmp_path / "vectors.parquet"
    ray_code = run(["embed", str(tmp_path / "imgs"), "-m", str(model), "--normalize", "-o", str(target), "--engine", "ray"],
                   Environment(stdout=io.StringIO(), stderr=err))  # fmt: skip
    assert code == ray_code == ExitCode.INPUT_FAILED, err.getvalue()
    table = pq.read_table(target).to_pylist()
    assert [r["path"] for r in table] == [r["path"] for r in local] and len(local) == 11
    assert [r["error"] for r in table] == [r["error"] for r in local]
    pairs = [(np.array(a["vector"]), np.array(b["vector"])) for a, b in zip(table, local, strict=True) if b["vector"]]
    assert len(pairs) == 8 and max(float(np.abs(a - b).max()) for a, b in pairs) < 1e-6
    assert "ray: 11 images in" in err.getvalue()


def test_evaluate_on_ray_gives_the_report_of_local(ray_instance, make_model, photos, tmp_path):
    root = tmp_path / "set"
    for folder, name in (("0", "coffee.png"), ("0", "china.jpg"), ("n02123045", "chelsea.png"), ("7", "flower.jpg")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(photos[name].read_bytes())
    (root / "7" / "broken.png").write_text("not an image")
    model = make_model("tiny", spatial=32)

    def report(*extra: str) -> tuple[int, dict]:
        out = io.StringIO()
        code = run(["evaluate", str(root), "-m", str(model), "-f", "json", *extra],
                   Environment(stdout=out, stderr=io.StringIO()))  # fmt: skip
        data = json.loads(out.getvalue())
        return code, {k: v for k, v in data.items() if k not in ("seconds", "images_per_s")}

    local_code, local = report()
    code, remote = report("--engine", "ray", "--batch-size", "2")
    assert local_code == code == ExitCode.INPUT_FAILED
    assert (remote["images"], remote["classified"], remote["failed"]) == (5, 4, 1)
    assert remote == local


def _wait_for_records(folder, proc, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.stat().st_size for p in folder.glob("part-*.jsonl")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before the signal: {proc.communicate()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no records appeared")


def test_ctrl_c_stops_cleanly_and_resume_fills_the_shards(make_model, photos, tmp_path, home):
    """The real command, starting its own local Ray: SIGINT -> 130, whole records; --resume -> the rest."""
    paths = [p for p in _folder(tmp_path / "imgs", photos, 120) if "img" in os.path.basename(p)]
    for name in ("broken.jpg", "empty.png", "truncated.jpg", "coffee.png", os.fsdecode(b"caf\xe9.jpg")):
        (tmp_path / "imgs" / name).unlink()
    model = make_model("resnet50", spatial=96)
    out = tmp_path / "shards"
    out.mkdir()
    cmd = [*imgclass_command(), "batch", str(tmp_path / "imgs"), "-m", str(model), "-o", str(out), "--engine", "ray",
           "--batch-size", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_records(out, proc)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.SIGINT, stderr
    assert "Traceback" not in stderr and "stopped by signal 2" in stderr
    first = (out / "part-00000.jsonl").read_text()
    assert first.endswith("\n")
    done = [json.loads(line)["path"] for line in first.splitlines()]
    assert 0 < len(done) < len(paths) and done == paths[: len(done)]

    resumed = run_cli("batch", tmp_path / "imgs", "-m", model, "-o", out, "--resume", "--engine", "ray", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"ray: {len(paths) - len(done)} images in" in resumed.stderr
    written = [r["path"] for shard in sorted(out.glob("part-*.jsonl")) for r in jsonl(shard.read_text())]
    assert sorted(written) == paths and len(written) == len(set(written))  # every input exactly once
