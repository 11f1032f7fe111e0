"""A video-level summary: for each video, the top-1 labels its sampled frames got, with first and last time.

`VideoSummary` is a sink: it watches the records of a run go by (frame records only; it
keeps a few numbers per video and label, never the records) and answers `videos()` at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclass.output.sinks import Sink
from imgclass.records import Record


@dataclass
class Appearance:
    """One label in one video: the first and last sampled frame whose top-1 it was, and how many."""

    label: str
    first: float
    last: float
    frames: int = 1


@dataclass
class Video:
    path: str
    labels: dict[str, Appearance]
    frames: int = 0  # sampled frames with a record
    failed: int = 0  # of which had an error

    def appearances(self) -> list[Appearance]:
        """In order of first appearance."""
        return sorted(self.labels.values(), key=lambda a: (a.first, a.label))


class VideoSummary(Sink):
    """Collects the top-1 label of every frame record, per video, in input order."""

    def __init__(self) -> None:
        super().__init__(None, "summary")  # type: ignore[arg-type]  # writes nothing
        self._videos: dict[str, Video] = {}

    def write(self, record: Record) -> None:
        if record.frame is None and record.time is None:
            return
        video = self._videos.setdefault(record.path, Video(record.path, {}))
        video.frames += 1
        if record.error is not None or not record.predictions:
            video.failed += record.error is not None
            return
        label, when = record.predictions[0].label, record.time if record.time is not None else 0.0
        seen = video.labels.get(label)
        if seen is None:
            video.labels[label] = Appearance(label, when, when)
        else:
            seen.first, seen.last, seen.frames = min(seen.first, when), max(seen.last, when), seen.frames + 1

    def close(self) -> None:
        pass

    def videos(self) -> list[Video]:
        return list(self._videos.values())
