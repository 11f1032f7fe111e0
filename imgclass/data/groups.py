"""Groups of classes for `groups=`: the shipped `coarse` groups, or a user's file or mapping.

A group file is JSON (or YAML when PyYAML is installed): `{"group": [members]}`, or the same
under a `"groups"` key (the layout of models/groups/coarse.json, so it can be copied and edited).
A member is one of the model's labels (exact, else case-insensitive), a class index, a class's
WordNet id, or the WordNet id of a hypernym, which takes every class under it
(models/groups/wordnet.json; WordNet ids need the ImageNet-1k classes). A class may be in
several groups. Classes in no group form the group `other` (joined to a group of that name
when the file has one); it is left out when empty.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from imgclass._util.resources import load_json
from imgclass._util.text import printable
from imgclass.data.labels import LabelSet
from imgclass.errors import UsageError
from imgclass.graph.ranking import Grouping

COARSE = "coarse"
OTHER = "other"
MAX_FILE_BYTES = 16 << 20
MAX_GROUPS = 10_000
WNID = re.compile(r"n\d{8}")


def resolve_groups(spec: Any, labels: LabelSet) -> Grouping:
    """A Grouping over `labels` from "coarse", a group file's path, a mapping group -> members, or a Grouping."""
    if isinstance(spec, Grouping):
        if max((max(m) for m in spec.members if m), default=-1) >= len(labels):
            raise UsageError(f"groups {printable(spec.source)}: a class index is beyond this model's {len(labels)}")
        return spec
    wnids = class_wnids(labels)
    if isinstance(spec, str) and spec == COARSE:
        if wnids is None:
            raise UsageError(
                f"the coarse groups are for the ImageNet-1k classes; this model's {len(labels)} classes come "
                f"from {printable(labels.source)}: give a group file instead"
            )
        return build(load_json("groups/coarse.json")["groups"], labels, wnids, COARSE)
    if isinstance(spec, Mapping):
        return build(spec, labels, wnids, "groups")
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        return build(read_groups_file(path), labels, wnids, str(path))
    raise UsageError(
        f"groups must be {COARSE!r}, a group file or a mapping group -> members, not {type(spec).__name__}"
    )


def class_wnids(labels: LabelSet) -> tuple[str, ...] | None:
    """The WordNet ids of the classes when they are ImageNet-1k's (built in, or the same names), else None."""
    data = load_json("imagenet1k_labels.json")
    if labels.kind == "builtin" or tuple(labels.names) == tuple(data["names"]):
        return tuple(data["wnids"])
    return None


def read_groups_file(path: Path) -> Any:
    """The parsed content of a JSON (or, with PyYAML installed, YAML) group file, size-checked first."""
    origin = printable(str(path))
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise UsageError(f"{origin}: the group file is not a regular file")
        if size > MAX_FILE_BYTES:
            raise UsageError(f"{origin}: the group file is {size} bytes, more than {MAX_FILE_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{origin}: cannot read the group file: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{origin}: the group file is not UTF-8 text") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return _parse_yaml(text, origin)
    try:
        return json.loads(text)
    except ValueError as err:
        raise UsageError(f"{origin}: the group file is not valid JSON: {err}") from None


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise UsageError(f"{origin}: YAML group files need PyYAML, which is not installed; write it as JSON") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"{origin}: the group file is not valid YAML: {err}") from None


def build(data: Any, labels: LabelSet, wnids: tuple[str, ...] | None, source: str) -> Grouping:
    """Resolve every member of every group to class indices; classes in no group go to `other`."""
    origin = printable(source)
    if isinstance(data, Mapping) and set(data) >= {"groups"} and isinstance(data["groups"], Mapping):
        data = data["groups"]
    if not isinstance(data, Mapping) or not data:
        raise UsageError(f"{origin}: groups must be a non-empty mapping of group name -> list of members")
    if len(data) > MAX_GROUPS:
        raise UsageError(f"{origin}: {len(data)} groups, more than {MAX_GROUPS}")
    finder = _Finder(labels, wnids, origin)
    names: list[str] = []
    members: list[tuple[int, ...]] = []
    for name, listed in data.items():
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"{origin}: a group name must be non-empty text, not {printable(repr(name))}")
        if isinstance(listed, (str, int)) or not isinstance(listed, Sequence) or not listed:
            raise UsageError(f"{origin}: group {printable(name)!r} must be a non-empty list of members")
        found = sorted({i for member in listed for i in finder.indices(member, name)})
        names.append(name)
        members.append(tuple(found))
    taken = {i for group in members for i in group}
    rest = tuple(i for i in range(len(labels)) if i not in taken)
    if rest and OTHER in names:
        at = names.index(OTHER)
        members[at] = tuple(sorted({*members[at], *rest}))
    elif rest:
        names.append(OTHER)
        members.append(rest)
    return Grouping(source, tuple(names), tuple(members))


class _Finder:
    """Class indices for one member: a label, an index, a class's WordNet id or a hypernym's."""

    def __init__(self, labels: LabelSet, wnids: tuple[str, ...] | None, origin: str):
        self.labels, self.wnids, self.origin = labels, wnids, origin
        self.by_label = {name: i for i, name in reversed(list(enumerate(labels.names)))}
        folded: dict[str, list[int]] = {}
        for i, name in enumerate(labels.names):
            folded.setdefault(name.casefold(), []).append(i)
        self.folded = folded
        self.by_wnid = {w: i for i, w in enumerate(wnids)} if wnids else {}

    def indices(self, member: Any, group: str) -> list[int]:
        where = f"{self.origin}: group {printable(group)!r}"
        if isinstance(member, bool) or not isinstance(member, (int, str)):
            raise UsageError(f"{where}: a member must be a label, a class index or a WordNet id, not {member!r}")
        if isinstance(member, int):
            if not 0 <= member < len(self.labels):
                raise UsageError(f"{where}: class index {member} is not in 0..{len(self.labels) - 1}")
            return [member]
        if member in self.by_label:
            return [self.by_label[member]]
        if WNID.fullmatch(member) and self.wnids is not None:
            if member in self.by_wnid:
                return [self.by_wnid[member]]
            under = [self.by_wnid[w] for w in hyponym_classes(member, self.wnids)]
            if under:
                return under
        if len(self.folded.get(member.casefold(), [])) == 1:
            return self.folded[member.casefold()]
        what = "label, class index or WordNet id" if self.wnids else "label or class index"
        raise UsageError(f"{where}: {printable(repr(member))} is no {what} of this model's classes")


def hyponym_classes(wnid: str, classes: tuple[str, ...]) -> list[str]:
    """The classes (WordNet ids) at or under `wnid` in the WordNet hypernym table."""
    return [w for w in classes if wnid in _ancestors(w)]


@cache
def _ancestors(wnid: str) -> frozenset[str]:
    synsets = load_json("groups/wordnet.json")["synsets"]
    found: set[str] = {wnid}
    stack = [wnid]
    while stack:
        for parent in synsets.get(stack.pop(), ("", []))[1]:
            if parent not in found:
                found.add(parent)
                stack.append(parent)
    return frozenset(found)
