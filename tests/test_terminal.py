"""What people see on a terminal, tested in-process with an injected Environment (no pty needed)."""

import io
import re

import pytest

from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.cli.render import ProgressLine


class Screen(io.StringIO):
    """stdout and stderr of one terminal: everything lands in one buffer, in order."""


def terminal(width=None, **fields):
    screen = Screen()
    env = Environment(stdout=screen, stderr=screen, stdout_isatty=True, stderr_isatty=True, no_color=True, **fields)
    return env, screen


def run_on(env, *args):
    return run([str(a) for a in args], env)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rows are cut to the terminal's width; a wide one shows the whole of the temporary paths."""
    monkeypatch.setenv("COLUMNS", "300")


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


@pytest.fixture
def folder(photos, tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i, name in enumerate(("china.jpg", "coffee.png", "chelsea.png")):
        (root / f"{i}-{name}").write_bytes(photos[name].read_bytes())
    (root / "3-broken.png").write_text("nope")
    return root


def test_batch_on_a_terminal_is_one_row_per_image_and_the_bar_never_glues(tiny, folder, home):
    env, screen = terminal()
    assert run_on(env, "batch", folder, "-m", tiny, "-k", "3") == 1
    # Redraws of the progress line are cleared with \r ESC[2K before anything else is written.
    text = screen.getvalue()
    final = [re.sub(r".*\r\x1b\[2K", "", line) for line in text.split("\n")]
    rows = [line for line in final if line.startswith(str(folder))]
    assert len(rows) == 4
    assert all("·" in row for row in rows[:3])  # top-1 then the next labels, compactly
    assert "error: not an image" in rows[3]
    assert "3 classified, 1 failed" in text
    for line in text.split("\n"):
        visible = line.rsplit("\r\x1b[2K", 1)[-1]
        assert not (visible.startswith(str(folder)) and "classifying" in visible)  # no row glued to the bar


def test_predict_on_a_terminal_is_a_table_per_image(tiny, folder, home):
    env, screen = terminal()
    assert run_on(env, "predict", folder / "0-china.jpg", "-m", tiny, "-k", "2") == 0
    text = screen.getvalue()
    assert "probability" in text and "0-china.jpg" in text and "\x1b[" not in text


def test_quiet_shows_no_progress_and_no_summary(tiny, folder, home):
    env, screen = terminal(quiet=True)
    run_on(env, "batch", folder, "-m", tiny, "-f", "jsonl", "-q")
    text = screen.getvalue()
    assert "classifying" not in text and "classified" not in text and "imgclass:" not in text
    assert len([line for line in text.splitlines() if line.startswith("{")]) == 4


@pytest.mark.parametrize("flag, coloured", [("always", True), ("never", False), ("auto", True)])
def test_color_flag(tiny, folder, home, flag, coloured):
    env, screen = terminal()
    env.no_color = False
    run_on(env, "predict", folder / "0-china.jpg", "-m", tiny, "--color", flag)
    assert ("\x1b[" in screen.getvalue()) == coloured


def test_no_color_env_wins_over_auto(tiny, folder, home):
    env, screen = terminal()  # no_color=True: NO_COLOR is set
    run_on(env, "predict", folder / "0-china.jpg", "-m", tiny, "--color", "auto")
    assert "\x1b[" not in screen.getvalue()


@pytest.mark.parametrize("columns", [60, 200])
def test_models_list_never_cuts_a_name(home, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    env, screen = terminal()
    assert run_on(env, "models", "list") == 0
    from imgclass.store import catalog

    text = screen.getvalue()
    for entry in catalog.entries():
        assert re.search(rf"│ {re.escape(entry.name)} +│", text), entry.name
    assert max(len(line) for line in text.splitlines()) <= columns


def test_markup_and_escape_sequences_in_names_are_shown_inert(tiny, photos, tmp_path, home):
    (tmp_path / "[bold red]x[").mkdir()  # the path reads "[bold red]x[/red] ..." and "mk/[/red]..."
    hostile = tmp_path / "[bold red]x[" / "red] \x1b]0;pwned\x07.jpg"
    hostile.write_bytes(photos["china.jpg"].read_bytes())
    (tmp_path / "mk" / "[").mkdir(parents=True)
    broken = tmp_path / "mk" / "[" / "red]\x1b[31m.png"
    broken.write_text("nope")
    for fmt in ("table", "jsonl"):
        env, screen = terminal()
        assert run_on(env, "batch", hostile, broken, "-m", tiny, "-f", fmt) == 1
        text = screen.getvalue()
        assert "[bold red]x[/red] " in text and "mk/[/red]" in text  # markup shown, not interpreted
        escaped = "\\x1b]0;pwned\\x07" if fmt == "table" else "\\u001b]0;pwned\\u0007"  # JSON escapes its own way
        shown = "\\x1b[31m.png  error: not an image" if fmt == "table" else "\\x1b[31m.png: not an image"
        assert escaped in text and shown in text  # the broken one: its row, or its stderr line
        assert "\x07" not in text and "\x1b]0" not in text and "\x1b[31m" not in text


def test_progress_line_counts_and_clears():
    env, screen = terminal()
    bar = ProgressLine(env)
    bar.start(4)
    bar.advance()
    bar.clear()
    assert screen.getvalue().endswith("\r\x1b[2K")
    assert "classifying 1/4" in screen.getvalue()
