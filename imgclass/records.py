"""One result per input, and its ranked predictions: what every output format is written from.

Plain data with no heavy imports, so front ends and tests can build and compare records freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Member:
    """One class of a group prediction, with its own probability."""

    index: int
    label: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "probability": self.probability}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Member:
        return cls(int(data["index"]), str(data["label"]), float(data["probability"]))


@dataclass(frozen=True)
class Prediction:
    """A ranked class; or, with groups, a ranked group (`index` None) and its top classes (`members`)."""

    rank: int
    index: int | None
    label: str
    probability: float
    members: tuple[Member, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rank": self.rank, "index": self.index, "label": self.label}
        data["probability"] = self.probability
        if self.members is not None:
            data["members"] = [m.to_dict() for m in self.members]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        index = data["index"]
        raw = data.get("members")
        members = tuple(Member.from_dict(m) for m in raw) if raw is not None else None
        return cls(int(data["rank"]), None if index is None else int(index), str(data["label"]),
                   float(data["probability"]), members)  # fmt: skip


@dataclass(frozen=True)
class Record:
    path: str
    model: str
    preset: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    multi_label: bool = False  # independent per-class probabilities (sigmoid head): they need not sum to one
    # base64 of the file name's bytes, only when they are not UTF-8: `path` then shows
    # them escaped (\udcff) and cannot be turned back into the name; these bytes can.
    path_bytes: str | None = None
    tta: str | None = None  # test-time augmentation the probabilities are averaged over (flip, five-crop, ten-crop)
    # its top probability (after grouping) is below the run's abstain_below; None: no abstain_below was given
    abstained: bool | None = None
    time: float | None = None  # a video frame's: seconds from the start, from the stream's timestamps
    frame: int | None = None  # a video frame's index in the stream (0 = the first frame)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path}
        if self.path_bytes is not None:
            data["path_bytes"] = self.path_bytes
        if self.frame is not None or self.time is not None:
            data.update(time=self.time, frame=self.frame)
        data.update(
            model=self.model,
            preset=self.preset,
            multi_label=self.multi_label,
            predictions=[p.to_dict() for p in self.predictions],
            error=self.error,
        )
        if self.tta is not None:
            data["tta"] = self.tta
        if self.abstained is not None:
            data["abstained"] = self.abstained
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        predictions = [Prediction.from_dict(p) for p in data.get("predictions") or []]
        multi_label = data.get("multi_label", False)  # absent in records written before it existed
        if not isinstance(multi_label, bool):
            raise ValueError(f"multi_label must be true or false, not {multi_label!r}")
        raw = data.get("path_bytes")
        tta = data.get("tta")
        if tta is not None and not isinstance(tta, str):
            raise ValueError(f"tta must be a string, not {tta!r}")
        abstained = data.get("abstained")
        if abstained is not None and not isinstance(abstained, bool):
            raise ValueError(f"abstained must be true or false, not {abstained!r}")
        time, frame = data.get("time"), data.get("frame")
        if (time is not None and not isinstance(time, (int, float))) or isinstance(time, bool):
            raise ValueError(f"time must be a number of seconds, not {time!r}")
        if (frame is not None and not isinstance(frame, int)) or isinstance(frame, bool):
            raise ValueError(f"frame must be an index, not {frame!r}")
        return cls(str(data["path"]), str(data["model"]), str(data["preset"]), predictions, data.get("error"),
                   multi_label, str(raw) if raw is not None else None, tta, abstained,
                   float(time) if time is not None else None, frame)  # fmt: skip
