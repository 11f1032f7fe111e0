"""Odd and broken inputs in one batch, interrupts and resume, closed pipes, hostile models."""

import base64
import csv
import io
import json
import os
import signal
import socket
import struct
import subprocess
import time

import numpy as np
import onnx
import pytest
from conftest import imgclass_command, jsonl, run_cli
from onnx import TensorProto, helper, numpy_helper
from PIL import Image


def make_corpus(root, photos):
    """Every odd-but-valid and every broken case, with what imgclass must say about each."""
    root.mkdir()
    china = Image.open(photos["china.jpg"])
    good, bad = [], {}

    def keep(name, img, **kw):
        img.save(root / name, **kw)
        good.append(name)

    keep("cmyk.jpg", china.convert("CMYK"))
    keep("grey16.png", Image.fromarray(np.asarray(china.convert("L"), np.uint16) * 257))
    keep("grey8.png", china.convert("L"))
    keep("rgba.png", china.convert("RGBA"))
    keep("la.png", china.convert("LA"))
    pal = china.convert("P")
    keep("palette.png", pal, transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 8
    keep("rotated.jpg", china, exif=exif)
    frames = [china.resize((64, 48)), china.resize((64, 48)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    good.append("anim.gif")
    frames[0].save(root / "pages.tiff", save_all=True, append_images=frames[1:])
    good.append("pages.tiff")
    keep("photo.webp", china, quality=80)
    keep("photo.bmp", china)
    keep("one.png", Image.new("RGB", (1, 1), (200, 10, 10)))
    keep("wide.png", china.resize((2000, 10)))
    keep("tall.png", china.resize((10, 2000)))
    keep("UPPER.JPG", china)
    keep("with space ü.jpg", china)

    data = photos["china.jpg"].read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    bad["truncated.jpg"] = "truncated"
    (root / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty file"
    (root / "page.jpg").write_text("<!doctype html><html>not found</html>")
    bad["page.jpg"] = "not an image"
    (root / "notes.png").write_text("just some text\n" * 20)
    bad["notes.png"] = "not an image"
    (root / "noise.jpg").write_bytes(np.random.default_rng(1).bytes(5000))
    bad["noise.jpg"] = "not an image"
    png = (root / "one.png").read_bytes()
    (root / "header.png").write_bytes(png[:33])  # signature + IHDR, no pixel data
    bad["header.png"] = "not an image"
    (root / "header.jpg").write_bytes(data[: data.index(b"\xff\xda") + 14])  # headers up to the scan, no data
    bad["header.jpg"] = "truncated"
    Image.new("L", (5000, 5000)).save(root / "bomb.png", optimize=True)
    bad["bomb.png"] = "over the limit"
    (root / "dir.jpg").mkdir()
    bad["dir.jpg"] = "is a directory"
    os.symlink(root / "vanished.jpg", root / "dangling.jpg")
    bad["dangling.jpg"] = "broken symlink"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "socket.png"))  # open() fails on a socket, even for root
    bad["socket.png"] = "cannot read file"
    raw_name = os.fsencode(root) + b"/caf\xe9.jpg"  # not valid UTF-8
    china.save(os.fsdecode(raw_name), format="JPEG")
    good.append("caf\udce9.jpg")
    add_hostile(root, china, good, bad)
    return good, bad


def add_hostile(root, china, good, bad):
    """Names and files made to break things: each must still get exactly one record."""
    small = china.resize((64, 48))
    for name in (
        "caf\\udce9.jpg",  # what the Latin-1 name above is shown as: a different file
        "[bold red]x[.jpg",
        "[link=x]y[reverse].jpg",
        "esc \x1b]0;pwned\x07.jpg",
        "two\nlines.jpg",
        "bom\ufeff.jpg",
    ):
        small.save(root / name, format="JPEG")
        good.append(name)
    os.mkfifo(root / "fifo.jpg")  # reading it would wait for a writer forever
    bad["fifo.jpg"] = "FIFO"
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), 7).save(buffer, format="PNG")  # 16 M pixels behind a 16x16 icon header
    png = buffer.getvalue()
    header = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    (root / "nested.ico").write_bytes(header + png)
    bad["nested.ico"] = "over the limit"
    deep = np.asarray(china.convert("L"), np.uint16) * 257
    Image.fromarray(np.tile(deep, (4, 4))).save(root / "deep16.png")  # 16-bit, 2.5 M pixels
    good.append("deep16.png")


def record_name(record):
    """The file name a record is for, exactly (its raw bytes when the name is not UTF-8)."""
    raw = base64.b64decode(record["path_bytes"]) if record.get("path_bytes") else record["path"].encode()
    return os.fsdecode(os.path.basename(raw))


def test_batch_classifies_the_good_and_reports_each_bad_file(make_model, photos, tmp_path, home):
    good, bad = make_corpus(tmp_path / "corpus", photos)
    model = make_model("tiny", spatial=None)
    result = run_cli("batch", tmp_path / "corpus", "--model", model, "--max-pixels", 10_000_000, "--top", "2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    records = {record_name(r): r for r in jsonl(result.stdout)}
    assert len(records) == len(jsonl(result.stdout)) and set(records) == set(good) | set(bad)
    for name in good:
        assert records[name]["error"] is None, (name, records[name]["error"])
        assert len(records[name]["predictions"]) == 2
    for name, fragment in bad.items():
        error = records[name]["error"]
        assert records[name]["predictions"] == [] and fragment in error and not error.startswith(str(tmp_path)), (
            name,
            error,
        )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(bad)
    for name in bad:
        assert sum(name in line for line in lines) == 1
    allowed = run_cli("predict", tmp_path / "corpus" / "truncated.jpg", "--model", model, "--allow-truncated")
    assert allowed.returncode == 0 and jsonl(allowed.stdout)[0]["error"] is None


def _image_dir(root, photos, count):
    root.mkdir()
    src = photos["chelsea.png"].read_bytes()
    for i in range(count):
        (root / f"img{i:03d}.png").write_bytes(src)
    return sorted(str(p) for p in root.iterdir())


def _wait_for_lines(path, count, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before the signal: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no records appeared")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_then_resume_holds_every_input_once(make_model, photos, tmp_path, home, signum, code):
    paths = _image_dir(tmp_path / "imgs", photos, 48)
    model = make_model("resnet50", spatial=224)
    out = tmp_path / "out.jsonl"
    cmd = [
        *imgclass_command(),
        "batch",
        str(tmp_path / "imgs"),
        "--model",
        str(model),
        "--output",
        str(out),
        "--batch-size",
        "4",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 1, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    first = out.read_text()
    assert first.endswith("\n")
    done = [json.loads(line)["path"] for line in first.splitlines()]
    assert 0 < len(done) < len(paths)
    resumed = run_cli("batch", tmp_path / "imgs", "--model", model, "--output", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    final = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(final) == paths  # every input exactly once
    assert final[: len(done)] == done


def test_resume_cuts_a_half_written_last_line(make_model, photos, tmp_path, home):
    paths = _image_dir(tmp_path / "imgs", photos, 3)
    model = make_model("tiny", spatial=None)
    out = tmp_path / "out.csv"
    assert run_cli("batch", paths[0], "--model", model, "--output", out).returncode == 0
    with open(out, "a") as handle:
        handle.write(f"{paths[1]},1,5,half")  # a crash mid-line
    assert run_cli("batch", tmp_path / "imgs", "--model", model, "--output", out, "--resume").returncode == 0
    rows = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert sorted(set(rows)) == paths and len(rows) == 3 * 5
    assert out.read_text().count("path,rank") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "table", "csv"])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_closed_pipe_ends_quietly(make_model, photos, tmp_path, home, fmt):
    _image_dir(tmp_path / "imgs", photos, 40)
    model = make_model("tiny", spatial=None)
    command = " ".join(f"'{c}'" for c in imgclass_command())
    shell = f"{command} batch '{tmp_path / 'imgs'}' --model '{model}' --format {fmt} --batch-size 1 | head -n 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120)
    assert len(result.stdout.splitlines()) == 1
    if fmt == "jsonl":
        assert json.loads(result.stdout)["error"] is None
    assert result.stderr == ""
    assert result.returncode == 0


# --- hostile and broken models --------------------------------------------------------


def _external_model(tmp_path, location):
    weight = numpy_helper.from_array(np.ones((1000, 3), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(1000 * 3 * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "models" / "hostile.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("kind", ["traversal", "absolute"])
def test_external_data_outside_the_model_folder_is_refused_unread(photos, tmp_path, home, kind):
    secret = tmp_path / "secret.bin"
    os.mkfifo(secret)  # opening this for reading would block: the run would time out
    location = "../secret.bin" if kind == "traversal" else str(secret)
    model = _external_model(tmp_path, location)
    result = run_cli("predict", photos["china.jpg"], "--model", model, timeout=60)
    assert result.returncode == 3
    assert "refused" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_external_data_inside_the_folder_is_fine(photos, tmp_path, home):
    model = _external_model(tmp_path, "weights.bin")
    (model.parent / "weights.bin").write_bytes(np.ones((1000, 3), np.float32).tobytes())
    result = run_cli("predict", photos["china.jpg"], "--model", model)
    assert result.returncode == 0, result.stderr


def test_truncated_and_rejected_models_exit_3(make_model, photos, tmp_path, home):
    data = make_model("tiny", spatial=None).read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    model = onnx.load_from_string(data)
    model.graph.node[0].op_type = "NoSuchOp"
    rejected = tmp_path / "rejected.onnx"
    rejected.write_bytes(model.SerializeToString())
    for path, fragment in ((truncated, "ONNX"), (rejected, "ONNX Runtime cannot load")):
        result = run_cli("predict", photos["china.jpg"], "--model", path)
        assert result.returncode == 3, result.stderr
        assert fragment in result.stderr and str(path) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    debug = run_cli("predict", photos["china.jpg"], "--model", rejected, "--debug")
    assert debug.returncode == 3 and "Traceback" in debug.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "table"])
def test_acceptance_every_hostile_input_gets_one_whole_record_in_every_format(make_model, photos, tmp_path, home, fmt):
    """Good images mixed with every hostile case: bounded time, one record per input, valid output, exit 1."""
    good, bad = make_corpus(tmp_path / "corpus", photos)
    model = make_model("tiny", spatial=None)
    out = tmp_path / f"out.{fmt}"
    args = ["batch", tmp_path / "corpus", "--model", model, "--max-pixels", 10_000_000, "--top", "2", "-f", fmt]
    result = run_cli(*args, *(["-o", out] if fmt != "table" else []), timeout=180)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    text = result.stdout if fmt == "table" else out.read_text(encoding="utf-8")
    names = set(good) | set(bad)
    if fmt in ("jsonl", "json"):
        records = jsonl(text) if fmt == "jsonl" else json.loads(text)
        assert sorted(record_name(r) for r in records) == sorted(names)
        assert all(len(r["predictions"]) == (0 if record_name(r) in bad else 2) for r in records)
    elif fmt in ("csv", "tsv"):
        table = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t"))
        per_input: dict = {}
        for row in table:
            per_input.setdefault(record_name(row), []).append(row)
        assert set(per_input) == names
        assert all(len(rows) == (1 if name in bad else 2) for name, rows in per_input.items())
        assert all([r["rank"] for r in per_input[name]] == ["1", "2"] for name in good)
    else:
        lines = text.splitlines()
        assert len(lines) == len(names)  # one line each, even for a name with a newline in it
        assert "\x1b" not in text and "\x07" not in text and "[bold red]x[" in text and "[link=x]y[reverse].jpg" in text
    for name, fragment in bad.items():
        assert sum(fragment in line and name in line for line in result.stderr.splitlines()) >= (
            0 if fmt == "table" else 1
        )
