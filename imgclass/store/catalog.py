"""The model catalog (models/catalog.json, shipped in the package): names, aliases, checksums."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgclass._util.resources import load_json


@dataclass(frozen=True)
class Entry:
    name: str
    aliases: tuple[str, ...]
    family: str
    file: str
    urls: tuple[str, ...]
    sha256: str
    size: int
    preset: str
    labels: str
    license: str
    source: str
    accuracy: dict[str, Any]
    precision: str = "fp32"  # "int8" for a quantised file
    quantized_from: str | None = None  # the catalog's float32 model an int8 file was made from

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "family": self.family,
            "file": self.file,
            "urls": list(self.urls),
            "sha256": self.sha256,
            "size": self.size,
            "preset": self.preset,
            "labels": self.labels,
            "license": self.license,
            "source": self.source,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "quantized_from": self.quantized_from,
        }


def entries() -> list[Entry]:
    fields = Entry.__dataclass_fields__
    return [
        Entry(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in fields})  # type: ignore[arg-type]
        for raw in load_json("catalog.json")["models"]
    ]


def default_model() -> str:
    data = load_json("catalog.json")
    entry = find(data["default"])
    return entry.aliases[0] if entry and entry.aliases else data["default"]


def find(name: str) -> Entry | None:
    """The entry whose name or alias is `name` (case-sensitive names, case-insensitive aliases)."""
    for entry in entries():
        if name == entry.name or name.lower() in (a.lower() for a in entry.aliases):
            return entry
    return None


def by_sha256(sha256: str) -> Entry | None:
    return next((e for e in entries() if e.sha256 == sha256), None)
