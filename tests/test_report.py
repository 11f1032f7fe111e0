"""The HTML report of a batch: escaped, self-contained, and working in a real headless Chromium."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from imgclass.output.report import Entry, ReportOptions, ReportSink, TeeSink, render, state_of
from imgclass.output.sinks import JsonlSink
from imgclass.records import Prediction, Record

HOSTILE_FILE = "<img src=x onerror=alert(1)>.png"
HOSTILE_LABELS = ['<script>alert("label")</script>', 'say "hi" & <b>bye</b>', "tab\tand\x1bescape"]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


needs_chromium = pytest.mark.skipif(
    _browser() is None,
    reason="no Chromium on PATH (Debian: apt-get install -y chromium); the report's browser test needs one",
)


class Cards(HTMLParser):
    """The cards of a page (as Chromium left it): their attributes, path text and whether they are hidden."""

    def __init__(self):
        super().__init__()
        self.cards: list[dict] = []
        self.images: list[dict] = []
        self._in_path = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self.cards.append({**attrs, "path": ""})
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "h2" and attrs.get("class") == "path":
            self._in_path = True

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_path = False

    def handle_data(self, data):
        if self._in_path:
            self.cards[-1]["path"] += data


def parse(page: str) -> Cards:
    cards = Cards()
    cards.feed(page)
    return cards


def _record(path: str, label: str, p: float, error: str | None = None, multi: bool = False) -> Record:
    predictions = [] if error else [Prediction(1, 3, label, p), Prediction(2, 4, "other", (1 - p) / 2)]
    return Record(path, "m.onnx", "torchvision", predictions, error, multi)


def test_states_flag_low_confidence_and_failures():
    assert state_of(_record("a", "cat", 0.9), 0.5) == "ok"
    assert state_of(_record("a", "cat", 0.3), 0.5) == "low"
    assert state_of(_record("a", "cat", 0.3, error="broken"), 0.5) == "failed"
    assert state_of(_record("a", "cat", 0.3, multi=True), 0.5) == "ok"  # independent scores: anything present counts
    assert state_of(Record("a", "m", "p", [], None, True), 0.5) == "low"  # multi-label: nothing reached the threshold


def test_hostile_text_is_escaped_into_static_markup():
    entries = [Entry(_record(HOSTILE_FILE, HOSTILE_LABELS[0], 0.9)), Entry(_record("b.png", HOSTILE_LABELS[1], 0.2)),
               Entry(_record('c"><script>x()</script>.png', "cat", 0.5, error="<b>bad</b>"))]  # fmt: skip
    page = render(entries, ReportOptions(title="</title><script>t()</script>"))
    assert page.count("<script") == 1 and "<img src=x" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page
    assert 'data-label="&lt;script&gt;alert(&quot;label&quot;)&lt;/script&gt;"' in page
    cards = parse(page)
    assert [c["path"] for c in cards.cards] == [HOSTILE_FILE, "b.png", 'c"><script>x()</script>.png']
    assert [c["data-label"] for c in cards.cards] == [HOSTILE_LABELS[0], HOSTILE_LABELS[1], ""]
    assert [c["data-state"] for c in cards.cards] == ["ok", "low", "failed"]
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page


def test_tee_closes_every_sink_even_when_one_fails(tmp_path):
    import io

    class Failing(JsonlSink):
        def close(self):
            raise OSError("disk on fire")

    stream = io.StringIO()
    report = ReportSink(tmp_path / "r.html")
    tee = TeeSink(Failing(stream), report)
    tee.start()
    tee.write(_record("a.png", "cat", 0.9))
    with pytest.raises(OSError, match="disk on fire"):
        tee.close()
    assert (tmp_path / "r.html").is_file() and stream.getvalue().count("\n") == 1


@pytest.fixture
def batch_report(tmp_path, photos, make_model, home):
    """A batch of real photos, an EXIF-rotated one, a broken file with a hostile name, and hostile labels."""
    folder = tmp_path / "in put"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png", "china.jpg"):
        shutil.copy(photos[name], folder / name)
    rotated = Image.open(photos["chelsea.png"]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)
    (folder / HOSTILE_FILE).write_text("not an image")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(HOSTILE_LABELS + [f"class {i}" for i in range(7)]) + "\n")
    model = make_model("tiny", spatial=None, classes=10)
    report = tmp_path / "report.html"
    result = run_cli("batch", folder, "-m", model, "--labels", labels, "--report", report, "-o", tmp_path / "r.jsonl")
    assert result.returncode == 1, result.stderr  # one input failed
    return report


def test_batch_report_is_self_contained_with_a_thumbnail_per_image(batch_report):
    page = batch_report.read_text(encoding="utf-8")
    cards = parse(page)
    assert len(cards.cards) == 6 and sum(c["data-state"] == "failed" for c in cards.cards) == 1
    thumbs = [i["src"] for i in cards.images]
    assert len(thumbs) == 5 and all(src.startswith("data:image/jpeg;base64,") for src in thumbs)
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)  # nothing fetched: works offline
    assert oct(batch_report.stat().st_mode & 0o777) != oct(0o600)  # the umask's permissions, not a temp file's


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "LANG": "C.UTF-8"})


def _console(stderr: str) -> list[str]:
    """The page's console messages and uncaught errors, as Chromium logs them with --enable-logging=stderr."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
@pytest.mark.slow
def test_console_errors_are_seen_by_this_harness(tmp_path):
    """The harness can fail: a page with an uncaught error shows up in the console lines."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><p>x</p><script>notDefined();</script>")
    result = _chromium(["--dump-dom", broken.as_uri()], tmp_path)
    assert any("notDefined" in line for line in _console(result.stderr)), result.stderr[-2000:]


@needs_chromium
@pytest.mark.slow
def test_report_in_headless_chromium(batch_report, tmp_path):
    url = batch_report.as_uri()
    result = _chromium(["--dump-dom", url], tmp_path)
    assert result.returncode == 0 and _console(result.stderr) == [], result.stderr[-3000:]
    everything = parse(result.stdout)
    assert len(everything.cards) == 6 and not any("hidden" in c for c in everything.cards)
    assert 'id="shown">6 of 6 shown<' in result.stdout  # the script ran
    assert not any(i.get("src") == "x" for i in everything.images)  # the hostile name made no element

    # A filter in the URL's fragment: only that label's cards stay, least confident first.
    label = next(c["data-label"] for c in everything.cards if c["data-label"])
    result = _chromium(["--dump-dom", f"{url}#label={quote(label)}&sort=asc"], tmp_path)
    assert _console(result.stderr) == []
    filtered = parse(result.stdout).cards
    shown = [c for c in filtered if "hidden" not in c]
    assert shown and all(c["data-label"] == label for c in shown)
    assert len(shown) == sum(c["data-label"] == label for c in everything.cards) < 6
    confidences = [float(c["data-p"]) for c in filtered]
    assert confidences == sorted(confidences)

    # Flagged only: the failed input (and any low-confidence one) stays, the rest is hidden.
    result = _chromium(["--dump-dom", f"{url}#flagged=1"], tmp_path)
    flagged = [c for c in parse(result.stdout).cards if "hidden" not in c]
    assert {c["data-state"] for c in flagged} <= {"low", "failed"} and any(
        c["path"].endswith(HOSTILE_FILE) for c in flagged
    )

    # A phone-sized screenshot in this test's folder.
    shot = tmp_path / "report-phone.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=412,915", url], tmp_path)
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (915, 412) and pixels.std() > 10  # something was drawn
