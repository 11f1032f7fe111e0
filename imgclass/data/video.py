"""Video files as inputs: frames sampled by presentation time (or every Nth frame), decoded one at a time.

`frames(path, options)` opens a container with PyAV (the optional `video` extra), decodes
its first video stream packet by packet and yields a `Frame` for each sampled frame: the
file, the frame's index, its time in seconds from the stream's timestamps (counted from its
first), and its RGB image (or the reason it could not be decoded). A file that cannot be
opened is one error frame; a packet the decoder refuses is an error frame where a sample was due; a frame over
the pixel limit is refused like a huge image. Nothing else is kept: memory is one frame.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from imgclass.data.images import DEFAULT_MAX_PIXELS, display_path
from imgclass.data.sources import is_video_name
from imgclass.errors import InputError, MissingExtra, UsageError
from imgclass.records import Record

_EVERY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)?\s*$", re.IGNORECASE)
_EPSILON = 1e-6  # timestamps are rationals: a frame at 0.9999999 s is the one due at 1 s


@dataclass(frozen=True)
class Every:
    """How frames are sampled: one every `seconds` of presentation time, or every `frames`-th frame."""

    seconds: float | None = 1.0
    frames: int | None = None

    def describe(self) -> str:
        return f"{self.frames}f" if self.frames else f"{self.seconds:g}s"


def parse_every(text: str) -> Every:
    """`1s`, `0.5s`, `2` (seconds) or `30f` (every 30th frame)."""
    match = _EVERY.match(text or "")
    if not match:
        raise UsageError(f"{text!r}: give seconds (1s, 0.5s) or a number of frames (30f)")
    number, unit = float(match.group(1)), (match.group(2) or "s").lower()
    if unit == "f":
        if number < 1 or number != int(number):
            raise UsageError(f"{text!r}: a number of frames is a whole number of at least 1")
        return Every(seconds=None, frames=int(number))
    if not number > 0 or not math.isfinite(number):
        raise UsageError(f"{text!r}: the interval must be more than 0 seconds")
    return Every(seconds=number)


@dataclass(frozen=True)
class VideoOptions:
    every: Every = Every()
    max_pixels: int | None = DEFAULT_MAX_PIXELS


@dataclass
class Frame:
    """One sampled frame of a video: an input of the pipeline (its record carries `time` and `frame`)."""

    path: str
    index: int | None  # None: the file as a whole (it could not be opened)
    time: float | None
    picture: Any = None  # the RGB PIL image, until the pipeline takes it
    error: str | None = None

    def image(self) -> Any:
        """The frame's RGB image (handed over once, so that it is not kept), or InputError."""
        if self.error is not None:
            raise InputError(f"{display_path(self.path)}: {self.error}")
        picture, self.picture = self.picture, None
        if picture is None:
            raise InputError(f"{display_path(self.path)}: the frame was taken already")
        return picture


def at_frame(record: Record, item: Any) -> Record:
    """A record of a video frame carries the frame's time and index; any other record is returned as it is."""
    if isinstance(item, Frame):
        return dataclasses.replace(record, time=item.time, frame=item.index)
    return record


def require_video(what: str = "classifying video files") -> None:
    """MissingExtra (exit 2) unless PyAV can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise MissingExtra("video", what) from None


def expand_frames(paths: Iterable[str], options: VideoOptions,
                  wanted: Callable[[str, int], bool] | None = None) -> Iterator[Any]:  # fmt: skip
    """`paths` with every video file replaced by its sampled frames (`wanted(path, index)`: False skips one)."""
    for path in paths:
        if isinstance(path, str) and is_video_name(path):
            yield from frames(path, options, wanted)
        else:
            yield path


def frames(path: str, options: VideoOptions = VideoOptions(),
           wanted: Callable[[str, int], bool] | None = None) -> Iterator[Frame]:  # fmt: skip
    """The sampled frames of the video at `path`, in order (see the module's doc)."""
    require_video()
    import av

    refused = _not_a_file(path)
    if refused is not None:
        yield Frame(path, None, None, error=refused)
        return
    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as err:
        yield Frame(path, None, None, error=f"cannot open video: {_reason(err)}")
        return
    with container:
        streams = container.streams.video
        if not streams:
            yield Frame(path, None, None, error="no video stream in this file")
            return
        yield from _Sampler(path, streams[0], options, wanted).run(container)


def _not_a_file(path: str) -> str | None:
    """Why `path` cannot be read as a video file (a FIFO would block FFmpeg forever), or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file (or a broken symlink)"
    except OSError as err:
        return f"cannot read file: {(err.strerror or str(err)).lower()}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a video file"
    if not stat.S_ISREG(mode):
        return "is a FIFO, socket or device, not a video file"
    return None


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(text).strip().splitlines()[0][:200]


class _Sampler:
    """Walks one stream's packets; decides which frames are due and turns those into Frames."""

    def __init__(self, path: str, stream: Any, options: VideoOptions, wanted: Callable[[str, int], bool] | None):
        self.path, self.stream, self.options, self.wanted = path, stream, options, wanted
        self.index = 0  # frames seen so far, decoded or not
        self.due = 0.0  # the next sample time (seconds mode)
        rate = stream.average_rate or stream.guessed_rate
        self.rate = float(rate) if rate else None
        self.start = stream.start_time or 0  # times count from the stream's first timestamp

    def run(self, container: Any) -> Iterator[Frame]:
        import av

        try:
            self._check_size(self.stream.codec_context.width, self.stream.codec_context.height)
        except _TooBig as big:
            yield Frame(self.path, None, None, error=str(big))
            return
        packets = container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                if not self.index:
                    yield Frame(self.path, None, None, error="no frame could be decoded (damaged or cut short?)")
                return
            except av.error.FFmpegError as err:  # the container itself is damaged past here
                yield Frame(self.path, self.index, self._due_time(), error=f"cannot read video: {_reason(err)}")
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as err:
                error = self._failed(packet, err)
                if error is not None:
                    yield error
                continue
            for frame in decoded:
                sample = self._sample(frame)
                if sample is not None:
                    yield sample

    def _check_size(self, width: int, height: int) -> None:
        limit = self.options.max_pixels
        if limit and width * height > limit:
            raise _TooBig(
                f"{width}x{height} = {width * height} pixels a frame is over the limit of {limit} (possible decompression bomb)"
            )

    def _time(self, pts: int | None, time_base: Fraction | None) -> float | None:
        if pts is not None and time_base:
            return float((pts - self.start) * time_base)
        return self.index / self.rate if self.rate else None

    def _due_time(self) -> float | None:
        return self.due if self.options.every.seconds else None

    def _is_due(self, time: float | None) -> bool:
        every = self.options.every
        if every.frames:
            return self.index % every.frames == 0
        if time is None:
            return self.index == 0
        if time + _EPSILON < self.due:
            return False
        seconds = every.seconds or 1.0
        self.due = (math.floor((time + _EPSILON) / seconds) + 1) * seconds
        return True

    def _failed(self, packet: Any, err: BaseException) -> Frame | None:
        time = self._time(packet.pts, packet.time_base)
        due = self._is_due(time)
        index, self.index = self.index, self.index + 1
        if not due or (self.wanted is not None and not self.wanted(self.path, index)):
            return None
        return Frame(self.path, index, _round(time), error=f"cannot decode this frame: {_reason(err)}")

    def _sample(self, frame: Any) -> Frame | None:
        time = self._time(frame.pts, frame.time_base)
        due = self._is_due(time)
        index, self.index = self.index, self.index + 1
        if not due or (self.wanted is not None and not self.wanted(self.path, index)):
            return None
        try:
            self._check_size(frame.width, frame.height)
        except _TooBig as big:
            return Frame(self.path, index, _round(time), error=str(big))
        return Frame(self.path, index, _round(time), picture=frame.to_image())


class _TooBig(InputError):
    pass


def _round(time: float | None) -> float | None:
    return None if time is None else round(time, 6)
