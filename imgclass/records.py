"""One result per input, and its ranked predictions: what every output format is written from.

Plain data with no heavy imports, so front ends and tests can build and compare records freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    rank: int
    index: int
    label: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "index": self.index, "label": self.label, "probability": self.probability}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(int(data["rank"]), int(data["index"]), str(data["label"]), float(data["probability"]))


@dataclass(frozen=True)
class Record:
    path: str
    model: str
    preset: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    multi_label: bool = False  # independent per-class probabilities (sigmoid head): they need not sum to one
    tta: str | None = None  # test-time augmentation the probabilities are averaged over (flip, five-crop, ten-crop)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record; "tta" is there only when the run used test-time augmentation."""
        data = {
            "path": self.path,
            "model": self.model,
            "preset": self.preset,
            "multi_label": self.multi_label,
            "predictions": [p.to_dict() for p in self.predictions],
            "error": self.error,
        }
        if self.tta is not None:
            data["tta"] = self.tta
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        predictions = [Prediction.from_dict(p) for p in data.get("predictions") or []]
        multi_label = data.get("multi_label", False)  # absent in records written before it existed
        if not isinstance(multi_label, bool):
            raise ValueError(f"multi_label must be true or false, not {multi_label!r}")
        tta = data.get("tta")
        if tta is not None and not isinstance(tta, str):
            raise ValueError(f"tta must be a string, not {tta!r}")
        return cls(str(data["path"]), str(data["model"]), str(data["preset"]), predictions, data.get("error"),
                   multi_label, tta)  # fmt: skip
