"""Every code of the exit-code table, produced through the installed entry point."""

import os
import stat

import pytest
from conftest import run_cli_process as run_cli

from imgclass.errors import ExitCode

README = os.path.join(os.path.dirname(__file__), "..", "docs", "guide", "batch.md")  # the table moved there


@pytest.fixture
def tiny(make_model):
    return make_model("tiny", spatial=32)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_table_in_readme_is_the_enum():
    text = open(README, encoding="utf-8").read()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == [str(int(code)) for code in ExitCode]  # rows[0] is the header


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_0_1_2_3(tiny, photos, home, tmp_path):
    assert run_cli("predict", photos["china.jpg"], "-m", tiny).returncode == ExitCode.OK
    broken = tmp_path / "broken.jpg"
    broken.write_text("no")
    assert run_cli("predict", photos["china.jpg"], broken, "-m", tiny).returncode == ExitCode.INPUT_FAILED
    usage = run_cli("predict", photos["china.jpg"], "-m", tiny, "--top", "nine")
    assert usage.returncode == ExitCode.USAGE and "--top" in _one_line(usage.stderr)
    model = run_cli("predict", photos["china.jpg"], "-m", tmp_path / "absent.onnx")
    assert model.returncode == ExitCode.MODEL and "absent.onnx" in _one_line(model.stderr)


def _read_only_home(tmp_path):
    """A cache folder this process cannot write: chmod for ordinary users, sysfs for root."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro-home"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return folder
    if not os.path.isdir("/sys/fs"):
        pytest.skip("running as root without sysfs: no folder here is read-only for root")
    return "/sys/fs/imgclass-read-only-cache"


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_4_read_only_cache_for_a_pull_but_a_model_by_path_still_works(tiny, photos, home, tmp_path):
    ro = _read_only_home(tmp_path)
    pulled = run_cli("models", "pull", "--file", tiny, "--name", "mine", env={"IMGCLASS_HOME": str(ro)})
    assert pulled.returncode == ExitCode.ENVIRONMENT
    assert "IMGCLASS_HOME" in _one_line(pulled.stderr)
    by_path = run_cli("predict", photos["china.jpg"], "-m", tiny, env={"IMGCLASS_HOME": str(ro)})
    assert by_path.returncode == ExitCode.OK and by_path.stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_4_full_disk_output(tiny, photos, home):
    to_file = run_cli("predict", photos["china.jpg"], "-m", tiny, "--output", "/dev/full", "-f", "jsonl")
    assert to_file.returncode == ExitCode.ENVIRONMENT
    assert "no space left" in _one_line(to_file.stderr)
    with open("/dev/full", "w") as full:
        import subprocess

        from conftest import imgclass_command

        piped = subprocess.run(
            [*imgclass_command(), "predict", str(photos["china.jpg"]), "-m", str(tiny)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert piped.returncode == ExitCode.ENVIRONMENT
    assert "no space left" in _one_line(piped.stderr)


def _inject(tmp_path, code: str) -> dict:
    """An environment whose Python runs `code` at start-up (sitecustomize): a fault inside the real command."""
    folder = tmp_path / "inject"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": str(folder)}


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_70_internal_error_is_one_line(tiny, photos, home, tmp_path):
    env = _inject(
        tmp_path,
        (
            "import imgclass.data.sources\n"
            "def boom(*args, **kwargs):\n"
            "    raise ZeroDivisionError('injected fault')\n"
            "imgclass.data.sources.check_inputs = boom\n"
        ),
    )
    result = run_cli("predict", photos["china.jpg"], "-m", tiny, env=env)
    assert result.returncode == ExitCode.INTERNAL
    line = _one_line(result.stderr)
    assert "ZeroDivisionError: injected fault" in line and "--debug" in line
    debug = run_cli("predict", photos["china.jpg"], "-m", tiny, "--debug", env=env)
    assert debug.returncode == ExitCode.INTERNAL and "Traceback" in debug.stderr


def test_unknown_registry_key_is_exit_4_not_a_traceback(home):
    (home / "models").mkdir(parents=True)
    (home / "models" / "registry.json").write_text('{"mine": {"file": "mine.onnx", "sha": "x"}}')
    result = run_cli("models", "list")
    assert result.returncode == ExitCode.ENVIRONMENT
    assert "registry" in _one_line(result.stderr)


def test_bare_command_prints_help_and_exits_0():
    result = run_cli()
    assert result.returncode == 0 and "Usage: imgclass" in result.stdout
    assert run_cli("-h").stdout.strip().startswith("Usage: imgclass [OPTIONS] COMMAND")


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_json_array_is_whole_when_the_run_dies_midway(tiny, photos, home, tmp_path):
    import json

    env = _inject(
        tmp_path,
        (
            "import imgclass.inference.pipeline as p\n"
            "original = p.Pipeline._classify\n"
            "def third_fails(self, chunk):\n"
            "    self.calls = getattr(self, 'calls', 0) + 1\n"
            "    if self.calls == 3:\n"
            "        raise RuntimeError('injected after two batches')\n"
            "    yield from original(self, chunk)\n"
            "p.Pipeline._classify = third_fails\n"
        ),
    )
    files = [photos[n] for n in ("china.jpg", "coffee.png", "chelsea.png", "flower.jpg")]
    result = run_cli("batch", *files, "-m", tiny, "-f", "json", "--batch-size", "1", "--workers", "1", env=env)
    assert result.returncode == ExitCode.INTERNAL
    records = json.loads(result.stdout)  # a complete array, however the run ended
    assert [r["path"] for r in records] == [str(f) for f in files[:2]]
