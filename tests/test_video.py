"""Video files as inputs: frames sampled by time or count, records with time and frame, resume, damage, limits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REAL_MODEL, jsonl, run_cli
from PIL import Image

from imgclass.data.video import Every, VideoOptions, frames, parse_every
from imgclass.errors import UsageError

av = pytest.importorskip("av", reason="the video extra (PyAV) is not installed")

FPS = 10
SIZE = (600, 400)
PHOTOS = ("coffee", "chelsea", "motorcycle_left")
EXPECTED = ({"espresso"}, {"tabby", "tiger cat", "Egyptian cat"}, {"moped", "motor scooter"})


def _still(name: str) -> Image.Image:
    import skimage

    return Image.open(Path(skimage.__file__).parent / "data" / f"{name}.png").convert("RGB").resize(SIZE)


def _codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def make_clip(path: Path, stills: list[Image.Image], codec: str | None = None, fmt: str | None = None) -> Path:
    """Each still for one second at FPS frames a second, high quality."""
    codec = codec or _codec()
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"crf": "12"} if codec == "libx264" else {"qscale": "2"}
        if codec == "mpeg4":
            stream.codec_context.qmax = 3
        pts = 0
        for still in stills:
            for _ in range(FPS):
                frame = av.VideoFrame.from_image(still)
                frame.pts = pts
                pts += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def damage(source: Path, dest: Path, packets: set[int]) -> Path:
    """A copy of `source` (as Matroska) whose packets numbered in `packets` are replaced by random bytes."""
    with av.open(str(source)) as src, av.open(str(dest), "w", format="matroska") as out:
        stream_in = src.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        for number, packet in enumerate(src.demux(stream_in)):
            if packet.dts is None:
                continue
            if number in packets:
                junk = av.Packet(os.urandom(packet.size))
                junk.pts, junk.dts, junk.time_base = packet.pts, packet.dts, packet.time_base
                packet = junk
            packet.stream = stream_out
            out.mux(packet)
    return dest


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("video") / "clip.mp4", [_still(name) for name in PHOTOS])


def test_parse_every():
    assert parse_every("1s") == Every(seconds=1.0)
    assert parse_every("0.5S") == Every(seconds=0.5)
    assert parse_every("2") == Every(seconds=2.0)
    assert parse_every("30f") == Every(seconds=None, frames=30)
    for bad in ("", "0s", "0f", "1.5f", "-1s", "1m", "nan", "1e9999s"):
        with pytest.raises(UsageError):
            parse_every(bad)


def test_frames_sampled_by_time_and_by_count(clip):
    by_time = list(frames(str(clip)))
    assert [(f.index, f.time, f.error) for f in by_time] == [(0, 0.0, None), (10, 1.0, None), (20, 2.0, None)]
    assert by_time[0].image().size == SIZE
    by_count = list(frames(str(clip), VideoOptions(Every(seconds=None, frames=7))))
    assert [f.index for f in by_count] == [0, 7, 14, 21, 28]
    assert [f.time for f in by_count] == [0.0, 0.7, 1.4, 2.1, 2.8]
    half = list(frames(str(clip), VideoOptions(Every(seconds=0.45))))
    assert [f.index for f in half] == [0, 5, 9, 14, 18, 23, 27]  # the first frame at or after each multiple


def test_frames_over_the_pixel_limit_and_files_that_are_not_video(clip, tmp_path):
    big = list(frames(str(clip), VideoOptions(max_pixels=SIZE[0] * SIZE[1] - 1)))
    assert len(big) == 1 and big[0].index is None and "over the limit of 239999" in big[0].error
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    bad = list(frames(str(junk)))
    assert len(bad) == 1 and bad[0].error.startswith("cannot open video")
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    assert list(frames(str(empty)))[0].error is not None


def test_a_damaged_stream_gives_error_records_for_what_it_cannot_decode(clip, tmp_path):
    clean = make_clip(tmp_path / "clean.mkv", [_still(name) for name in PHOTOS], codec="mpeg4", fmt="matroska")
    broken = damage(clean, tmp_path / "broken.mkv", set(range(12)))  # the first 1.2 s
    got = list(frames(str(broken)))
    assert [(f.index, f.time) for f in got] == [(0, 0.0), (10, 1.0), (20, 2.0)]
    assert [f.error is not None for f in got] == [True, True, False]
    assert "cannot decode this frame" in got[0].error


def test_cli_damaged_video_exit_1_and_the_rest_run(clip, tmp_path, make_model, home):
    clean = make_clip(tmp_path / "clean.mkv", [_still(name) for name in PHOTOS], codec="mpeg4", fmt="matroska")
    broken = damage(clean, tmp_path / "broken.mkv", {3, 4, 5, 6, 7, 8, 9, 10, 11})
    result = run_cli("predict", broken, clip, "-m", make_model("tiny"), "-f", "jsonl")
    assert result.returncode == 1, result.stderr
    records = jsonl(result.stdout)
    assert [(Path(r["path"]).name, r["frame"], r["error"] is None) for r in records] == [
        ("broken.mkv", 0, True),
        ("broken.mkv", 10, False),  # packets 3 to 11 are junk: the frame due at 1 s cannot be decoded
        ("broken.mkv", 20, True),
        ("clip.mp4", 0, True),
        ("clip.mp4", 10, True),
        ("clip.mp4", 20, True),
    ]


@pytest.mark.skipif(not REAL_MODEL.is_file(), reason=f"the real model is not at {REAL_MODEL}")
def test_predict_clip_every_second_gives_each_photos_label(clip, home):
    result = run_cli("predict", clip, "--every", "1s", "-m", REAL_MODEL, "--preset", "torchvision", "-f", "jsonl")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert len(records) == 3
    assert [r["time"] for r in records] == [0.0, 1.0, 2.0]
    assert [r["frame"] for r in records] == [0, 10, 20]
    assert all(r["path"] == str(clip) and r["error"] is None for r in records)
    for record, expected in zip(records, EXPECTED, strict=True):
        assert record["predictions"][0]["label"] in expected, record["predictions"][:3]


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_resume_and_shards_work_per_frame(clip, tmp_path, make_model, home):
    model = make_model("tiny")
    out = tmp_path / "frames.jsonl"
    first = run_cli("batch", clip, "-m", model, "--every", "5f", "-o", out)
    assert first.returncode == 0, first.stderr
    lines = out.read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 5, 10, 15, 20, 25]
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # two whole records and a cut one
    again = run_cli("batch", clip, "-m", model, "--every", "5f", "-o", out, "--resume")
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 5, 10, 15, 20, 25]
    shards = tmp_path / "shards"
    shards.mkdir()
    assert run_cli("batch", clip, "-m", model, "--every", "10f", "-o", shards).returncode == 0
    assert run_cli("batch", clip, "-m", model, "--every", "5f", "-o", shards, "--resume").returncode == 0
    written = [json.loads(line)["frame"] for f in sorted(shards.glob("part-*")) for line in f.read_text().splitlines()]
    assert sorted(written) == [0, 5, 10, 15, 20, 25]


def test_batch_lists_videos_in_folders_only_with_video(clip, tmp_path, make_model, home):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    _still("coffee").save(folder / "coffee.jpg")
    model = make_model("tiny")
    plain = jsonl(run_cli("batch", folder, "-m", model, "-f", "jsonl").stdout)
    assert [Path(r["path"]).name for r in plain] == ["coffee.jpg"]
    assert "frame" not in plain[0]  # a photo's record is unchanged
    both = jsonl(run_cli("batch", folder, "-m", model, "-f", "jsonl", "--video").stdout)
    assert [(Path(r["path"]).name, r.get("frame")) for r in both] == [
        ("clip.mp4", 0),
        ("clip.mp4", 10),
        ("clip.mp4", 20),
        ("coffee.jpg", None),
    ]


def test_summary_lists_labels_with_first_and_last_time(clip, make_model, home):
    result = run_cli("predict", clip, "-m", make_model("tiny"), "--every", "0.5s", "-f", "table", "--summary")
    assert result.returncode == 0, result.stderr
    assert "clip.mp4: 6 frames" in result.stdout
    assert "first" in result.stdout and "last" in result.stdout
    refused = run_cli("predict", clip, "-m", make_model("tiny"), "-f", "jsonl", "--summary")
    assert refused.returncode == 2 and "--summary" in refused.stderr


@pytest.mark.slow  # over 0.5 s: runs in the full suite, not the quick loop
def test_without_the_extra_video_input_exits_2(clip, tmp_path, make_model, home):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "av.py").write_text("raise ImportError('PyAV is not installed here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("predict", clip, "-m", make_model("tiny"), env=env)
    assert result.returncode == 2
    assert "imgclass[video]" in result.stderr
    photo = tmp_path / "coffee.jpg"
    _still("coffee").save(photo)
    assert run_cli("predict", photo, "-m", make_model("tiny"), "-f", "jsonl", env=env).returncode == 0
    assert run_cli("batch", tmp_path, "--video", "-m", make_model("tiny"), env=env).returncode == 2


def test_a_counted_job_never_lists_frames_ahead(clip, make_model, tmp_path):
    """Progress counts inputs first; with a video among them the frames are still decoded one at a time, as asked."""
    import imgclass
    from imgclass.output.sinks import Sink
    from imgclass.tasks.jobs import JobOptions, run_job

    class Collect(Sink):
        def __init__(self):
            super().__init__(None, "list")  # type: ignore[arg-type]
            self.records = []

        def write(self, record):
            self.records.append(record)

        def close(self):
            pass

    class Events:
        total: object = "unset"

        def started(self, total):
            self.total = total

        def record(self, record):
            pass

    photo = tmp_path / "coffee.jpg"
    _still("coffee").save(photo)
    clf = imgclass.load(make_model("tiny"))
    sink, events = Collect(), Events()
    options = JobOptions(count_first=True, every=Every(seconds=None, frames=15))
    summary = run_job(clf, [str(photo), str(clip)], sink, options, events, done=set())
    assert events.total is None  # not known without decoding the video ahead
    assert [(Path(r.path).name, r.frame) for r in sink.records] == [
        ("coffee.jpg", None),
        ("clip.mp4", 0),
        ("clip.mp4", 15),
    ]
    assert summary.failed == 0
    events = Events()
    run_job(clf, [str(photo)], Collect(), options, events, done=set())
    assert events.total == 1


def test_the_library_classifies_frames_and_urls_like_files(clip, make_model):
    import imgclass

    clf = imgclass.load(make_model("tiny"))
    records = list(clf.classify([str(clip)], every="1s"))
    assert [(r.time, r.frame) for r in records] == [(0.0, 0), (1.0, 10), (2.0, 20)]
    assert records[0].to_dict()["time"] == 0.0 and imgclass.Record.from_dict(records[1].to_dict()) == records[1]


def test_csv_output_of_frames_cannot_be_resumed(clip, tmp_path, make_model, home):
    out = tmp_path / "frames.csv"
    first = run_cli("batch", clip, "-m", make_model("tiny"), "-o", out)
    assert first.returncode == 0, first.stderr
    again = run_cli("batch", clip, "-m", make_model("tiny"), "-o", out, "--resume")
    assert again.returncode == 2 and "needs jsonl output" in again.stderr


def test_a_fifo_or_a_missing_file_named_like_a_video_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    got = list(frames(str(fifo)))
    assert len(got) == 1 and "FIFO" in got[0].error
    assert "no such file" in list(frames(str(tmp_path / "gone.mkv")))[0].error
