"""Labelled images for `evaluate`: an ImageFolder tree or a CSV/JSONL list, each image with its class index.

    DIR/CLASS/.../IMAGE      one folder per class (images below it, at any depth)
    list.csv                 path,label rows (a header row naming `path` and `label` is optional)
    list.jsonl               {"path": ..., "label": ...} per line

A class is named by its index (`281`), by its WordNet id (`n02123045`, when the
model uses the built-in ImageNet-1k labels, so an ILSVRC-2012 val folder in the
usual one-folder-per-wnid layout works as it is) or by its label, matched without
regard to case, `_` or extra spaces (and against the ImageNet synonyms, for the
built-in labels). A name that is none of these is refused, naming the nearest label.

Folders are listed in digit-aware order ("2" before "10"), and the folder → class
map is part of the dataset, so a user sees which index each folder was given:
nothing here depends on the order folders sort in. Nothing here prints.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgclass._util.resources import load_json
from imgclass._util.text import printable
from imgclass.data.sources import expand, is_image_name, is_url
from imgclass.errors import UsageError

WNID = re.compile(r"^n\d{8}$")
LIST_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
LAYOUT_HINT = "give a folder with one subfolder per class, or a .csv/.jsonl list of path,label"


def natural_key(name: str) -> list:
    """Digit-aware sort key: "2" < "10" < "100", "img2" < "img10"; case-insensitive otherwise."""
    return [int(part) if part.isdecimal() else part.casefold() for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Sample:
    path: str
    truth: int  # class index, as records report it (ImageNet-1k indices for 1001-class exports)
    name: str  # the folder name or label text it came from


@dataclass(frozen=True)
class ClassEntry:
    """One line of the folder → class map: what the user wrote and what it was taken to mean."""

    name: str  # folder name, or the label text in a list
    index: int
    label: str  # the model's label for that index
    matched_by: str  # "index", "wnid", "label" or "synonym"
    images: int


@dataclass
class Dataset:
    root: str  # the folder or list file, as given
    layout: str  # "folders", "csv" or "jsonl"
    samples: list[Sample]
    mapping: list[ClassEntry]
    ignored: list[str] = field(default_factory=list)  # images outside any class folder

    @property
    def classes(self) -> int:
        return len({entry.index for entry in self.mapping if entry.images})


def _normal(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


class ClassNames:
    """Turns a folder name or label text into a class index of one model."""

    def __init__(self, names: Sequence[str], imagenet: bool):
        self.names = tuple(names)
        self.imagenet = imagenet
        data = load_json("imagenet1k_labels.json") if imagenet else {}
        self.wnids = {w: i for i, w in enumerate(data.get("wnids", ()))}
        self.by_label = self._index(_normal(n) for n in self.names)
        synonyms = data.get("synonyms", ()) if imagenet else ()
        self.by_synonym = self._index_many([_normal(s) for s in entry.split(",")] for entry in synonyms)

    @staticmethod
    def _index(keys: Iterable[str]) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for i, key in enumerate(keys):
            found.setdefault(key, set()).add(i)
        return found

    @classmethod
    def _index_many(cls, groups: Iterable[list[str]]) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for i, keys in enumerate(groups):
            for key in keys:
                if key:
                    found.setdefault(key, set()).add(i)
        return found

    @classmethod
    def for_labels(cls, names: Sequence[str], kind: str) -> ClassNames:
        """WordNet ids and synonyms apply when the labels are the built-in ImageNet-1k names."""
        builtin = tuple(load_json("imagenet1k_labels.json")["names"])
        return cls(names, imagenet=kind == "builtin" or tuple(names) == builtin)

    def resolve(self, name: str) -> tuple[int, str]:
        """(index, how) for `name`; raises ValueError with the reason when it names no class."""
        text = name.strip()
        hits = self.by_label.get(_normal(text), set())
        if len(hits) == 1:  # a label first: a model whose classes are named "1", "2", "3"
            return next(iter(hits)), "label"
        if text.isascii() and text.isdigit():
            index = int(text)
            if index >= len(self.names):
                raise ValueError(f"class index {index} is out of range (the model has classes 0-{len(self.names) - 1})")
            return index, "index"
        if self.imagenet and WNID.match(text):
            if text not in self.wnids:
                raise ValueError("not an ImageNet-1k WordNet id")
            return self.wnids[text], "wnid"
        key = _normal(text)
        for table, how in ((self.by_label, "label"), (self.by_synonym, "synonym")):
            hits = table.get(key, set())
            if len(hits) == 1:
                return next(iter(hits)), how
            if len(hits) > 1:
                shown = " and ".join(str(i) for i in sorted(hits))
                raise ValueError(f"matches classes {shown}; name it by class index or WordNet id")
        nearest = self.nearest(text)
        raise ValueError(f"no such label (nearest: {nearest!r})" if nearest else "no such label")

    def nearest(self, text: str) -> str | None:
        keys = list(self.by_label) + list(self.by_synonym)
        close = difflib.get_close_matches(_normal(text), keys, n=1, cutoff=0.6)
        if not close:
            return None
        index = min(self.by_label.get(close[0]) or self.by_synonym[close[0]])
        return self.names[index]


def _refuse_unknown(where: str, unknown: list[tuple[str, str]], what: str) -> None:
    if not unknown:
        return
    shown = "; ".join(f"{printable(name)!r}: {reason}" for name, reason in unknown[:5])
    more = f"; and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    raise UsageError(
        f"{where}: {len(unknown)} {what} name no class of the model: {shown}{more} "
        "(name classes by label, class index or WordNet id)"
    )


def _mapping(names: list[str], classes: ClassNames, where: str, what: str) -> dict[str, tuple[int, str]]:
    resolved: dict[str, tuple[int, str]] = {}
    unknown: list[tuple[str, str]] = []
    for name in names:
        try:
            resolved[name] = classes.resolve(name)
        except ValueError as err:
            unknown.append((name, str(err)))
    _refuse_unknown(where, unknown, what)
    return resolved


def _entries(resolved: dict[str, tuple[int, str]], classes: ClassNames, counts: Counter) -> list[ClassEntry]:
    return [
        ClassEntry(name, index, classes.names[index], how, counts[name])
        for name, (index, how) in sorted(resolved.items(), key=lambda item: natural_key(item[0]))
    ]


def read_folders(root: Path, classes: ClassNames) -> Dataset:
    """ImageFolder: each subfolder of `root` is a class; hidden folders (.ipynb_checkpoints) are skipped."""
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: natural_key(e.name))
    except OSError as err:
        raise UsageError(f"{printable(str(root))}: cannot list folder: {(err.strerror or str(err)).lower()}") from None
    folders = [e for e in entries if not e.name.startswith(".") and e.is_dir()]
    ignored = [e.path for e in entries if not e.is_dir() and is_image_name(e.name)]
    if not folders:
        raise UsageError(f"{printable(str(root))}: no class folders in it; {LAYOUT_HINT}")
    _refuse_dataset_root(root, folders)
    resolved = _mapping([f.name for f in folders], classes, printable(str(root)), "folder(s)")
    samples = [
        Sample(path, resolved[folder.name][0], folder.name)
        for folder in folders
        for path in expand([folder.path], recursive=True)
    ]
    counts = Counter(s.name for s in samples)
    return Dataset(str(root), "folders", samples, _entries(resolved, classes, counts), ignored)


SPLITS = ("train", "val", "valid", "validation", "test")


def _refuse_dataset_root(root: Path, folders: list[os.DirEntry]) -> None:
    """DIR/train and DIR/val are splits, not classes: say which folder to give instead."""
    splits = [f.name for f in folders if f.name.lower() in SPLITS]
    if splits and len(splits) == len(folders):
        shown = " or ".join(printable(os.path.join(str(root), name)) for name in splits)
        raise UsageError(f"{printable(str(root))}: holds dataset splits, not class folders; give {shown}")


def _csv_rows(handle, where: str) -> Iterable[tuple[int, str, str]]:
    reader = csv.reader(handle)
    columns: tuple[int, int] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:  # the first row: a header when it names both columns
            lowered = [cell.strip().lower() for cell in row]
            columns = (0, 1)
            if "path" in lowered and "label" in lowered:
                columns = (lowered.index("path"), lowered.index("label"))
                continue
        if len(row) <= max(columns):
            raise UsageError(f"{where}, line {reader.line_num}: expected path,label")
        yield reader.line_num, row[columns[0]].strip(), row[columns[1]].strip()


def _jsonl_rows(handle, where: str) -> Iterable[tuple[int, str, str]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as err:
            raise UsageError(f"{where}, line {number}: not JSON: {err}") from None
        if not isinstance(item, dict) or "path" not in item or "label" not in item:
            raise UsageError(f'{where}, line {number}: expected {{"path": ..., "label": ...}}')
        path, label = item["path"], item["label"]
        if not isinstance(path, str) or isinstance(label, bool) or not isinstance(label, (str, int)):
            shown = json.dumps(path if not isinstance(path, str) else label)
            raise UsageError(f"{where}, line {number}: path must be a string and label a string or class index, "
                             f"not {shown}")  # fmt: skip
        yield number, path, str(label)


def read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line, path, label) rows of a CSV or JSONL list; relative paths joined to the list's folder, URLs kept."""
    layout = LIST_SUFFIXES[path.suffix.lower()]
    where = printable(str(path))
    rows_of = _csv_rows if layout == "csv" else _jsonl_rows
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # a BOM (Excel's "CSV UTF-8") is not text
            rows = list(rows_of(handle, where))
    except csv.Error as err:  # a NUL byte in a CSV
        raise UsageError(f"{where}: not a readable CSV list: {err}") from None
    except OSError as err:
        raise UsageError(f"{where}: cannot read list: {(err.strerror or str(err)).lower()}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{where}: list is not UTF-8 text") from None
    for number, image, label in rows:
        if not image or not label:
            raise UsageError(f"{where}, line {number}: empty path or label")
    base = path.parent
    return [(number, image if is_url(image) else os.path.join(base, image), label) for number, image, label in rows]


def read_list(path: Path, classes: ClassNames) -> Dataset:
    """A CSV or JSONL list of path,label; relative paths are relative to the list file's folder; http(s) URLs stay URLs."""
    rows = read_rows(path)
    where = printable(str(path))
    resolved = _mapping(sorted({label for _, _, label in rows}, key=natural_key), classes, where, "label(s)")
    samples = [Sample(image, resolved[label][0], label) for _, image, label in rows]
    counts = Counter(s.name for s in samples)
    return Dataset(str(path), LIST_SUFFIXES[path.suffix.lower()], samples, _entries(resolved, classes, counts))


def check_dataset(path: Path) -> None:
    """Before a model is loaded: the dataset exists and has a layout we read (UsageError if not)."""
    if path.is_dir():
        return
    if not path.exists():
        raise UsageError(f"{printable(str(path))}: no such file or directory")
    if path.suffix.lower() not in LIST_SUFFIXES:
        raise UsageError(f"{printable(str(path))}: not a folder or a .csv/.jsonl list; {LAYOUT_HINT}")


def read_dataset(path: Path, classes: ClassNames) -> Dataset:
    """The labelled images at `path` (a folder or a list), each with its class index."""
    check_dataset(path)
    dataset = read_folders(path, classes) if path.is_dir() else read_list(path, classes)
    if not dataset.samples:
        raise UsageError(f"{printable(str(path))}: no images in it; {LAYOUT_HINT}")
    return dataset
