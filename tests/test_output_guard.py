"""Issue 20, the output half: every file imgclass writes goes through one guard and one atomic writer.

Each test attacks one reproduction through the installed entry point (or the public API) and
checks that nothing was destroyed: the exit code, the one line on stderr, the bytes of the victim.
"""

import hashlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import imgclass_command, jsonl, run_cli


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


@pytest.fixture
def other(make_model):
    return make_model("tiny", seed=1, spatial=32)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refused(result, *words):
    """Exit 2, one error line naming the file, and the words of the fix."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("imgclass: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def album(folder: Path, photos, names=("coffee.png", "chelsea.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(photos[name], folder / name)
    return folder


# 1. --report onto a photo or a file that is not ours


def test_report_never_overwrites_an_input_photo_or_a_file_not_ours(tiny, photos, tmp_path, home):
    imgs = album(tmp_path / "imgs", photos)
    before = digest(imgs / "coffee.png")
    refused(run_cli("batch", imgs, "-m", tiny, "--report", imgs / "coffee.png"), "coffee.png", "inputs")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    refused(run_cli("batch", imgs, "-m", tiny, "--report", notes), "notes.txt", "not an imgclass HTML report")
    refused(run_cli("explain", imgs / "coffee.png", "-m", tiny, "-o", tmp_path / "maps", "--report",
                    imgs / "coffee.png"), "--report", "inputs")  # fmt: skip
    assert digest(imgs / "coffee.png") == before and notes.read_text() == "my notes\n"
    report = tmp_path / "r.html"
    assert run_cli("batch", imgs, "-m", tiny, "--report", report).returncode == 0
    refused(run_cli("batch", imgs, "-m", tiny, "--report", report), "r.html", "--force")
    assert run_cli("batch", imgs, "-m", tiny, "--report", report, "--force").returncode == 0


# 2. models, vectors and paths lists onto inputs and users' files


@pytest.mark.slow
def test_train_and_quantize_outputs_never_overwrite_their_own_photos(tiny, photos, tmp_path, home):
    pytest.importorskip("sklearn")
    train = tmp_path / "tr"
    for label in ("alpha", "zeta"):
        album(train / label, photos)
    victim = train / "zeta" / "x.JPEG"
    shutil.copy(photos["china.jpg"], victim)
    before = digest(victim)
    refused(run_cli("train", train, "-m", tiny, "--output", victim), "x.JPEG", "inputs")
    cal = album(tmp_path / "cal", photos)
    shutil.copy(photos["china.jpg"], cal / "a.JPEG")
    refused(run_cli("models", "quantize", tiny, "--calibrate", cal, "--output", cal / "a.JPEG"), "a.JPEG", "inputs")
    refused(run_cli("models", "quantize", tiny, "--calibrate", cal, "--output", tiny), "inputs")
    notes = tmp_path / "model.onnx"
    notes.write_text("not a model")
    refused(run_cli("train", train, "-m", tiny, "--output", notes, "--force"), "not an ONNX model")
    assert digest(victim) == before and digest(cal / "a.JPEG") == before and notes.read_text() == "not a model"


def test_embed_never_overwrites_an_input_a_users_file_or_a_paths_list(tiny, photos, tmp_path, home):
    emb = album(tmp_path / "emb", photos)
    before = digest(emb / "coffee.png")
    refused(run_cli("embed", emb, "-m", tiny, "-o", emb / "coffee.png", "--format", "npy"), "coffee.png", "inputs")
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"mine": 1}\n')
    refused(run_cli("embed", emb, "-m", tiny, "-o", mine), "mine.jsonl", "not an imgclass vectors file")
    listing = tmp_path / "v.paths.txt"
    listing.write_text("my list\n")
    refused(run_cli("embed", emb, "-m", tiny, "-o", tmp_path / "v.npy"), "v.paths.txt", "paths list")
    assert digest(emb / "coffee.png") == before and mine.read_text() == '{"mine": 1}\n'
    assert listing.read_text() == "my list\n" and not (tmp_path / "v.npy").exists()


# 3. explain into its own input folder, planted symlinks, temp files through symlinks


def test_explain_refuses_input_overlays_and_symlinks_planted_in_the_output_folder(tiny, photos, tmp_path, home):
    ph = album(tmp_path / "photos", photos, ("coffee.png",))
    shutil.copy(photos["chelsea.png"], ph / "coffee.cam.png")  # an input named like an overlay
    before = digest(ph / "coffee.cam.png")
    refused(run_cli("explain", ph, "-m", tiny, "-o", ph), "coffee.cam.png", "inputs")
    assert digest(ph / "coffee.cam.png") == before
    secret = tmp_path / "secret.txt"
    secret.write_text("keep")
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "coffee.cam.png").symlink_to(secret)
    refused(run_cli("explain", ph / "coffee.png", "-m", tiny, "-o", maps), "coffee.cam.png", "symlink")
    assert secret.read_text() == "keep"
    (maps / "coffee.cam.png").unlink()
    ok = run_cli("explain", ph / "coffee.png", "-m", tiny, "-o", maps, "--npy")
    assert ok.returncode == 0, ok.stderr
    refused(run_cli("explain", ph / "coffee.png", "-m", tiny, "-o", maps), "coffee.cam.png", "--force")
    assert run_cli("explain", ph / "coffee.png", "-m", tiny, "-o", maps, "--npy", "--force").returncode == 0
    assert sorted(p.name for p in maps.iterdir()) == ["coffee.cam.npy", "coffee.cam.png"]  # no temp file left


def test_the_atomic_writer_never_opens_its_temp_file_through_a_symlink(tmp_path, monkeypatch):
    from imgclass._util import fs

    secret = tmp_path / "secret.txt"
    secret.write_text("keep")
    planted = tmp_path / ".out.bin.tmp"
    planted.symlink_to(secret)
    monkeypatch.setattr(fs, "temp_name", lambda path, suffix=".tmp": planted)
    with pytest.raises(FileExistsError):
        fs.write_atomically(tmp_path / "out.bin", b"attack")
    assert secret.read_text() == "keep" and not (tmp_path / "out.bin").exists()
    monkeypatch.undo()
    target = tmp_path / "out.bin"
    target.symlink_to(secret)
    fs.write_atomically(target, b"new")  # replaces the link itself, never its target
    assert secret.read_text() == "keep" and not target.is_symlink() and target.read_bytes() == b"new"


# 4. a run without --resume onto an interrupted output


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_run_without_resume_onto_an_interrupted_output_refuses(tiny, photos, tmp_path, home, fmt):
    imgs = album(tmp_path / "imgs", photos, tuple(photos))
    out = tmp_path / f"out.{fmt}"
    assert run_cli("batch", imgs, "-m", tiny, "-o", out, "-k", "1").returncode == 0
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 20])  # stopped mid-record
    line = refused(run_cli("batch", imgs, "-m", tiny, "-o", out, "-k", "1"), f"out.{fmt}", "--resume", "--force")
    assert "exists" in line and out.read_bytes() == data[: len(data) - 20]
    resumed = run_cli("batch", imgs, "-m", tiny, "-o", out, "-k", "1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == data
    assert run_cli("batch", imgs / "coffee.png", "-m", tiny, "-o", out, "-k", "1", "--force").returncode == 0
    assert out.read_bytes().count(b"coffee.png") == 1 and b"chelsea" not in out.read_bytes()


# 5. two concurrent writers


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_second_concurrent_writer_of_one_output_is_refused(tiny, photos, tmp_path, home):
    imgs = album(tmp_path / "imgs", photos)
    out = tmp_path / "out.csv"
    first = subprocess.Popen([*imgclass_command(), "batch", "-", "-m", str(tiny), "-o", str(out), "--resume"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    try:
        header = tmp_path / ".out.csv.imgclass-job"
        deadline = time.monotonic() + 120
        while not (header.exists() and header.stat().st_size) and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.05)
        assert first.poll() is None  # still running: waiting for its list on stdin, holding the lock
        second = run_cli("batch", imgs, "-m", tiny, "-o", out, "--resume")
        refused(second, "out.csv", "another imgclass process")
        first.stdin.write(f"{imgs / 'coffee.png'}\n".encode())
        first.stdin.close()
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    again = run_cli("batch", imgs, "-m", tiny, "-o", out, "--resume")
    assert again.returncode == 0, again.stderr
    text = out.read_text()
    assert text.count("path,rank") == 1 and text.count("coffee.png") == 5 and text.count("chelsea.png") == 5


# 6. cache prune during a pull


def test_cache_prune_keeps_the_part_and_lock_of_a_pull_in_progress(home):
    models = home / "models"
    models.mkdir(parents=True)
    lock, part = models / "big.onnx.lock", models / ".big.onnx.4242.1.0.part"
    part.write_bytes(b"half a model")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT);"
                               " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        pruned = run_cli("cache", "prune")
        assert pruned.returncode == 0, pruned.stderr
        assert lock.exists() and part.read_bytes() == b"half a model"
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert run_cli("cache", "prune").returncode == 0
    assert not lock.exists() and not part.exists()  # nobody holds them now: leftovers


# 14. --resume across models and options; odd names never duplicated


def test_resume_refuses_another_model_or_other_options_naming_the_difference(tiny, other, photos, tmp_path, home):
    imgs = album(tmp_path / "imgs", photos)
    out = tmp_path / "out.jsonl"
    assert run_cli("batch", imgs, "-m", tiny, "-o", out, "-k", "2").returncode == 0
    before = out.read_bytes()
    refused(run_cli("batch", imgs, "-m", other, "-o", out, "-k", "2", "--resume"), "another job", "model")
    refused(run_cli("batch", imgs, "-m", tiny, "-o", out, "-k", "3", "--resume"), "top 2 there, 3 now")
    for fmt in ("npy", "jsonl"):
        vectors = tmp_path / f"v.{fmt}"
        assert run_cli("embed", imgs, "-m", tiny, "-o", vectors).returncode == 0
        kept = vectors.read_bytes()
        refused(run_cli("embed", imgs, "-m", other, "-o", vectors, "--resume"), "another job", "model")
        refused(run_cli("embed", imgs, "-m", tiny, "-o", vectors, "--resume", "--normalize"), "normalize")
        assert vectors.read_bytes() == kept
    (tmp_path / ".v.jsonl.imgclass-job").unlink()  # a file from before job headers: its records name the model
    refused(run_cli("embed", imgs, "-m", other, "-o", tmp_path / "v.jsonl", "--resume"), "holds vectors of the model")
    assert out.read_bytes() == before


@pytest.mark.parametrize("fmt", ["npy", "jsonl"])
def test_embed_resume_never_duplicates_names_with_tabs_newlines_or_other_bytes(tiny, photos, tmp_path, home, fmt):
    emb = tmp_path / "emb"
    emb.mkdir()
    names = [b"tab\there.png", b"new\nline.png", b"latin\xff.png", b"plain.png"]
    for name in names:
        shutil.copy(photos["coffee.png"], os.path.join(os.fsencode(emb), name))
    out = tmp_path / f"v.{fmt}"
    assert run_cli("embed", emb, "-m", tiny, "-o", out).returncode == 0
    for _ in range(2):
        again = run_cli("embed", emb, "-m", tiny, "-o", out, "--resume", "-v")
        assert again.returncode == 0 and "0 embedded" in again.stderr and "4 already in the output" in again.stderr
    if fmt == "npy":
        assert np.load(out).shape[0] == 4
        assert len((tmp_path / "v.paths.txt").read_text().splitlines()) == 4
    else:
        assert len(jsonl(out.read_text())) == 4


# 15. csv/tsv fields with CR or LF


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_fields_with_cr_or_lf_are_quoted_and_read_back_on_resume(tiny, photos, tmp_path, home, fmt):
    import csv

    folder = tmp_path / "cr"
    folder.mkdir()
    for name in ("car\riage.png", "line\nfeed.png", "plain.png"):
        shutil.copy(photos["coffee.png"], folder / name)
    out = tmp_path / f"out.{fmt}"
    assert run_cli("batch", folder, "-m", tiny, "-o", out, "-k", "1").returncode == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="," if fmt == "csv" else "\t"))
    assert sorted(Path(r[0]).name for r in rows[1:]) == ["car\riage.png", "line\nfeed.png", "plain.png"]
    assert all(len(r) == 7 for r in rows)
    again = run_cli("batch", folder, "-m", tiny, "-o", out, "-k", "1", "--resume", "-v")
    assert again.returncode == 0 and "3 already in the output" in again.stderr, again.stderr


# 17. a folder of class folders without -r


def test_no_images_without_r_is_exit_2_naming_the_folder_and_the_fix(tiny, photos, tmp_path, home):
    classes = tmp_path / "classes"
    album(classes / "cat", photos, ("chelsea.png",))
    album(classes / "cup", photos, ("coffee.png",))
    out = tmp_path / "out.jsonl"
    for args in (["batch", classes, "-o", out], ["embed", classes, "-o", tmp_path / "v.parquet"],
                 ["explain", classes, "-o", tmp_path / "maps"], ["bench", "--images", classes]):  # fmt: skip
        refused(run_cli(*args, "-m", tiny), "classes", "-r")
    assert not out.exists() and not (tmp_path / "v.parquet").exists() and not (tmp_path / "maps").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    line = refused(run_cli("batch", empty, "-r", "-m", tiny), "no images in", "empty")
    assert "-r" not in line.split("empty", 1)[1]
    assert run_cli("batch", classes, "-r", "-m", tiny, "-o", out).returncode == 0


# 19. the progress line and a pipe whose reader writes to the same terminal


def _stderr_on_a_terminal(args, stdout) -> str:
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen([*imgclass_command(), *map(str, args)], stdout=stdout, stderr=slave,
                                   stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        process.wait(timeout=120)
        return seen.decode("utf-8", "replace")
    finally:
        os.close(master)


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_no_progress_line_glues_onto_records_piped_to_the_same_terminal(tiny, photos, tmp_path, home):
    imgs = album(tmp_path / "imgs", photos, tuple(photos))
    piped = _stderr_on_a_terminal(["batch", imgs, "-m", tiny], subprocess.PIPE)
    assert "classifying" not in piped and "5 classified, 0 failed" in piped
    with open(tmp_path / "out.jsonl", "w") as sink:
        to_file = _stderr_on_a_terminal(["batch", imgs, "-m", tiny], sink)
    assert "classifying" in to_file and "\x1b[2K" in to_file  # records in a file: the line is drawn, and cleared


# --force on every writing command


@pytest.mark.parametrize("command", [["batch"], ["predict"], ["embed"], ["explain"], ["train"],
                                     ["models", "quantize"], ["models", "pull"]])  # fmt: skip
def test_every_writing_command_has_force(command):
    shown = run_cli(*command, "--help")
    assert shown.returncode == 0 and "--force" in shown.stdout


# all of the above in one folder


def test_every_output_attack_in_one_folder_destroys_nothing(tiny, other, photos, tmp_path, home):
    """Reproductions 1-6, 14, 15, 17 of issue 20 against one folder; every byte there is checked afterwards."""
    work = tmp_path / "work"
    imgs = album(work / "imgs", photos, tuple(photos))
    album(work / "classes" / "cup", photos, ("coffee.png",))
    (work / "notes.txt").write_text("notes\n")
    (work / "mine.jsonl").write_text('{"mine": true}\n')
    (work / "v.paths.txt").write_text("a list of mine\n")
    (work / "link.jsonl").symlink_to(work / "notes.txt")
    (work / "maps").mkdir()
    (work / "maps" / "coffee.cam.png").symlink_to(work / "notes.txt")
    snapshot = {p: digest(p) for p in work.rglob("*") if p.is_file() and not p.is_symlink()}
    attacks = [
        (["batch", imgs, "--report", imgs / "coffee.png"], "inputs"),
        (["batch", imgs, "--report", work / "notes.txt"], "not an imgclass"),
        (["batch", imgs, "-o", imgs / "china.jpg"], "inputs"),
        (["batch", imgs, "-o", work / "link.jsonl"], "symlink"),
        (["batch", imgs, "-o", work / "notes.txt"], "not an imgclass"),
        (["embed", imgs, "-o", imgs / "coffee.png", "--format", "npy"], "inputs"),
        (["embed", imgs, "-o", work / "mine.jsonl"], "not an imgclass"),
        (["embed", imgs, "-o", work / "v.npy"], "paths list"),
        (["explain", imgs / "coffee.png", "-o", work / "maps"], "symlink"),
        (["explain", imgs / "coffee.png", "-o", work / "x", "--report", imgs / "coffee.png"], "inputs"),
        (["batch", work / "classes", "-o", work / "empty.jsonl"], "-r"),
        (["embed", work / "classes", "-o", work / "empty.jsonl"], "-r"),
    ]
    for args, words in attacks:
        refused(run_cli(*args, "-m", tiny), words)
    out = work / "out.csv"
    assert run_cli("batch", imgs, "-m", tiny, "-o", out).returncode == 0
    written = out.read_bytes()
    refused(run_cli("batch", imgs, "-m", tiny, "-o", out), "--resume")  # 4
    refused(run_cli("batch", imgs, "-m", other, "-o", out, "--resume"), "another job")  # 14
    assert out.read_bytes() == written
    for path, value in snapshot.items():
        assert digest(path) == value, path
    assert (work / "maps" / "coffee.cam.png").is_symlink() and (work / "notes.txt").read_text() == "notes\n"
    leftovers = [p.name for p in work.rglob(".*") if p.name.endswith((".tmp", ".part"))]
    assert not leftovers
    assert json.loads((work / ".out.csv.imgclass-job").read_text())["kind"] == "records"
