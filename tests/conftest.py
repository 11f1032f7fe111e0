"""Shared fixtures: real photos, generated ONNX models, and ways to run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import onnx
from support import onnx_builders as builders

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
REAL_MODEL = HERE.resolve().parents[1] / "shared" / "models" / "mobilenetv2-12-int8.onnx"
real_model = pytest.mark.skipif(
    not REAL_MODEL.is_file(), reason=f"the real model is not at {REAL_MODEL} (a clone outside this workplace)"
)

# No test may touch the real user cache: every process this session starts inherits a
# throw-away IMGCLASS_HOME (tests that need their own use the `home` fixture).
_SESSION_HOME = tempfile.mkdtemp(prefix="imgclass-test-home-")
os.environ["IMGCLASS_HOME"] = _SESSION_HOME
os.environ["XDG_CACHE_HOME"] = os.path.join(_SESSION_HOME, "xdg")


def photo_paths() -> dict[str, Path]:
    import skimage
    import sklearn.datasets

    sk = Path(skimage.__file__).parent / "data"
    images = Path(sklearn.datasets.__file__).parent / "images"
    return {
        "china.jpg": images / "china.jpg",
        "flower.jpg": images / "flower.jpg",
        "chelsea.png": sk / "chelsea.png",
        "coffee.png": sk / "coffee.png",
        "astronaut.png": sk / "astronaut.png",
    }


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    paths = photo_paths()
    for path in paths.values():
        assert path.is_file(), path
    return paths


class ModelFactory:
    """Builds each (kind, signature, seed) once per test session."""

    def __init__(self, root: Path):
        self.root = root
        self._made: dict = {}

    def __call__(self, kind: str = "tiny", seed: int = 0, evidence: bool = True, **sig) -> Path:
        """`evidence`: a model no detection rule recognises gets `imgclass.preset` metadata (the default
        preset, named), as a real export with a sidecar would; False leaves it with no preprocessing
        evidence, for the tests of what imgclass says about such a model."""
        key = (kind, seed, evidence, tuple(sorted(sig.items())))
        if key not in self._made:
            signature = builders.Signature(**sig)
            model = getattr(builders, kind)(signature, seed=seed)
            if evidence and not signature.metadata and _undetected(model):
                onnx.helper.set_model_props(model, {"imgclass.preset": "torchvision"})
            name = f"{kind}-{seed}-{abs(hash(key)) % 10**8}.onnx"
            self._made[key] = builders.save(model, self.root / name)
        return self._made[key]


def _undetected(model) -> bool:
    """Whether no detection rule recognises `model`: it would run on the default preset."""
    from imgclass.data.presets import detect_preset
    from imgclass.graph.signature import inspect

    return detect_preset(inspect(model, Path("model.onnx"))).source == "default"


@pytest.fixture(scope="session")
def make_model(tmp_path_factory) -> ModelFactory:
    return ModelFactory(tmp_path_factory.mktemp("models"))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty IMGCLASS_HOME for this test (cache, registry, optimised models)."""
    root = tmp_path / "imgclass-home"
    monkeypatch.setenv("IMGCLASS_HOME", str(root))
    for var in ("IMGCLASS_MIRROR", "IMGCLASS_OFFLINE", "IMGCLASS_MODEL", "IMGCLASS_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    return root


def imgclass_command() -> list[str]:
    """The installed console script when there is one next to this Python, else `python -m imgclass`."""
    script = Path(sys.executable).parent / "imgclass"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgclass"]


def run_cli_process(*args, env: dict | None = None, input: str | None = None, cwd=None, timeout: float = 300):
    """Run the real entry point in a subprocess; returns CompletedProcess with text stdout/stderr.

    For what only a process shows: signals, pipes, closed descriptors, the installed script,
    a fault injected by a sitecustomize (PYTHONPATH), what a fresh interpreter imports.
    """
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [*imgclass_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        cwd=cwd,
        timeout=timeout,
    )


# What an in-process run cannot stand for: these environment variables act when a Python starts.
_PROCESS_ONLY = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")


def run_cli(*args, env: dict | None = None, input: str | None = None, cwd=None, timeout: float = 300):
    """Run a command line in this process (as `imgclass.cli.run` does for the entry point).

    Same result as `run_cli_process` (exit code, stdout, stderr as text), about 20 times faster.
    An `env` that changes how Python starts (PYTHONPATH: a sitecustomize) runs in a subprocess.
    """
    if env and any(name in env for name in _PROCESS_ONLY):
        return run_cli_process(*args, env=env, input=input, cwd=cwd, timeout=timeout)
    from support.inprocess import run_in_process

    return run_in_process([str(a) for a in args], env={"NO_COLOR": "1", **(env or {})}, input=input, cwd=cwd)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
