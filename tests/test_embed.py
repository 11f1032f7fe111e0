"""`imgclass embed`: one vector per image in .npy (+ paths), .jsonl or .parquet; errors and --resume as in batch."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import jsonl, run_cli
from support import onnx_builders as builders

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment


@pytest.fixture
def folder(tmp_path, photos) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(photos[name], root / name)
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def in_process(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run([str(a) for a in args], Environment(stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def expected(model: Path, paths: list[Path], normalize: bool = False) -> np.ndarray:
    clf = imgclass.load(model)
    return np.stack([clf.vector(p, normalize=normalize) for p in paths])


def test_npy_and_its_paths_list(make_model, folder, tmp_path):
    model = make_model("tiny", spatial=32)
    out = tmp_path / "vectors.npy"
    proc = run_cli("embed", folder, "--model", model, "--output", out)
    assert proc.returncode == 1  # the broken image failed; the others are written
    assert "broken.jpg" in proc.stderr
    paths = (tmp_path / "vectors.paths.txt").read_text().splitlines()
    assert [Path(p).name for p in paths] == ["astronaut.png", "chelsea.png", "coffee.png"]
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 16)
    np.testing.assert_allclose(vectors, expected(model, [Path(p) for p in paths]), atol=1e-5)


def test_jsonl_to_stdout_with_error_records_and_normalize(make_model, folder):
    model = make_model("tiny", spatial=32, layout="NHWC", softmax=True)
    code, out, _ = in_process("embed", folder, "--model", model, "--normalize")
    rows = jsonl(out)
    assert code == 1
    assert [Path(r["path"]).name for r in rows] == ["astronaut.png", "broken.jpg", "chelsea.png", "coffee.png"]
    broken = rows[1]
    assert broken["vector"] is None and "not an image" in broken["error"]
    good = [r for r in rows if r["error"] is None]
    vectors = np.array([r["vector"] for r in good], np.float32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    # shortest float32 text, read back to the very same float32 values
    np.testing.assert_array_equal(vectors, expected(model, [Path(r["path"]) for r in good], normalize=True))


def test_resume_npy_adds_only_the_new_images(make_model, folder, tmp_path, photos):
    model = make_model("tiny", spatial=32)
    out = tmp_path / "v.npy"
    assert in_process("embed", folder / "chelsea.png", "--model", model, "-o", out)[0] == 0
    shutil.copy(photos["china.jpg"], folder / "china.jpg")
    code, _, err = in_process("embed", folder, "--model", model, "-o", out, "--resume", "-v")
    assert code == 1  # broken.jpg still fails (and is tried again on every resume)
    assert "1 already in the output" in err
    paths = [Path(p).name for p in (tmp_path / "v.paths.txt").read_text().splitlines()]
    assert paths == ["chelsea.png", "astronaut.png", "china.jpg", "coffee.png"]
    vectors = np.load(out)
    np.testing.assert_allclose(vectors, expected(model, [folder / p for p in paths]), atol=1e-5)
    # a file of another width is refused, not appended to
    narrow = builders.save(builders.tiny(builders.Signature(spatial=32), width=8), tmp_path / "narrow.onnx")
    code, _, err = in_process("embed", folder, "--model", narrow, "-o", out, "--resume")
    assert code == 2 and "written by another job (model" in err  # the job header names the model
    (tmp_path / ".v.npy.imgclass-job").unlink()  # a file from before job headers: the array itself is checked
    code, _, err = in_process("embed", folder, "--model", narrow, "-o", out, "--resume")
    assert code == 2 and "8-d float32 vectors" in err
    assert np.load(out).shape == (4, 16)


def test_resume_jsonl_skips_what_is_there_and_cuts_a_partial_line(make_model, folder, tmp_path):
    model = make_model("tiny", spatial=32)
    out = tmp_path / "v.jsonl"
    in_process("embed", folder / "coffee.png", folder / "broken.jpg", "--model", model, "-o", out)
    with open(out, "a") as handle:
        handle.write('{"path": "half')
    code, _, _ = in_process("embed", folder, "--model", model, "-o", out, "--resume")
    rows = jsonl(out.read_text())
    names = [Path(r["path"]).name for r in rows]
    assert names == ["coffee.png", "broken.jpg", "astronaut.png", "chelsea.png"]
    assert code == 0  # broken.jpg's error record was already there: skipped, as batch does
    (tmp_path / "foreign.jsonl").write_text('{"path": "a.jpg", "predictions": []}\n')
    code, _, err = in_process("embed", folder, "--model", model, "-o", tmp_path / "foreign.jsonl", "--resume")
    assert code == 2 and "not an imgclass vectors file; cannot resume into it" in err


def test_parquet(make_model, folder, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    model = make_model("tiny", spatial=32)
    out = tmp_path / "v.parquet"
    code, _, _ = in_process("embed", folder, "--model", model, "-o", out)
    table = pq.read_table(out).to_pylist()
    assert code == 1
    assert [Path(r["path"]).name for r in table] == ["astronaut.png", "broken.jpg", "chelsea.png", "coffee.png"]
    assert table[1]["vector"] is None and table[1]["error"]
    good = [r for r in table if r["error"] is None]
    np.testing.assert_allclose(
        np.array([r["vector"] for r in good]), expected(model, [Path(r["path"]) for r in good]), atol=1e-6
    )
    assert in_process("embed", folder, "--model", model, "-o", out, "--resume")[0] == 2


def test_parquet_without_pyarrow_names_the_extra(make_model, folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    code, _, err = in_process("embed", folder, "--model", make_model("tiny", spatial=32), "-o", tmp_path / "v.parquet")
    assert code == 2
    assert "pip install 'imgclass[parquet]'" in err
    assert not (tmp_path / "v.parquet").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "v.txt"], "name it .npy, .jsonl or .parquet"),
        (["--format", "npy"], "--format npy writes a file"),
        (["--resume"], "--resume needs --output"),
    ],
)
def test_usage_errors(make_model, folder, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process("embed", folder, "--model", make_model("tiny", spatial=32), *args)
    assert code == 2 and message in err and out == ""


def test_library_embed_matches_cli_and_keeps_input_order(make_model, folder):
    model = make_model("tiny", spatial=32)
    clf = imgclass.load(model)
    items = list(clf.embed([folder], batch_size=3, workers=2))
    _, out, _ = in_process("embed", folder, "--model", model)
    rows = jsonl(out)
    assert [i.path for i in items] == [r["path"] for r in rows]
    for item, row in zip(items, rows, strict=True):
        assert item.error == row["error"]
        if item.vector is not None:
            np.testing.assert_array_equal(item.vector, np.array(row["vector"], np.float32))
    assert json.loads(json.dumps(items[0].to_dict()))["model"] == str(model)
