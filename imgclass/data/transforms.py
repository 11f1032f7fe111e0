"""Turn an RGB Pillow image into the tensor a model expects, following a Preset.

Geometry (resize, crop) first, then the pixel transform (x * scale - mean) / std
through a per-channel lookup table, channel order, layout and dtype. Each
resampling rule reproduces its framework's own code: Pillow filters for
torchvision / timm / Keras / Hugging Face, OpenCV's INTER_AREA for MLPerf, and
TensorFlow's legacy resize_bilinear for TF-slim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgclass.data.images import DRAFT_INFO
from imgclass.data.presets import Preset
from imgclass.errors import ImgclassError, InputError

# Bounds on what a resize may make, checked before any resize: a side, the pixels (a
# float32 copy of that many pixels is 192 MiB) and the aspect ratio of the resized image.
MAX_RESIZED_SIDE = 65536  # a 2000x10 banner resizes to 51200x256: kept
MAX_RESIZED_PIXELS = 1 << 24
MAX_ASPECT_RATIO = 256

# Resizes that pick pixels instead of averaging them: never fed a draft (reduced-scale) decode.
_SAMPLING = ("nearest", "tf-bilinear")
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Transform:
    """A preset bound to one model input: call it on an RGB image to get one sample."""

    preset: Preset
    height: int
    width: int
    layout: str = "NCHW"
    dtype: str = "float32"
    # There is no crop-aware resize: Pillow holds `box=` as float32, which moved up to a third
    # of the pixels of ordinary photos by one grey level, and Pillow 13 picks the order of its
    # two resize passes by the scale factors, so no crop-aware shortcut stays bit-exact.

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        if self.layout == "NCHW":
            return (3, self.height, self.width)
        return (self.height, self.width, 3)

    @property
    def min_decode_side(self) -> int | None:
        """Draft decoding must keep the short side at least twice what the resize needs.

        None (decode in full) for resizes that sample pixels without averaging them
        (nearest, TF's legacy bilinear): a reduced-scale decode has already averaged
        blocks of pixels, so it cannot give what those rules pick from the full image.
        """
        p = self.preset
        if p.interpolation in _SAMPLING:
            return None
        need = min(self.height, self.width)
        if p.resize == "central-fraction":
            need = int(np.ceil(need / p.crop_pct))
        else:
            need = p.resize_size(need)
        return 2 * need

    def __call__(self, img: Image.Image, out: np.ndarray | None = None) -> np.ndarray:
        return self.finish(self.geometry(img), out)

    def finish(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The pixel transform of one (height, width, 3) crop: channel order, dtype, normalisation, layout."""
        if self.preset.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        if self.dtype == "uint8":
            result = np.clip(np.rint(pixels), 0, 255).astype(np.uint8) if pixels.dtype != np.uint8 else pixels
        else:
            result = self._normalise(pixels)
        if self.layout == "NCHW":
            result = result.transpose(2, 0, 1)
        if out is None:
            return np.ascontiguousarray(result, dtype=np.dtype(self.dtype))
        out[...] = result
        return out

    # --- geometry ----------------------------------------------------------------------

    def geometry(self, img: Image.Image) -> np.ndarray:
        """Resize and crop to (height, width, 3): uint8, or float32 for TF's float resize."""
        p = self.preset
        # A draft decode: sizes follow the full image, and the resize reads exactly its extent.
        w, h, box = img.info.get(DRAFT_INFO) or (img.width, img.height, None)
        if p.resize == "central-fraction":
            arr = np.asarray(_within(img, box), dtype=np.float32)
            arr = tf_central_crop(arr, p.crop_pct)
            return resize_array(arr, self.width, self.height, p.interpolation)
        return center_crop(self.resized(img), self.height, self.width, p.crop_offset)

    def check_bounds(self, error: type[ImgclassError]) -> None:
        """Raise `error` when the input, or the resize of a photo of the input's own shape, is over the bounds.

        The smallest resize any photo can need: a preset (or options) that already breaks the
        bounds for it would break them for every photo.
        """
        if max(self.height, self.width) > MAX_RESIZED_SIDE or self.height * self.width > MAX_RESIZED_PIXELS:
            raise error(f"an input of {self.width}x{self.height} is over the limit of {MAX_RESIZED_PIXELS} pixels")
        new_w, new_h = self._target(self.width, self.height)
        problem = _over_bounds(new_w, new_h, check_aspect=False)
        if problem:
            raise error(f"preprocessing {self.preset.name!r} resizes every image to at least {problem}")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the whole image after the resize that the crop is taken from.

        InputError when that is over the bounds (a thin image whose short side is scaled up).
        """
        new_w, new_h = self._target(width, height)
        problem = _over_bounds(new_w, new_h)
        if problem:
            raise InputError(f"a {width}x{height} image would be resized to {problem}")
        return new_w, new_h

    def _target(self, width: int, height: int) -> tuple[int, int]:
        p = self.preset
        if p.resize == "central-fraction":  # the whole image at the scale that makes its central fraction the input
            return max(round(self.width / p.crop_pct), 1), max(round(self.height / p.crop_pct), 1)
        if p.resize == "squash":
            return p.resize_size(self.width), p.resize_size(self.height)
        short = p.resize_size(min(self.height, self.width))
        if width <= height:
            return short, max(int(short * height / width), 1)
        return max(int(short * width / height), 1), short

    def resized(self, img: Image.Image) -> np.ndarray:
        """The whole image resized: what `geometry` centre-crops (and test-time augmentation crops).

        For central-fraction presets (which crop first, then resize) this is the whole image at
        the scale that makes its central fraction the model's input: float32, like their geometry.
        """
        p = self.preset
        w, h, box = img.info.get(DRAFT_INFO) or (img.width, img.height, None)
        new_w, new_h = self.resized_size(w, h)
        if p.resize == "central-fraction":
            return resize_array(np.asarray(_within(img, box), dtype=np.float32), new_w, new_h, p.interpolation)
        return resize_image(img, new_w, new_h, p.interpolation, box)

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        p = self.preset
        order = slice(None, None, -1) if p.channel_order == "BGR" else slice(None)
        mean = np.asarray(p.mean, dtype=np.float64)[order]
        std = np.asarray(p.std, dtype=np.float64)[order]
        if pixels.dtype == np.uint8:
            lut = ((np.arange(256, dtype=np.float64)[:, None] * p.scale - mean) / std).astype(np.float32)
            return np.stack([lut[pixels[..., c], c] for c in range(3)], axis=-1)
        scale = np.float32(p.scale)
        return ((pixels * scale - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)


def _over_bounds(width: int, height: int, check_aspect: bool = True) -> str | None:
    """What is over the resize bounds in a width x height result, or None."""
    if max(width, height) > MAX_RESIZED_SIDE:
        return f"{width}x{height}, over the limit of {MAX_RESIZED_SIDE} pixels a side"
    if width * height > MAX_RESIZED_PIXELS:
        return f"{width}x{height} = {width * height} pixels, over the limit of {MAX_RESIZED_PIXELS}"
    if check_aspect and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return f"{width}x{height}, an aspect ratio over the limit of {MAX_ASPECT_RATIO}:1"
    return None


def crop_offsets(h: int, w: int, height: int, width: int, rounding: str) -> tuple[int, int]:
    """Top-left of a centred crop: 'round' is torchvision's int(round(...)), 'floor' MLPerf's / HF's."""
    if rounding == "round":
        return int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return (h - height) // 2, (w - width) // 2


def _within(img: Image.Image, box: tuple | None) -> Image.Image:
    """The part of a draft-decoded image that `box` covers, to the nearest whole pixel."""
    if box is None:
        return img
    return img.crop(tuple(round(v) for v in box))


def resize_image(img: Image.Image, width: int, height: int, interpolation: str, box: tuple | None = None) -> np.ndarray:
    """Resize an RGB image (or its `box`, in pixels) to (height, width, 3) uint8 with the named rule."""
    if interpolation in _PIL_FILTERS:
        if box is None and img.size == (width, height):
            return np.asarray(img)
        return np.asarray(img.resize((width, height), _PIL_FILTERS[interpolation], box=box))
    out = resize_array(np.asarray(img).astype(np.float32), width, height, interpolation, box)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_array(arr: np.ndarray, width: int, height: int, interpolation: str, box: tuple | None = None) -> np.ndarray:
    """Float resize for the rules Pillow does not have: 'area' and 'tf-bilinear'.

    `box` (x0, y0, x1, y1), in pixels, is the part of `arr` to resize (a draft decode's
    extent): exact for 'area' downscaling, to the nearest whole pixel otherwise.
    """
    downscale = arr.shape[0] >= height and arr.shape[1] >= width
    if box is not None and not (interpolation == "area" and downscale):
        x0, y0, x1, y1 = (round(v) for v in box)
        arr, box, downscale = arr[y0:y1, x0:x1], None, y1 - y0 >= height and x1 - x0 >= width
    if interpolation == "tf-bilinear":
        return _tf_legacy_bilinear(arr, height, width)
    if interpolation == "area":
        if not downscale:
            # OpenCV's INTER_AREA upsamples like INTER_LINEAR (half-pixel centres).
            return _linear_half_pixel(arr, height, width)
        x0, y0, x1, y1 = box or (0, 0, arr.shape[1], arr.shape[0])
        return _area_axis(_area_axis(arr, height, 0, y0, y1), width, 1, x0, x1)
    if interpolation in _PIL_FILTERS:
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
        return np.asarray(img.resize((width, height), _PIL_FILTERS[interpolation]), dtype=np.float32)
    raise ValueError(f"unknown interpolation {interpolation!r}")


def center_crop(arr: np.ndarray, height: int, width: int, rounding: str = "round") -> np.ndarray:
    """Crop the centre; 'round' is torchvision's int(round(...)), 'floor' MLPerf's / HF's."""
    h, w = arr.shape[:2]
    if h < height or w < width:
        pad_h, pad_w = max(height - h, 0), max(width - w, 0)
        arr = np.pad(arr, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        h, w = arr.shape[:2]
    top, left = crop_offsets(h, w, height, width, rounding)
    return arr[top : top + height, left : left + width]


def tf_central_crop(arr: np.ndarray, fraction: float) -> np.ndarray:
    """tf.image.central_crop with a static shape."""
    if fraction >= 1.0:
        return arr
    h, w = arr.shape[:2]
    top = int((h - h * fraction) / 2)
    left = int((w - w * fraction) / 2)
    return arr[top : h - top, left : w - left]


def _tf_legacy_bilinear(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """tf.compat.v1.image.resize_bilinear(align_corners=False, half_pixel_centers=False)."""
    in_h, in_w = arr.shape[:2]
    ys = np.arange(height, dtype=np.float32) * np.float32(in_h / height)
    xs = np.arange(width, dtype=np.float32) * np.float32(in_w / width)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, in_h - 1)
    x1 = np.minimum(x0 + 1, in_w - 1)
    dy = (ys - y0)[:, None, None].astype(np.float32)
    dx = (xs - x0)[None, :, None].astype(np.float32)
    a = arr.astype(np.float32)
    top_left, top_right = a[y0][:, x0], a[y0][:, x1]
    bottom_left, bottom_right = a[y1][:, x0], a[y1][:, x1]
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy


def _area_axis(arr: np.ndarray, out_len: int, axis: int, start: float = 0, stop: float | None = None) -> np.ndarray:
    """OpenCV INTER_AREA along one axis: each output cell is the overlap-weighted mean of its inputs.

    [start, stop) is the stretch of the axis to resize, in pixels (default: all of it).
    """
    in_len = arr.shape[axis]
    stop = in_len if stop is None else stop
    if in_len == out_len and (start, stop) == (0, in_len):
        return arr.astype(np.float32)
    data = np.moveaxis(arr.astype(np.float64), axis, 0)
    prefix = np.concatenate([np.zeros((1,) + data.shape[1:]), np.cumsum(data, axis=0)])
    scale = (stop - start) / out_len
    edges = np.minimum(start + np.arange(out_len + 1) * scale, in_len)

    def integral(x: np.ndarray) -> np.ndarray:
        whole = np.floor(x).astype(np.int64)
        frac = (x - whole).reshape((-1,) + (1,) * (data.ndim - 1))
        idx = np.minimum(whole, in_len - 1)
        return prefix[whole] + frac * data[idx] * (whole < in_len).reshape(frac.shape)

    sums = integral(edges[1:]) - integral(edges[:-1])
    widths = (edges[1:] - edges[:-1]).reshape((-1,) + (1,) * (data.ndim - 1))
    return np.moveaxis((sums / widths).astype(np.float32), 0, axis)


def _linear_half_pixel(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    in_h, in_w = arr.shape[:2]

    def coords(out_len: int, in_len: int):
        src = (np.arange(out_len) + 0.5) * (in_len / out_len) - 0.5
        src = np.clip(src, 0, in_len - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, in_len - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, dy = coords(height, in_h)
    x0, x1, dx = coords(width, in_w)
    a = arr.astype(np.float32)
    rows = a[y0] * (1 - dy)[:, None, None] + a[y1] * dy[:, None, None]
    return rows[:, x0] * (1 - dx)[None, :, None] + rows[:, x1] * dx[None, :, None]
