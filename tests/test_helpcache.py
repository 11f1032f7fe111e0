"""Help pages rendered once and printed again as they were, without Typer or rich (imgclass.cli.helpcache)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from conftest import imgclass_command

from imgclass.cli import helpcache


def _help(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-X", "importtime", "-m", "imgclass", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def test_a_second_help_is_the_same_page_without_typer_or_rich(tmp_path):
    env = {"IMGCLASS_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "100"}
    first = _help(env, "predict", "--help")
    second = _help(env, "predict", "--help")
    assert first.returncode == second.returncode == 0
    assert second.stdout == first.stdout and "Preprocessing" in second.stdout and "Examples" in second.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in second.stderr.splitlines() if "|" in line]
    assert "typer" in " ".join(line.rsplit("|", 1)[-1] for line in first.stderr.splitlines())
    assert not [name for name in imported if name.split(".")[0] in ("typer", "rich", "numpy", "onnxruntime")]
    assert len(list((tmp_path / "home" / "help").iterdir())) == 1


def test_only_pure_help_lines_are_kept():
    assert helpcache.is_pure_help(["predict", "--help"])
    assert helpcache.is_pure_help(["models", "pull", "-h", "--color", "never"])
    assert not helpcache.is_pure_help(["predict", "cat.jpg", "--help"])  # arguments: not a page to keep
    assert not helpcache.is_pure_help(["predict", "--help", "--color", "purple"])
    assert not helpcache.is_pure_help(["predict"])
    assert not helpcache.is_pure_help(["predict", "--top", "3", "--help"])
    assert not helpcache.is_pure_help(["bench", "-m", "-h"])  # -h is the value of -m there


def test_the_page_depends_on_the_terminal_and_on_imgclass_own_files(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLASS_HOME", str(tmp_path))
    out = io.StringIO()
    page = helpcache._page(["predict", "--help"], out)
    assert page is not None and page.parent == tmp_path / "help"
    monkeypatch.setenv("COLUMNS", "61")
    narrower = helpcache._page(["predict", "--help"], out)
    assert narrower != page
    stamp = helpcache._fingerprint()
    monkeypatch.setattr(helpcache, "_fingerprint", lambda: [*stamp, "a CLI file changed"])
    assert helpcache._page(["predict", "--help"], out) not in (page, narrower)
    assert helpcache._page(["batch", "--help"], out) != narrower


def test_a_cache_that_cannot_be_written_still_prints_help(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = subprocess.run([*imgclass_command(), "predict", "--help"], capture_output=True, text=True,
                            env={**os.environ, "IMGCLASS_HOME": str(blocked), "NO_COLOR": "1"}, timeout=120)  # fmt: skip
    assert result.returncode == 0 and "Examples" in result.stdout and result.stderr == ""
    assert blocked.read_text() == "not a folder"


def test_a_failed_help_line_is_not_kept(tmp_path):
    env = {"IMGCLASS_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    result = _help(env, "nosuchcommand", "--help")
    assert result.returncode == 2
    assert not (tmp_path / "home" / "help").exists() or not list((tmp_path / "home" / "help").iterdir())


def test_cache_list_shows_help_pages_and_prune_removes_them(tmp_path, monkeypatch):
    from imgclass.store import cache

    monkeypatch.setenv("IMGCLASS_HOME", str(tmp_path))
    monkeypatch.setattr(helpcache, "_rendered", True)  # as after Typer rendered the page
    helpcache.keep(["predict", "--help"], io.StringIO(), "Usage: imgclass predict\n")
    (page,) = (tmp_path / "help").iterdir()
    assert [item["path"] for item in cache.inventory()["help"]] == [str(page)]
    assert [item["path"] for item in cache.prune()] == [str(page)] and not page.exists()


def test_output_of_a_line_where_help_is_a_value_is_not_kept(make_model, tmp_path):
    """`bench -m -h` with a model file named -h runs the benchmark: its output is no help page to replay."""
    import shutil

    shutil.copy(make_model("tiny"), tmp_path / "-h")
    env = {**os.environ, "IMGCLASS_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    command = [*imgclass_command(), "bench", "-m", "-h"]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert not (tmp_path / "home" / "help").exists() or not list((tmp_path / "home" / "help").iterdir())


def test_a_symlinked_help_folder_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLASS_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "home" / "help").symlink_to(elsewhere)
    page = helpcache._page(["predict", "--help"], io.StringIO())
    assert page is not None
    (elsewhere / page.name).write_text("PLANTED\n")
    out = io.StringIO()
    assert helpcache.serve(["predict", "--help"], out) is False and out.getvalue() == ""
