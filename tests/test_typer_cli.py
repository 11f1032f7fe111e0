"""The Typer CLI: dependencies, options declared once, help in panels, completion, one exit path."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli, run_cli_process

from imgclass.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
PANELS = ("Model", "Preprocessing", "Runtime", "Input", "Output", "Robustness", "Display")
ESCAPE = "\x1b["


def _complete(line: str, shell: str = "bash", **env: str):
    """What the shell asks imgclass for when TAB is pressed after `line` (as Typer's bash script does)."""
    words = line.split(" ")
    variables = {"_IMGCLASS_COMPLETE": f"complete_{shell}", **env}
    if shell == "bash":
        variables |= {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    else:
        variables["_TYPER_COMPLETE_ARGS"] = line
    return run_cli(env=variables)


# -- Typer, not click ------------------------------------------------------------------------------------------------


def test_no_module_under_imgclass_imports_click():
    offenders = []
    for path in (ROOT / "imgclass").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "click" or n.startswith("click.")]
    assert offenders == []


def test_dependencies_name_typer_below_0_29_and_not_click():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower(): d for d in deps}
    assert "click" not in names
    assert re.search(r"<\s*0\.29", names["typer"]), names["typer"]  # 0.29+ pulls in pydantic


def test_closed_sets_are_the_library_sets():
    from imgclass.cli import params
    from imgclass.data.presets import INTERPOLATIONS
    from imgclass.data.tta import TTA_MODES
    from imgclass.graph.activation import ACTIVATIONS
    from imgclass.output.sinks import FORMATS

    def values(enum):
        return tuple(member.value for member in enum)

    assert values(params.RecordFormat) == FORMATS
    assert values(params.Interpolation) == INTERPOLATIONS
    assert values(params.TTA) == TTA_MODES
    assert values(params.Activation) == ("auto", *ACTIVATIONS)
    assert str(params.TTA.five_crop) == "five-crop" and f"{params.Color.never}" == "never"


def test_closed_sets_match_case_insensitively_and_reach_the_library_as_strings(make_model, photos, home):
    tiny = make_model("tiny", spatial=32)
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, "--format", "JSONL", "--tta", "FLIP",
                     "--interpolation", "BiLinear", "--device", "CPU")  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["path"].endswith("china.jpg") and record["error"] is None
    bad = run_cli("predict", photos["china.jpg"], "-m", tiny, "--format", "yaml")
    assert bad.returncode == ExitCode.USAGE and bad.stdout == ""
    assert "--format" in bad.stderr and "yaml" in bad.stderr


# -- help ------------------------------------------------------------------------------------------------------------


def test_predict_help_has_panels_and_ends_with_examples():
    result = run_cli("predict", "--help")
    assert result.returncode == 0 and result.stderr == ""
    shown = [name for name in PANELS if re.search(rf"╭─ {name} ─", result.stdout)]
    assert len(shown) >= 4, shown
    lines = [line.strip() for line in result.stdout.strip().splitlines()]
    examples = lines.index("Examples:")
    assert not any(line.startswith("╰") for line in lines[examples:]), "the examples come after every panel"
    assert sum(line.startswith("imgclass predict") for line in lines[examples + 1 :]) >= 2, lines[examples:]
    assert ESCAPE not in result.stdout  # help to a pipe: no escape codes
    assert run_cli("predict", "-h").stdout == result.stdout


COMMANDS = [["predict"], ["batch"], ["evaluate"], ["explain"], ["embed"], ["train"], ["bench"], ["info"],
            ["models"], ["models", "list"], ["models", "presets"], ["models", "info"], ["models", "pull"],
            ["models", "remove"], ["models", "path"], ["models", "verify"], ["models", "quantize"],
            ["cache"], ["cache", "list"], ["cache", "prune"]]  # fmt: skip


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_help_ends_with_an_example(words):
    result = run_cli(*words, "-h")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.strip().splitlines()]
    start = max(i for i, line in enumerate(lines) if line in ("Example:", "Examples:"))
    assert lines[start + 1].startswith(("imgclass ", "ls ", "find ")), lines[start:]


def test_help_colour_follows_color_and_no_color():
    assert ESCAPE in run_cli("predict", "--help", "--color", "always").stdout
    assert ESCAPE in run_cli("predict", "--color=always", "-h").stdout
    assert ESCAPE not in run_cli("predict", "--help", "--color", "never").stdout
    assert ESCAPE not in run_cli("predict", "--help", env={"NO_COLOR": "1"}).stdout


def test_root_help_offers_completion_and_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("--install-completion", "--show-completion", "predict", "batch", "models", "cache"):
        assert word in result.stdout


def test_a_group_without_a_command_is_a_usage_error_on_stderr():
    result = run_cli("models")
    assert result.returncode == ExitCode.USAGE and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "imgclass models --help" in result.stderr


# -- completion ------------------------------------------------------------------------------------------------------


def test_bash_completion_of_a_model_offers_catalog_names():
    result = _complete("imgclass predict --model incep")
    assert result.returncode == 0, result.stderr
    offered = result.stdout.splitlines()
    assert "inception-v3" in offered
    assert all(name.lower().startswith("incep") for name in offered)


def test_completion_offers_aliases_presets_formats_and_devices():
    from imgclass.store.catalog import entries

    alias = next(a for e in entries() for a in e.aliases)
    assert alias in _complete(f"imgclass batch -m {alias[:-1]}").stdout.splitlines()
    assert "torchvision" in _complete("imgclass predict --preset torch").stdout.splitlines()
    assert set(_complete("imgclass batch --format ").stdout.splitlines()) == {"table", "jsonl", "json", "csv", "tsv"}
    assert "cuda:0" in _complete("imgclass predict --device cu").stdout.splitlines()
    assert "inception-v3" in _complete("imgclass models info incep").stdout.splitlines()


def test_zsh_completion_offers_catalog_names():
    result = _complete("imgclass predict --model incep", shell="zsh")
    assert result.returncode == 0 and '"inception-v3"' in result.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_a_script_for_each_shell(shell, monkeypatch):
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: shell)  # the shell Typer would detect
    result = run_cli("--show-completion")
    assert result.returncode == 0, result.stderr
    assert "_IMGCLASS_COMPLETE" in result.stdout and f"complete_{shell}" in result.stdout


# -- the same data from the checkout and from a wheel ----------------------------------------------------------------


def _models_list(pythonpath: Path, cwd: Path, fmt: str) -> tuple[str, str]:
    code = "import runpy, sys, imgclass; sys.stderr.write(imgclass.__file__); sys.argv = ['imgclass', 'models', " \
           f"'list', '-f', {fmt!r}]; runpy.run_module('imgclass', run_name='__main__')"  # fmt: skip
    env = {**__import__("os").environ, "PYTHONPATH": str(pythonpath), "NO_COLOR": "1", "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


@pytest.mark.slow
def test_models_list_is_the_same_from_the_checkout_and_from_a_wheel(tmp_path, home):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("imgclass-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert "imgclass/models/catalog.json" in names and "imgclass/models/presets.json" in names
    assert not any(n.startswith("models/") for n in names)  # the data ships inside the package only
    for fmt in ("json", "table"):
        from_checkout, where = _models_list(ROOT, tmp_path, fmt)
        assert where == str(ROOT / "imgclass" / "__init__.py")
        from_wheel, where = _models_list(tmp_path / "site", tmp_path, fmt)
        assert where == str(tmp_path / "site" / "imgclass" / "__init__.py")
        assert from_wheel == from_checkout
    names = {row["name"] for row in json.loads(_models_list(tmp_path / "site", tmp_path, "json")[0])}
    assert "inception_v3_Opset17" in names and "resnet50-v1-12" in names


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_the_installed_entry_point_answers_version_and_completion(home):
    version = run_cli_process("--version")
    assert version.returncode == 0 and version.stdout.startswith("imgclass ")
    completion = run_cli_process(
        env={"_IMGCLASS_COMPLETE": "complete_bash", "COMP_WORDS": "imgclass predict --model incep", "COMP_CWORD": "3"}
    )
    assert completion.returncode == 0 and "inception-v3" in completion.stdout.splitlines()
