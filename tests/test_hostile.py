"""Hostile inputs and faults: every input gets exactly one complete record, nothing is lost or overwritten.

Each test attacks one reproduction of the integrity issue through the installed entry point.
"""

import base64
import csv
import io
import json
import os

import numpy as np
import pytest
from conftest import imgclass_command, jsonl, run_cli
from onnx import TensorProto, helper, numpy_helper
from PIL import Image


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


def rows(text, fmt="csv"):
    return list(csv.DictReader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t"))


def nan_for_dark_images(path):
    """10 classes; the outputs are NaN when the image is darker than the mean (log of a negative number)."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32), "w")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("ReduceMean", ["flat"], ["brightness"], axes=[1], keepdims=1),  # per image
        helper.make_node("Log", ["brightness"], ["log"]),
        helper.make_node("Mul", ["log", "zero"], ["poison"]),  # 0 for a bright image, NaN for a dark one
        helper.make_node("Add", ["logits", "poison"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 10])],
        [weight, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def grey_images(folder, levels):
    folder.mkdir()
    for level in levels:
        Image.new("RGB", (40, 40), (level,) * 3).save(folder / f"grey{level:03d}.png")
    return sorted(folder.iterdir())


# --- 2: inputs that vanish ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "table"])
def test_non_finite_outputs_are_an_error_record_for_that_input(tmp_path, home, fmt):
    model = nan_for_dark_images(tmp_path / "nan.onnx")
    images = grey_images(tmp_path / "imgs", [10, 240, 20, 250])
    result = run_cli("batch", tmp_path / "imgs", "-m", model, "-f", fmt, "-k", "2", "--batch-size", "4")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    if fmt in ("jsonl", "json"):
        records = jsonl(result.stdout) if fmt == "jsonl" else json.loads(result.stdout)
        assert [r["path"] for r in records] == [str(p) for p in images]
        errors = {os.path.basename(r["path"]): r["error"] for r in records}
        assert all("not finite" in errors[n] for n in ("grey010.png", "grey020.png"))
        assert errors["grey240.png"] is None and errors["grey250.png"] is None
        assert all(len(r["predictions"]) == (0 if r["error"] else 2) for r in records)
    elif fmt in ("csv", "tsv"):
        table = rows(result.stdout, fmt)
        dark, dark2, light, light2 = (str(p) for p in images)  # sorted by name: grey010, grey020, grey240, grey250
        assert [r["path"] for r in table] == [dark, dark2, light, light, light2, light2]
        assert [bool(r["error"]) for r in table] == [True, True, False, False, False, False]
    else:
        lines = result.stdout.splitlines()
        assert len(lines) == 4 and sum("not finite" in line for line in lines) == 2


def test_nan_mean_is_refused_before_anything_runs(tiny, photos, home):
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "--mean", "nan,nan,nan")
    assert result.returncode == 2 and "finite" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_threshold_keeps_every_input_and_resume_does_not_redo_them(tiny, photos, tmp_path, home, fmt):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, path in photos.items():
        (folder / name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_text("no")
    out = tmp_path / f"out.{fmt}"
    first = run_cli("batch", folder, "-m", tiny, "--threshold", "0.5", "-o", out)
    assert first.returncode == 1
    written = out.read_text()
    if fmt == "jsonl":
        paths = [r["path"] for r in jsonl(written)]
    else:
        paths = [r["path"] for r in rows(written, fmt)]
        assert all(not r["rank"] for r in rows(written, fmt))  # nothing reaches 0.5 for a random model
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # 6 inputs, 6 records
    again = run_cli("batch", folder, "-m", tiny, "--threshold", "0.5", "-o", out, "--resume")
    assert again.returncode == 0 and out.read_text() == written  # nothing redone, nothing added


# --- 6: paths round-trip ------------------------------------------------------------------


def _odd_names(folder, photos):
    folder.mkdir()
    data = photos["china.jpg"].read_bytes()
    raw = os.fsencode(folder) + b"/caf\xe9.jpg"  # Latin-1, not UTF-8
    literal = folder / "caf\\udce9.jpg"  # a real file whose name is what the escaped form reads
    newline = folder / "two\nlines.jpg"
    for name in (raw, literal, newline):
        with open(name, "wb") as handle:
            handle.write(data)
    return raw, literal, newline


def _key(record):
    return base64.b64decode(record["path_bytes"]) if "path_bytes" in record else record["path"].encode()


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_non_utf8_names_on_stdin_round_trip_and_never_collide(tiny, photos, tmp_path, home):
    raw, literal, _ = _odd_names(tmp_path / "odd", photos)
    listing = raw + b"\n" + os.fsencode(literal) + b"\n"
    import subprocess

    result = subprocess.run([*imgclass_command(), "batch", "-", "-m", str(tiny), "-f", "jsonl"], input=listing,
                            capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"}, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout.decode())
    assert len(records) == 2 and all(r["error"] is None for r in records)
    assert records[0]["path"] == records[1]["path"]  # the same text: only path_bytes tells them apart
    assert [_key(r) for r in records] == [raw, os.fsencode(literal)]
    assert all(os.path.isfile(_key(r)) for r in records)
    assert "path_bytes" not in records[1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_tells_a_non_utf8_name_from_its_escaped_twin(tiny, photos, tmp_path, home, fmt):
    raw, literal, _ = _odd_names(tmp_path / "odd", photos)
    out = tmp_path / f"out.{fmt}"
    assert run_cli("batch", literal, "-m", tiny, "-o", out, "-k", "1").returncode == 0
    resumed = run_cli("batch", tmp_path / "odd", "-m", tiny, "-o", out, "-k", "1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    text = out.read_text()
    records = jsonl(text) if fmt == "jsonl" else rows(text)
    keys = sorted(_key({k: v for k, v in r.items() if v or k != "path_bytes"}) for r in records)
    assert keys == sorted([raw, os.fsencode(literal), os.fsencode(tmp_path / "odd" / "two\nlines.jpg")])


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_null_separated_list_reads_any_name(tiny, photos, tmp_path, home):
    raw, literal, newline = _odd_names(tmp_path / "odd", photos)
    import subprocess

    listing = b"\0".join([raw, os.fsencode(literal), os.fsencode(newline)]) + b"\0"
    result = subprocess.run([*imgclass_command(), "batch", "-", "--null", "-m", str(tiny), "-f", "csv"], input=listing,
                            capture_output=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout.decode())
    assert len({r["path"] + r["path_bytes"] for r in table}) == 3
    assert any(r["path"].endswith("two\nlines.jpg") for r in table)
    newline_split = subprocess.run([*imgclass_command(), "batch", "-", "-m", str(tiny), "-f", "jsonl"],
                                   input=os.fsencode(newline) + b"\n", capture_output=True, timeout=120)  # fmt: skip
    assert newline_split.returncode == 1  # without --null the name is two (missing) paths


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_closed_stdin_for_a_list_is_a_usage_error(tiny, home):
    import subprocess

    result = subprocess.run([*imgclass_command(), "batch", "-", "-m", str(tiny)], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.close(0))  # fmt: skip
    assert result.returncode == 2 and "stdin is closed" in result.stderr and "Traceback" not in result.stderr


# --- 15: closed standard streams ----------------------------------------------------------


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_closed_stdout_is_exit_4_in_one_line(tiny, photos, home):
    import subprocess

    result = subprocess.run([*imgclass_command(), "predict", str(photos["china.jpg"]), "-m", str(tiny)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                            preexec_fn=lambda: os.close(1))  # fmt: skip
    assert result.returncode == 4
    assert result.stderr.strip() == "imgclass: error: stdout: cannot write records: closed"


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_closed_stderr_never_stops_the_batch(tiny, photos, tmp_path, home):
    import subprocess

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}-bad.jpg").write_text("no")
        (folder / f"{i}-good.jpg").write_bytes(photos["china.jpg"].read_bytes())
    result = subprocess.run([*imgclass_command(), "batch", str(folder), "-m", str(tiny), "-f", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=120,
                            preexec_fn=lambda: os.close(2))  # fmt: skip
    assert result.returncode == 1
    assert len(jsonl(result.stdout)) == 6


# --- 4: never destroy a file we did not create ---------------------------------------------


def _folder(tmp_path, photos, count=3):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(count):
        (folder / f"{i}.jpg").write_bytes(photos["china.jpg"].read_bytes())
    return folder


def test_output_that_is_an_input_reached_through_a_folder_is_refused(tiny, photos, tmp_path, home):
    folder = _folder(tmp_path, photos)
    photo = folder / "1.jpg"
    before = photo.read_bytes()
    for args in (["batch", folder], ["batch", str(folder / "*.jpg")], ["predict", photo]):
        result = run_cli(*args, "-m", tiny, "-o", photo, "-f", "jsonl")
        assert result.returncode == 2, result.stderr
        assert "refusing to overwrite" in result.stderr or "is one of the inputs" in result.stderr
        assert photo.read_bytes() == before


def test_an_existing_file_that_is_not_ours_is_never_overwritten(tiny, photos, tmp_path, home):
    notes = tmp_path / "notes.csv"
    notes.write_text("name,score\nalice,3\n")
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "-o", notes)
    assert result.returncode == 2 and "not an imgclass output" in result.stderr
    assert notes.read_text() == "name,score\nalice,3\n"
    ours = tmp_path / "ours.csv"
    assert run_cli("predict", photos["china.jpg"], "-m", tiny, "-o", ours, "-k", "2").returncode == 0
    again = run_cli("predict", photos["china.jpg"], "-m", tiny, "-o", ours, "-k", "2")
    assert again.returncode == 2 and "--force" in again.stderr  # our own earlier output: replaced only when asked
    assert run_cli("predict", photos["china.jpg"], "-m", tiny, "-o", ours, "-k", "2", "--force").returncode == 0
    assert len(rows(ours.read_text())) == 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_resume_checks_the_file_is_ours_before_changing_a_byte(tiny, photos, tmp_path, home, fmt):
    other = tmp_path / f"diary.{fmt}"
    content = "Dear diary,\ntoday I resumed the wrong file\nand this line has no newline"
    other.write_text(content)
    result = run_cli("batch", photos["china.jpg"], "-m", tiny, "-o", other, "--resume")
    assert result.returncode == 2 and "cannot resume into it" in result.stderr
    assert other.read_text() == content


# --- 9: a record is written whole or not at all ---------------------------------------------


def test_resume_redoes_a_csv_record_cut_short_by_a_crash(tiny, photos, tmp_path, home):
    folder = _folder(tmp_path, photos, 4)
    out = tmp_path / "out.csv"
    assert run_cli("batch", folder / "0.jpg", folder / "1.jpg", "-m", tiny, "-o", out, "-k", "5").returncode == 0
    complete = rows(out.read_text())
    assert len(complete) == 10
    cut = out.read_text().splitlines(keepends=True)
    with open(out, "a") as handle:  # a crash while writing the record of 2.jpg: two rows and a half
        handle.write(
            "".join(line.replace("1.jpg", "2.jpg") for line in cut[6:8]) + cut[8].replace("1.jpg", "2.jpg")[:12]
        )
    resumed = run_cli("batch", folder, "-m", tiny, "-o", out, "-k", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    table = rows(out.read_text())
    counts = {os.path.basename(p): [r["path"] for r in table].count(p) for p in {r["path"] for r in table}}
    assert counts == {"0.jpg": 5, "1.jpg": 5, "2.jpg": 5, "3.jpg": 5}
    assert [r["rank"] for r in table if r["path"].endswith("2.jpg")] == ["1", "2", "3", "4", "5"]
    assert table[:10] == complete


def _fsize_limit(limit):
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("fault", ["full-disk", "file-size-limit"])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_disk_full_mid_record_leaves_only_whole_records_and_resume_completes(tiny, photos, tmp_path, home, fault):
    """A real full disk (a 16 KiB tmpfs in a private mount namespace), or RLIMIT_FSIZE where that is not allowed.

    Both make a write fail partway through a record, which is the fault under test; the
    reason shown differs ("no space left on device" / "file too large").
    """
    import subprocess

    from support import sandbox

    folder = _folder(tmp_path, photos, 40)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out, saved = outdir / "res.csv", tmp_path / "saved.csv"
    args = ["batch", folder, "-m", tiny, "-o", out, "-k", "5", "--batch-size", "1"]
    if fault == "full-disk":
        result = sandbox.run_in(sandbox.full_disk(outdir, 16), *args, after=f"cp {out} {saved}")
        reason = "no space left on device"
    else:
        command = [*imgclass_command(), *map(str, args)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=_fsize_limit(9000))
        out.rename(saved)
        reason = "file too large"
    assert result.returncode == 4, result.stderr
    assert reason in result.stderr and "Traceback" not in result.stderr
    text = saved.read_text()
    assert text.endswith("\n")
    table = rows(text)
    assert 0 < len(table) < 200 and len(table) % 5 == 0  # whole records only
    resumed = run_cli(*args[:4], "-o", saved, "-k", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    final = rows(saved.read_text())
    assert sorted({r["path"] for r in final}) == sorted(str(p) for p in folder.iterdir())
    assert len(final) == 200


# --- 3: nothing blocks forever --------------------------------------------------------------


def test_a_fifo_among_the_inputs_gets_an_error_record_and_the_batch_ends(tiny, photos, tmp_path, home):
    folder = _folder(tmp_path, photos, 2)
    os.mkfifo(folder / "b.jpg")  # opening this for reading would wait for a writer forever
    for args in ([folder], [folder / "b.jpg", folder / "0.jpg"]):
        result = run_cli("batch", *args, "-m", tiny, "-f", "jsonl", timeout=60)
        assert result.returncode == 1, result.stderr
        records = {os.path.basename(r["path"]): r for r in jsonl(result.stdout)}
        assert "FIFO" in records["b.jpg"]["error"] and records["0.jpg"]["error"] is None


def _started(proc, marker, stream_lines):
    """Wait (bounded) for `marker` in what the process wrote to stderr so far."""
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(marker in line for line in stream_lines):
            return
        if proc.poll() is not None:
            raise AssertionError(f"ended early: {proc.returncode} {stream_lines}")
        time.sleep(0.05)
    raise AssertionError(f"never saw {marker!r}")


def _reader(stream, lines):
    import threading

    def pump():
        for line in stream:
            lines.append(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signals", [1, 2])
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_sigterm_while_waiting_for_a_slow_list_on_stdin_exits_143(tiny, photos, tmp_path, home, signals):
    """The list's producer never ends (a `find` over a hung mount, say): SIGTERM still ends the run."""
    import signal
    import subprocess

    command = [*imgclass_command(), "batch", "-", "-m", str(tiny), "-f", "jsonl"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list = []
    reader = _reader(proc.stdout, out)
    proc.stdin.write(os.fsencode(photos["china.jpg"]) + b"\n")
    proc.stdin.flush()  # one path, and the list stays open
    _started(proc, b'"error": null', out)
    for _ in range(signals):
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    reader.join(timeout=10)
    stderr = proc.stderr.read().decode()
    assert code == 143, stderr
    assert "Traceback" not in stderr and "stopped by signal 15" in stderr
    assert len(out) == 1 and json.loads(out[0])["error"] is None  # the record written before the stop is whole


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_sigterm_during_a_download_exits_143_and_leaves_no_temp_file(home):
    """Outside a batch, SIGTERM raises, so `finally` blocks run: the .part file goes."""
    import signal
    import subprocess

    from support.http_server import Behaviour, Server

    body = b"x" * (64 * 1024 * 50)
    with Server(Behaviour(files={"/m.onnx": body}, delay=0.2)) as server:
        command = [*imgclass_command(), "models", "pull", "--url", f"{server.url}/m.onnx", "--name", "slow"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "IMGCLASS_HOME": str(home)})  # fmt: skip
        import time

        deadline = time.monotonic() + 60
        while not list((home / "models").glob("*.part")) if (home / "models").exists() else True:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert [p.name for p in (home / "models").iterdir()] == []


# --- 10: bounded memory per image -------------------------------------------------------------


def ico_with_nested_png(path, side):
    """An ICO whose directory says 16x16 while the PNG inside is side x side."""
    import struct

    buffer = io.BytesIO()
    Image.new("L", (side, side), 7).save(buffer, format="PNG")
    png = buffer.getvalue()
    header = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    path.write_bytes(header + png)
    return path


def test_an_image_nested_in_a_file_is_held_to_the_pixel_limit_before_decoding(tiny, tmp_path, home):
    icon = ico_with_nested_png(tmp_path / "bomb.ico", 3000)
    assert icon.stat().st_size < 100_000  # a small file that decodes to 9 million pixels
    refused = run_cli("predict", icon, "-m", tiny, "--max-pixels", 1_000_000, "-f", "jsonl")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    error = jsonl(refused.stdout)[0]["error"]
    assert "over the limit of 1000000 pixels" in error and "raise it with max_pixels" in error
    allowed = run_cli("predict", icon, "-m", tiny, "--max-pixels", 10_000_000, "-f", "jsonl")
    assert allowed.returncode == 0 and allowed.stderr == ""  # and no Pillow warning on stderr


def test_high_depth_images_are_converted_without_multiplying_their_size():
    """A 16-bit greyscale image is 2 bytes a pixel; converting it must not cost 26 (the float64 way)."""
    import tracemalloc

    from imgclass.data.images import to_rgb

    side = 2000
    ramp = (np.arange(side * side, dtype=np.uint32) % 65536).astype(np.uint16).reshape(side, side)
    for img in (
        Image.fromarray(ramp),
        Image.fromarray(ramp.astype(np.int32) * 3),
        Image.fromarray(ramp.astype(np.float32)),
    ):
        img.load()
        tracemalloc.start()
        try:
            rgb = to_rgb(img)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert rgb.mode == "RGB" and rgb.size == (side, side)
        assert peak < 8 * side * side, (img.mode, peak / (side * side))
    grey = np.asarray(to_rgb(Image.fromarray(ramp)))[..., 0]
    assert np.array_equal(grey, np.clip(np.round(ramp / 257.0), 0, 255).astype(np.uint8))  # same values as before


def test_resume_appends_to_a_csv_started_with_six_columns(tiny, photos, tmp_path, home):
    folder = _folder(tmp_path, photos, 2)
    out = tmp_path / "old.csv"
    assert run_cli("batch", folder / "0.jpg", "-m", tiny, "-o", out, "-k", "2").returncode == 0
    old = [",".join(line.split(",")[:6]) for line in out.read_text().splitlines()]  # as the previous version wrote
    out.write_text("\n".join(old) + "\n")
    assert run_cli("batch", folder, "-m", tiny, "-o", out, "-k", "2", "--resume").returncode == 0
    lines = out.read_text().splitlines()
    assert lines[:3] == old and len(lines) == 5 and all(line.count(",") == 5 for line in lines)
