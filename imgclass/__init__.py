"""imgclass: classify images with ONNX exports of Inception v3, ResNet and other ImageNet CNNs.

    import imgclass
    clf = imgclass.load("resnet50")
    clf.predict("cat.jpg").predictions[0].label

The names below are imported on first use, so `import imgclass` (and `imgclass --help`)
loads neither numpy nor ONNX Runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgclass._util.version import __version__ as __version__
from imgclass.errors import (
    CacheError,
    ConfigError,
    EnvironmentFault,
    ExitCode,
    ImgclassError,
    InputError,
    MissingExtra,
    ModelError,
    OutputError,
    UsageError,
)
from imgclass.records import Prediction, Record

__all__ = [
    "CacheError",
    "Classifier",
    "ConfigError",
    "EnvironmentFault",
    "ExitCode",
    "ImgclassError",
    "InputError",
    "LoadOptions",
    "MissingExtra",
    "ModelError",
    "OutputError",
    "Overrides",
    "Prediction",
    "Record",
    "UsageError",
    "load",
    "load_ensemble",
]

if TYPE_CHECKING:
    from imgclass.classifier import Classifier, LoadOptions, load, load_ensemble
    from imgclass.data.presets import Overrides

_LAZY = {"load": "imgclass.classifier", "Classifier": "imgclass.classifier", "LoadOptions": "imgclass.classifier",
         "Overrides": "imgclass.data.presets", "load_ensemble": "imgclass.classifier"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgclass' has no attribute {name!r}")
