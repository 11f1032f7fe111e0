"""One result per input: the record every output format is written from."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgclass.postprocess import Prediction


@dataclass(frozen=True)
class Record:
    path: str
    model: str
    preset: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "model": self.model,
            "preset": self.preset,
            "predictions": [p.to_dict() for p in self.predictions],
            "error": self.error,
        }
