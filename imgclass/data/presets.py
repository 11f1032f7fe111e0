"""Preprocessing presets as data, and how the one for a model is chosen.

Order of precedence: --preset, then a sidecar next to the model (MODEL.json of
our own, Hugging Face preprocessor_config.json, timm config.json), then ONNX
metadata, then detection from the graph signature, then the default. Fine-grained
overrides (--resize, --crop-pct, ...) apply on top of whatever was chosen.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclass._util.resources import load_json
from imgclass.errors import ConfigError, ImgclassError, UsageError, describe_os_error
from imgclass.graph import metadata as props
from imgclass.graph.signature import Signature

RESIZE_MODES = ("shorter", "squash", "central-fraction")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming", "area", "tf-bilinear")
METADATA_PRESET_KEY = props.PRESET
METADATA_PREPROCESS_KEY = props.PREPROCESS
_HF_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


@dataclass(frozen=True)
class Preset:
    name: str
    resize: str = "shorter"
    crop_pct: float = 0.875
    resize_rounding: str = "round"
    sizes: Mapping[int, int] = field(default_factory=dict)
    interpolation: str = "bilinear"
    crop_offset: str = "round"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    default_size: int = 224
    description: str = ""
    source: str = ""

    def resize_size(self, size: int) -> int:
        """Short side (mode 'shorter') or side ('squash') to resize to before cropping `size`."""
        if size in self.sizes:
            return self.sizes[size]
        value = size / self.crop_pct
        if not value < 1 << 31:  # a tiny crop_pct: huge (refused by the resize bounds), never an overflow
            return 1 << 31
        return math.floor(value + 1e-9) if self.resize_rounding == "floor" else math.floor(value + 0.5)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sizes"] = {str(k): v for k, v in self.sizes.items()}
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data


@dataclass(frozen=True)
class PresetChoice:
    preset: Preset
    source: str  # "flag", "sidecar <path>", "metadata", "detected (<why>)", "default"


def _validate(preset: Preset, origin: str, error: type[ImgclassError] = UsageError) -> Preset:
    problems = []
    if preset.resize not in RESIZE_MODES:
        problems.append(f"resize must be one of {', '.join(RESIZE_MODES)}")
    if preset.interpolation not in INTERPOLATIONS:
        problems.append(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
    if not 0 < preset.crop_pct <= 1.5:
        problems.append("crop_pct must be in (0, 1.5]")
    if len(preset.mean) != 3 or len(preset.std) != 3 or any(s == 0 for s in preset.std):
        problems.append("mean and std need 3 values each, std non-zero")
    elif not all(math.isfinite(v) for v in (*preset.mean, *preset.std, preset.scale)):
        problems.append("mean, std and scale must be finite numbers (not NaN or infinity)")
    if preset.channel_order not in ("RGB", "BGR"):
        problems.append("channel_order must be RGB or BGR")
    if problems:
        raise error(f"{origin}: bad preprocessing: {'; '.join(problems)}")
    return preset


PRESET_FIELDS = tuple(f.name for f in dataclasses.fields(Preset))


def check_keys(record: Mapping[str, Any], allowed: Sequence[str], origin: str) -> None:
    """Strict config: an unknown key is an error naming it and the nearest valid one."""
    for key in record:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(allowed)}"
            raise ConfigError(f"{origin}: unknown key {str(key)!r}{hint}")


def _from_record(
    name: str,
    record: Mapping[str, Any],
    base: Preset | None = None,
    origin: str = "",
    error: type[ImgclassError] = UsageError,
) -> Preset:
    values = {k: v for k, v in record.items() if k in PRESET_FIELDS and k != "name"}
    try:
        if "sizes" in values:
            values["sizes"] = {int(k): int(v) for k, v in values["sizes"].items()}
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        for key in ("crop_pct", "scale"):
            if key in values:
                values[key] = float(values[key])
        if "default_size" in values:
            values["default_size"] = int(values["default_size"])
    except (TypeError, ValueError, AttributeError):
        raise error(f"{origin or name}: bad preprocessing values: {dict(record)}") from None
    preset = dataclasses.replace(base, name=name, **values) if base else Preset(name=name, **values)
    return _validate(preset, origin or name, error)


def builtin_presets() -> dict[str, Preset]:
    data = load_json("presets.json")
    return {name: _from_record(name, rec) for name, rec in data["presets"].items()}


def get_preset(name: str, origin: str = "«preset»", error: type[ImgclassError] = UsageError) -> Preset:
    presets = builtin_presets()
    if name not in presets:
        raise error(f"{origin}: unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return presets[name]


# --- sidecars --------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: unreadable sidecar: {describe_os_error(err)}") from None
    except ValueError as err:
        raise ConfigError(f"{path}: sidecar is not valid JSON ({err})") from None


SIDECAR_KEYS = ("preset", "labels", *(f for f in PRESET_FIELDS if f not in ("name", "description", "source")))


def _own_sidecar(record: Any, origin: str) -> Preset | None:
    """MODEL.json: {"preset": NAME or {fields}, ...field overrides}; unknown keys are errors."""
    if not isinstance(record, Mapping):
        raise ConfigError(f"{origin}: expected a JSON object")
    check_keys(record, SIDECAR_KEYS, origin)
    base_name = record.get("preset")
    overrides = {k: v for k, v in record.items() if k not in ("preset", "labels")}
    if isinstance(base_name, Mapping):
        check_keys(base_name, PRESET_FIELDS, f"{origin} preset")
        overrides = {**base_name, **overrides}
        base_name = base_name.get("name")
    base = get_preset(base_name, origin, ConfigError) if isinstance(base_name, str) else None
    if base is not None:  # a record that restates a built-in preset's values keeps its name
        overrides = {k: v for k, v in overrides.items() if k == "name" or not _restates(base, k, v, origin)}
        overrides.pop("name", None)
    if "crop_pct" in overrides and "sizes" not in overrides:  # crop_pct takes effect over a preset's sizes table
        overrides["sizes"] = {}
    if base is None and not overrides:
        return None
    name = base.name if base and not overrides else (base.name + "+sidecar" if base else "sidecar")
    return _from_record(name, overrides, base=base or Preset(name=name), origin=origin, error=ConfigError)


def _restates(base: Preset, key: str, value: Any, origin: str) -> bool:
    """Whether `key: value` is what `base` has already (a full preset record written by imgclass itself)."""
    try:
        return _from_record(base.name, {key: value}, base=base, origin=origin, error=ConfigError) == base
    except ConfigError:
        return False


def preset_from_hf(cfg: Mapping[str, Any], origin: str) -> Preset:
    """Translate a Hugging Face preprocessor_config.json into a Preset (ConfigError when malformed)."""
    try:
        return _hf(cfg, origin)
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as err:
        raise ConfigError(f"{origin}: malformed preprocessor_config.json ({type(err).__name__}: {err})") from None


def _hf(cfg: Mapping[str, Any], origin: str) -> Preset:
    size = cfg.get("size") or {"shortest_edge": 224}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    crop = cfg.get("crop_size") or {}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    values: dict[str, Any] = {
        "interpolation": _HF_RESAMPLE.get(int(cfg.get("resample", 2)), "bilinear"),
        "scale": float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
        "mean": tuple(cfg.get("image_mean", (0.485, 0.456, 0.406))) if cfg.get("do_normalize", True) else (0.0,) * 3,
        "std": tuple(cfg.get("image_std", (0.229, 0.224, 0.225))) if cfg.get("do_normalize", True) else (1.0,) * 3,
        "crop_offset": "floor",
        "resize_rounding": "floor",
        "source": origin,
    }
    if "shortest_edge" in size and "crop_pct" in cfg:  # ConvNextImageProcessor (microsoft/resnet-*)
        edge = int(size["shortest_edge"])
        if edge < 384:
            values.update(resize="shorter", crop_pct=float(cfg["crop_pct"] or 0.875), default_size=edge)
        else:
            values.update(resize="squash", crop_pct=1.0, default_size=edge)
    elif "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        target = int(crop.get("height", edge)) if cfg.get("do_center_crop", bool(crop)) else edge
        values.update(resize="shorter", crop_pct=target / edge, sizes={target: edge}, default_size=target)
    else:
        height = int(size.get("height", 224))
        target = int(crop.get("height", height)) if cfg.get("do_center_crop", False) else height
        values.update(resize="squash", crop_pct=target / height, sizes={target: height}, default_size=target)
    return _from_record("hf-preprocessor", values, origin=origin, error=ConfigError)


def preset_from_timm(cfg: Mapping[str, Any], origin: str) -> Preset:
    """Translate timm's pretrained_cfg (config.json) into a Preset (ConfigError when malformed)."""
    try:
        return _timm(cfg, origin)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise ConfigError(f"{origin}: malformed pretrained_cfg ({type(err).__name__}: {err})") from None


def _timm(cfg: Mapping[str, Any], origin: str) -> Preset:
    input_size = cfg.get("input_size") or cfg.get("test_input_size") or (3, 224, 224)
    mode = cfg.get("crop_mode", "center")
    if mode not in ("center", "squash"):
        raise ConfigError(f"{origin}: timm crop_mode {mode!r} is not supported; pass «preset» or overrides")
    values = {
        "resize": "shorter" if mode == "center" else "squash",
        "crop_pct": float(cfg.get("crop_pct") or 0.875),
        "resize_rounding": "floor",
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_offset": "round",
        "mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        "default_size": int(input_size[-1]),
        "source": origin,
    }
    return _from_record("timm-pretrained-cfg", values, origin=origin, error=ConfigError)


def sidecar_preset(model_path: Path) -> PresetChoice | None:
    """The preset a sidecar file next to the model describes, if any."""
    own = model_path.with_suffix(".json")
    if own.is_file():
        preset = _own_sidecar(_read_json(own), str(own))
        if preset:
            return PresetChoice(preset, f"sidecar {own}")
    hf = model_path.parent / "preprocessor_config.json"
    if hf.is_file():
        return PresetChoice(preset_from_hf(_read_json(hf), str(hf)), f"sidecar {hf}")
    timm_cfg = model_path.parent / "config.json"
    if timm_cfg.is_file():
        cfg = _read_json(timm_cfg)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("pretrained_cfg"), Mapping):
            return PresetChoice(preset_from_timm(cfg["pretrained_cfg"], str(timm_cfg)), f"sidecar {timm_cfg}")
    return None


def metadata_preset(signature: Signature, origin: str) -> PresetChoice | None:
    meta = signature.metadata
    if METADATA_PREPROCESS_KEY in meta:
        try:
            record = json.loads(meta[METADATA_PREPROCESS_KEY])
        except ValueError:
            raise ConfigError(f"{origin}: metadata {METADATA_PREPROCESS_KEY} is not JSON") from None
        preset = _own_sidecar(record, f"{origin} metadata")
        if preset:
            return PresetChoice(preset, "metadata")
    if METADATA_PRESET_KEY in meta:
        return PresetChoice(
            get_preset(meta[METADATA_PRESET_KEY], f"{origin} metadata {METADATA_PRESET_KEY}", ConfigError), "metadata"
        )
    return None


def detect_preset(signature: Signature) -> PresetChoice:
    data = load_json("presets.json")
    facts = {
        "input_name": signature.input_name,
        "layout": signature.layout,
        "classes": signature.classes,
        "size": signature.size,
        "softmax": signature.softmax,
        "transform_input": signature.transform_input,
    }
    for rule in data["detect"]:
        if all(facts.get(key) == value for key, value in rule["when"].items()):
            return PresetChoice(get_preset(rule["preset"]), f"detected ({rule['why']})")
    return PresetChoice(get_preset(data["default"]), "default")


def choose_preset(model_path: Path, signature: Signature, flag: str | None, catalog: str | None = None) -> PresetChoice:
    if flag:
        return PresetChoice(get_preset(flag), "flag")
    if catalog:
        return PresetChoice(get_preset(catalog, "catalog", ConfigError), "catalog")
    return sidecar_preset(model_path) or metadata_preset(signature, str(model_path)) or detect_preset(signature)


@dataclass(frozen=True)
class Overrides:
    size: int | None = None
    resize: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    bgr: bool = False

    def apply(self, preset: Preset, size: int) -> Preset:
        changes: dict[str, Any] = {}
        if self.crop_pct is not None:
            changes["crop_pct"] = self.crop_pct
            changes["sizes"] = {}
        if self.resize is not None:
            changes["sizes"] = {size: self.resize}
        for key in ("interpolation", "mean", "std"):
            if getattr(self, key) is not None:
                changes[key] = getattr(self, key)
        if self.bgr:
            changes["channel_order"] = "BGR"
        if not changes:
            return preset
        label = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(changes.items()) if k != "sizes" or self.resize)
        return _from_record(f"{preset.name}+{label}", changes, base=preset, origin="overrides")


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "/".join(str(v) for v in value.values())
    if isinstance(value, tuple):
        return "/".join(f"{v:g}" for v in value)
    return str(value)
