"""The documentation cannot drift: every example in README.md and docs/ runs, and the generated parts are whole.

Every fenced `sh`/`bash` and `python` block is run in a sandbox folder holding the files the examples
name (cat.jpg, photos/, val/, flowers/, model.onnx, ...), with IMGCLASS_MODEL set to a small model the
tests build and IMGCLASS_OFFLINE=1, so nothing is downloaded. An HTML comment on the line above a block
changes how it is run (it shows in the page source only):

- `<!-- docs-test: skip: REASON -->`: not run (it downloads a real model, needs a cluster, installs...);
- `<!-- docs-test: exit N -->`: the block must end with exit code N (an example of a failure);
- `<!-- docs-test: slow -->`: run only in the full suite (`pytest -m slow` or plain `pytest`).

Shell blocks run with `bash -e -o pipefail`; Python blocks with this interpreter. Each block gets its own
copy of the sandbox, so examples that write files do not meet each other.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import onnx_builders as builders

ROOT = Path(__file__).resolve().parents[1]
RUN_LANGS = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python"}
DIRECTIVE = re.compile(r"^\s*<!-- docs-test: (skip: .+|exit \d+|slow) -->\s*$")
TOOLS = ("jq",)  # programs besides imgclass that examples pipe through: a block needing a missing one skips
FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)")


@dataclass
class Example:
    where: str  # file:line
    lang: str
    code: str
    directive: str | None

    @property
    def id(self) -> str:
        return self.where


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def examples_in(text: str, name: str) -> list[Example]:
    """The fenced blocks of one Markdown file, with the directive on the line above each."""
    found: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        above = DIRECTIVE.match(lines[start - 1]) if start > 0 else None
        if lang.lower() in RUN_LANGS:
            code = textwrap.dedent("\n".join(body)) + "\n"
            found.append(Example(f"{name}:{start + 1}", RUN_LANGS[lang.lower()], code, above and above.group(1)))
    return found


def all_examples(root: Path = ROOT) -> list[Example]:
    out: list[Example] = []
    for path in doc_files(root):
        out += examples_in(path.read_text(), str(path.relative_to(root)))
    return out


def _params() -> list:
    params = []
    for example in all_examples():
        marks = []
        if example.directive and example.directive.startswith("skip:"):
            marks.append(pytest.mark.skip(reason=example.directive[5:].strip()))
        if example.directive == "slow":
            marks.append(pytest.mark.slow)
        params.append(pytest.param(example, id=example.id, marks=marks))
    return params


# ----- the sandbox the examples run in ---------------------------------------------------------------


def _save_image(source: Path, target: Path, box: tuple[int, int, int, int] | None = None) -> None:
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image = image.convert("RGB")
        if box is not None:
            w, h = image.size
            image = image.crop((int(box[0] * w / 100), int(box[1] * h / 100), int(box[2] * w / 100),
                                int(box[3] * h / 100)))  # fmt: skip
        image.save(target)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("docs-sandbox")
    for name in ("model.onnx", "my_export.onnx", "export.onnx"):
        builders.save(builders.tiny(builders.Signature(spatial=32)), root / name)
    for name, source in (("cat.jpg", "chelsea.png"), ("dog.png", "astronaut.png"), ("coffee.jpg", "coffee.png"),
                         ("photo.jpg", "china.jpg"), ("rose.jpg", "flower.jpg")):  # fmt: skip
        _save_image(photos[source], root / name)
    for i, source in enumerate(photos.values()):
        _save_image(source, root / "photos" / f"img{i}.jpg")
    _save_image(photos["flower.jpg"], root / "photos" / "garden" / "flower.jpg")
    crops = [(0, 0, 80, 80), (20, 20, 100, 100), (0, 20, 80, 100), (20, 0, 100, 80), (10, 10, 90, 90),
             (0, 0, 100, 100), (5, 5, 70, 95)]  # fmt: skip
    for label, source in (("rose", "flower.jpg"), ("tulip", "coffee.png")):
        for j, box in enumerate(crops):
            _save_image(photos[source], root / "flowers" / label / f"{j}.jpg", box)
    for index, source in (("281", "chelsea.png"), ("967", "coffee.png")):
        for j, box in enumerate(crops[:3]):
            _save_image(photos[source], root / "val" / index / f"{j}.jpg", box)
    return root


def _environment(sandbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLASS_")}
    env.update(
        IMGCLASS_MODEL=str(sandbox / "model.onnx"),
        IMGCLASS_OFFLINE="1",
        IMGCLASS_HOME=str(sandbox.parent / f"{sandbox.name}-home"),
        NO_COLOR="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_example(example: Example, sandbox: Path, workdir: Path) -> subprocess.CompletedProcess:
    shutil.copytree(sandbox, workdir)
    if example.lang == "sh":
        command = ["bash", "-e", "-o", "pipefail", "-c", example.code]
    else:
        command = [sys.executable, "-c", example.code]
    return subprocess.run(command, cwd=workdir, env=_environment(workdir), capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize("example", _params())
@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_example_runs(example: Example, sandbox: Path, tmp_path: Path) -> None:
    for tool in TOOLS:
        if re.search(rf"\b{tool}\b", example.code) and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed here")
    done = run_example(example, sandbox, tmp_path / "work")
    expected = int(example.directive.split()[1]) if example.directive and example.directive.startswith("exit") else 0
    assert done.returncode == expected, (
        f"{example.where} exited {done.returncode}, not {expected}\n--- code\n{example.code}"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_a_broken_example_fails(sandbox: Path, tmp_path: Path) -> None:
    """The runner is not blind: an example with a wrong option, or a wrong name in Python, fails."""
    broken_sh = Example("broken.md:1", "sh", "imgclass predict cat.jpg --no-such-option\n", None)
    assert run_example(broken_sh, sandbox, tmp_path / "sh").returncode == 2
    broken_py = Example("broken.md:2", "python", "import imgclass\nimgclass.lode('model.onnx')\n", None)
    assert run_example(broken_py, sandbox, tmp_path / "py").returncode != 0
    missing = Example("broken.md:3", "sh", "imgclass predict cat.jpg | grep -q nothing-like-this\n", None)
    assert run_example(missing, sandbox, tmp_path / "pipe").returncode == 1  # pipefail: a failing stage fails


def test_examples_are_found() -> None:
    """The parser sees the blocks: the README's set-up block first, and directives where they are."""
    readme = examples_in((ROOT / "README.md").read_text(), "README.md")
    assert readme[0].lang == "sh" and readme[0].directive and readme[0].directive.startswith("skip:")
    assert "pytest" in readme[0].code.splitlines()[1]
    run = [e for e in all_examples() if not (e.directive or "").startswith("skip:")]
    assert len(run) >= 15 and sum(e.directive == "slow" for e in run) >= 3  # most examples run


# ----- the README is a quick start; the generated parts are whole --------------------------------------


def test_readme_is_a_quick_start() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    first = examples_in(text, "README.md")[0].code.splitlines()
    assert first[0].startswith("pip install . && imgclass predict")
    ci = (ROOT / ".ci" / "run").read_text()
    assert first[1].split("&&")[1].split("#")[0].strip() == "pytest" and "\npytest\n" in ci  # CI's test command


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_documents_every_command() -> None:
    cli = _hook("cli_reference")
    pages = cli.pages()
    root = cli.root_command()
    ctx = root.context_class(root, info_name="imgclass")
    names = [name for name, _ in cli.subcommands(root, ctx)]
    expected = {
        "predict",
        "batch",
        "evaluate",
        "embed",
        "train",
        "explain",
        "models",
        "cache",
        "bench",
        "info",
        "serve",
    }
    assert expected <= set(names)
    for name, command in cli.subcommands(root, ctx):
        page = pages[f"reference/cli/{name}.md"]
        sub_ctx = root.context_class(command, info_name=name, parent=ctx)
        for sub_name, _ in cli.subcommands(command, sub_ctx):
            assert f"`imgclass {name} {sub_name}`" in page
        for param in command.params:
            for opt in param.opts if param.param_type_name == "option" and not param.hidden else []:
                assert f"`{opt}`" in page, (name, opt)
    assert "`--tta`" in pages["reference/cli/batch.md"] and "`IMGCLASS_DEVICE`" in pages["reference/cli/predict.md"]


def test_api_reference_names_the_public_face() -> None:
    api = (ROOT / "docs" / "reference" / "api.md").read_text()
    for name in ("load", "load_ensemble", "Classifier", "records", "errors"):
        assert f"\n::: imgclass.{name}\n" in api, name


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_generated_parts_cover_the_data() -> None:
    import json

    gen = _hook("generated")
    presets = json.loads((ROOT / "models" / "presets.json").read_text())["presets"]
    table = gen.presets()
    assert all(f"`{name}`" in table for name in presets)
    bench = gen.benchmarks()
    results = [p.name for p in (ROOT / "benchmarks" / "results").glob("*.json") if p.name != "runs.json"]
    assert all(f"benchmarks/results/{name}" in bench for name in results)
    assert bench.count("**machine:**") == bench.count("**command:**") == bench.count("**date:**") == len(results)
    errors = gen.errors()
    assert "not an image Pillow can read" in errors and "### ModelError (exit 3)" in errors
    assert "is not finite" in gen.cli_messages() and "stopped by signal" in gen.cli_messages()
    from imgclass.errors import ExitCode

    codes = gen.exit_codes()
    batch = (ROOT / "docs" / "guide" / "batch.md").read_text()
    for code in ExitCode:  # the hand-written table in the batch guide names every code too
        assert f"| {code.value} | `{code.name}` |" in codes and f"\n| {code.value} |" in batch
