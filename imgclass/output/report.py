"""An HTML report of a batch: one self-contained file to look through by eye, on a desktop or a phone.

Every image is a card: a small thumbnail, its path, the top-k labels as bars,
and a flag when the top-1 probability is low (or, for a multi-label model, no
class reached the threshold) or the input failed; a heat map beside the photo
when `imgclass explain` made one. The page filters by predicted label, sorts by
confidence and can show only flagged cards; the state is kept in the URL's
fragment (`report.html#label=tabby&sort=asc&flagged=1`), so a view can be
bookmarked or sent.

Self-contained: thumbnails (and heat maps) are embedded as JPEG/PNG data URIs,
CSS and script are inline, nothing is fetched, so the file works offline, moved
or mailed. Every text from files or models (paths, labels, errors) is HTML-escaped
into static markup; the script only reads data attributes and toggles `hidden`,
it never builds markup from data.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from imgclass._util.text import printable
from imgclass.errors import ImgclassError, OutputError, describe_os_error
from imgclass.output.sinks import Sink
from imgclass.records import Record

LOW_CONFIDENCE = 0.5  # a single-label top-1 below this is flagged


@dataclass(frozen=True)
class ReportOptions:
    title: str = "imgclass report"
    low_confidence: float = LOW_CONFIDENCE
    thumbnail: int = 192  # longest side of an embedded thumbnail, in pixels
    workers: int = 2  # threads making thumbnails
    subtitle: str = ""  # e.g. the model and TTA, shown under the title


@dataclass
class Entry:
    record: Record
    heatmap: str | None = None  # a data URI (image_uri) of a heat map to show beside the photo
    thumbnail: str | None = field(default=None, repr=False)  # a data URI


def thumbnail_uri(path: str, size: int) -> str | None:
    """A small JPEG of the image (EXIF orientation applied) as a data URI; None when it cannot be read."""
    from imgclass.data.images import DecodeOptions, load_rgb

    try:
        img = load_rgb(path, DecodeOptions(draft_min_short_side=size))
        img.thumbnail((size, size))
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=80)
    except (ImgclassError, OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_uri(image, size: int) -> str:
    """A PIL image as a JPEG thumbnail data URI, its longest side at most `size`."""
    small = image.copy()
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _text(value: str) -> str:
    """Hostile text (a path, a label, an error) as HTML: control characters shown, markup escaped."""
    return html.escape(printable(value), quote=True)


def state_of(record: Record, low: float) -> str:
    """The card's state: "failed", "low" (top-1 below `low`; multi-label: nothing reached the threshold) or "ok"."""
    if record.error is not None:
        return "failed"
    if not record.predictions:
        return "low"
    if not record.multi_label and record.predictions[0].probability < low:
        return "low"
    return "ok"


def _bars(record: Record) -> str:
    rows = []
    for p in record.predictions:
        width = max(0.0, min(100.0, 100.0 * p.probability))
        rows.append(
            f'<li><span class="label">{_text(p.label)}</span>'
            f'<span class="bar"><span style="width:{width:.1f}%"></span></span>'
            f'<span class="p">{100.0 * p.probability:.1f}%</span></li>'
        )
    return f'<ol class="top">{"".join(rows)}</ol>' if rows else ""


def _card(entry: Entry, number: int, low: float) -> str:
    record = entry.record
    state = state_of(record, low)
    top = record.predictions[0] if record.predictions and record.error is None else None
    label = top.label if top else ""
    confidence = top.probability if top else -1.0
    images = []
    if entry.thumbnail:
        images.append(f'<img src="{html.escape(entry.thumbnail)}" alt="{_text(record.path)}" loading="lazy">')
    else:
        images.append('<div class="noimage">no preview</div>')
    if entry.heatmap is not None:
        images.append(f'<img class="heat" src="{html.escape(entry.heatmap)}" alt="heat map" loading="lazy">')
    flag = ""
    if state == "failed":
        flag = f'<p class="flag failed">failed: {_text(record.error or "")}</p>'
    elif state == "low":
        flag = '<p class="flag low">low confidence</p>'
    return (
        f'<article class="card {state}" data-label="{_text(label)}" data-p="{confidence:.6f}" '
        f'data-n="{number}" data-state="{state}"><figure>{"".join(images)}</figure>'
        f'<h2 class="path">{_text(record.path)}</h2>{flag}{_bars(record)}</article>'
    )


def _controls(entries: Sequence[Entry], low: float) -> str:
    counts = Counter(e.record.predictions[0].label for e in entries if e.record.error is None and e.record.predictions)
    options = "".join(
        f'<option value="{_text(name)}">{_text(name)} ({n})</option>'
        for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    flagged = sum(state_of(e.record, low) != "ok" for e in entries)
    return (
        '<form id="controls" onsubmit="return false">'
        f'<label>Predicted label <select id="label"><option value="">all labels</option>{options}</select></label>'
        '<label>Sort <select id="sort"><option value="input">input order</option>'
        '<option value="desc">most confident first</option><option value="asc">least confident first</option>'
        "</select></label>"
        f'<label><input type="checkbox" id="flagged"> only flagged ({flagged})</label>'
        '<output id="shown"></output></form>'
    )


def render(entries: Sequence[Entry], options: ReportOptions = ReportOptions()) -> str:
    """The whole page: static, escaped markup; the script only filters and sorts it."""
    low = options.low_confidence
    failed = sum(e.record.error is not None for e in entries)
    summary = f"{len(entries)} images, {failed} failed"
    if options.subtitle:
        summary = f"{options.subtitle} · {summary}"
    cards = "\n".join(_card(entry, i, low) for i, entry in enumerate(entries))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="generator" content="imgclass">'
        f"<title>{_text(options.title)}</title><style>{CSS}</style></head>\n<body><header>"
        f'<h1>{_text(options.title)}</h1><p class="summary">{_text(summary)}</p>'
        f'{_controls(entries, low)}</header>\n<main id="cards">\n{cards}\n</main>\n'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(path: str | os.PathLike, entries: Sequence[Entry], options: ReportOptions = ReportOptions()) -> None:
    """Make the thumbnails (on `options.workers` threads) and write the page atomically."""
    missing = [e for e in entries if e.thumbnail is None and e.record.error is None]
    pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="imgclass-thumb")
    try:
        for entry, uri in zip(missing, pool.map(lambda e: thumbnail_uri(e.record.path, options.thumbnail), missing),
                              strict=True):  # fmt: skip
            entry.thumbnail = uri
    finally:
        # A second Ctrl-C (or any error) stops here: the thumbnails not started are dropped, not waited for.
        pool.shutdown(wait=False, cancel_futures=True)
    target = Path(path)
    page = render(entries, options)
    from imgclass._util.fs import write_atomically

    try:
        write_atomically(target, page, errors="backslashreplace")
    except OSError as err:
        raise OutputError(
            f"«report» {printable(str(path))}: cannot write the report: {describe_os_error(err)}"
        ) from None


class ReportSink(Sink):
    """Collects the records of a run and writes the report when the run ends (however it ends)."""

    def __init__(self, path: str | os.PathLike, options: ReportOptions = ReportOptions()):
        super().__init__(io.StringIO(), name=os.fspath(path))
        self.path = path
        self.options = options
        self.entries: list[Entry] = []

    def write(self, record: Record) -> None:
        self.entries.append(Entry(record))

    def close(self) -> None:
        write_report(self.path, self.entries, self.options)


class TeeSink(Sink):
    """Writes every record to several sinks; closes them all, the first failure raised after."""

    def __init__(self, *sinks: Sink):
        super().__init__(sinks[0].stream, sinks[0].name)
        self.sinks = sinks

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def write(self, record: Record) -> None:
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as err:  # noqa: BLE001 - close the others, then raise the first
                error = error or err
        if error is not None:
            raise error


CSS = """
:root{color-scheme:light dark;--bg:#fafafa;--fg:#1b1b1b;--card:#fff;--line:#ddd;--bar:#3b6fd6;--low:#b35c00;--bad:#c0262d}
@media (prefers-color-scheme:dark){:root{--bg:#161616;--fg:#eee;--card:#222;--line:#3a3a3a;--bar:#6f9bff;--low:#ffae4d;--bad:#ff6b6b}}
*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{position:sticky;top:0;z-index:1;background:var(--bg);border-bottom:1px solid var(--line);padding:.6rem 1rem}
h1{font-size:1.2rem;margin:0}.summary{margin:.2rem 0 .4rem;opacity:.8;overflow-wrap:anywhere}
form{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center}select{max-width:70vw;font:inherit}
#shown{opacity:.7}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.8rem;padding:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.6rem;min-width:0}
.card.low{border-color:var(--low)}.card.failed{border-color:var(--bad)}
figure{margin:0;display:flex;gap:4px}figure img{flex:1;min-width:0;width:100%;max-height:240px;object-fit:contain}
.noimage{flex:1;height:96px;display:flex;align-items:center;justify-content:center;opacity:.6;border:1px dashed var(--line)}
.path{font-size:.8rem;font-weight:normal;margin:.4rem 0;overflow-wrap:anywhere;opacity:.85}
.flag{margin:.2rem 0;font-weight:600;font-size:.85rem}.flag.low{color:var(--low)}.flag.failed{color:var(--bad);overflow-wrap:anywhere}
.top{list-style:none;margin:0;padding:0}.top li{display:grid;grid-template-columns:minmax(0,1fr) 4.5rem 3.2rem;gap:.4rem;align-items:center;font-size:.85rem}
.label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.p{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:.55rem;background:var(--line);border-radius:3px;overflow:hidden}.bar span{display:block;height:100%;background:var(--bar)}
@media (max-width:480px){main{grid-template-columns:1fr;padding:.5rem}header{position:static;padding:.5rem}}
[hidden]{display:none!important}
"""

# Reads data-* attributes and toggles `hidden`; no markup is ever built from data.
SCRIPT = """
(function () {
  "use strict";
  var main = document.getElementById("cards");
  var cards = Array.prototype.slice.call(main.querySelectorAll(".card"));
  var label = document.getElementById("label"), sort = document.getElementById("sort");
  var flagged = document.getElementById("flagged"), shown = document.getElementById("shown");
  function fromHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var wanted = params.get("label") || "";
    label.value = Array.prototype.some.call(label.options, function (o) { return o.value === wanted; }) ? wanted : "";
    sort.value = ["desc", "asc"].indexOf(params.get("sort")) >= 0 ? params.get("sort") : "input";
    flagged.checked = params.get("flagged") === "1";
  }
  function toHash() {
    var params = new URLSearchParams();
    if (label.value) params.set("label", label.value);
    if (sort.value !== "input") params.set("sort", sort.value);
    if (flagged.checked) params.set("flagged", "1");
    var hash = params.toString();
    try { history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search); } catch (e) {}
  }
  function apply() {
    var count = 0;
    cards.forEach(function (card) {
      var hide = (label.value && card.dataset.label !== label.value) ||
                 (flagged.checked && card.dataset.state === "ok");
      card.hidden = !!hide;
      if (!hide) count += 1;
    });
    var order = cards.slice();
    if (sort.value !== "input") {
      var sign = sort.value === "asc" ? 1 : -1;
      order.sort(function (a, b) {
        return sign * (parseFloat(a.dataset.p) - parseFloat(b.dataset.p)) || a.dataset.n - b.dataset.n;
      });
    }
    order.forEach(function (card) { main.appendChild(card); });
    shown.textContent = count + " of " + cards.length + " shown";
  }
  function changed() { toHash(); apply(); }
  label.addEventListener("change", changed);
  sort.addEventListener("change", changed);
  flagged.addEventListener("change", changed);
  window.addEventListener("hashchange", function () { fromHash(); apply(); });
  fromHash();
  apply();
})();
"""
