"""Open an image file and return it as an 8-bit RGB Pillow image.

Handles EXIF orientation, every common mode (RGBA/LA/P with transparency, L, 1,
I;16, I, F, CMYK, YCbCr), the first frame of animated or multi-page files, a
pixel limit against decompression bombs, and JPEG draft decoding at a reduced
scale that keeps a reducing gap of at least 2 over the resize target.
"""

from __future__ import annotations

import glob
import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgclass._util.text import display_path as display_path
from imgclass.errors import InputError

# Transparent pixels are composited on white: what an image viewer shows, and
# the background product photos with an alpha channel are made for.
BACKGROUND = (255, 255, 255)
ORIENTATION = 0x0112
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

# Pillow's own bomb check stays on: it is what refuses an image nested inside a file
# (an ICO's PNG, a GIF frame) before it is decoded. `_decode` sets its limit from the
# run's --max-pixels; the warning it gives below that limit says nothing we act on.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
HIGH_DEPTH_SLICE = 1 << 20  # pixels converted at a time from 16/32-bit to 8-bit

# A draft-decoded image carries (full width, full height, box) under this key of its `info`:
# the size of the whole image and the box, in the decoded pixels, that the whole image covers.
# libjpeg rounds a reduced size up, so the last row or column may stand for part of a block;
# resizing from `box` to a size worked out from the full size keeps the geometry exact.
DRAFT_INFO = "imgclass.draft"
# ImageOps.exif_transpose's moves, per EXIF orientation: mirror x, mirror y, then swap the axes.
_FLIP_X, _FLIP_Y, _SWAP = {2, 3, 7, 8}, {3, 4, 6, 7}, {5, 6, 7, 8}


@dataclass(frozen=True)
class DecodeOptions:
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    allow_truncated: bool = False
    # Smallest short side the decoded image may have, or None for a full decode.
    # Set from the preset: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale while its
    # short side stays at least this big.
    draft_min_short_side: int | None = None


def load_rgb(path: str | os.PathLike, options: DecodeOptions = DecodeOptions()) -> Image.Image:
    """Decode `path` to an RGB image, or raise InputError with a one-line reason."""
    name = display_path(path)
    handle = _open_regular(path, name)
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise InputError(f"{name}: empty file")
        return _decode_or_explain(handle, name, options)


def decode_rgb(data: bytes, name: str, options: DecodeOptions = DecodeOptions()) -> Image.Image:
    """Decode an image's bytes (read from an object store, say) like `load_rgb` decodes a file."""
    if not data:
        raise InputError(f"{name}: empty file")
    return _decode_or_explain(io.BytesIO(data), name, options)


def _decode_or_explain(handle, name: str, options: DecodeOptions) -> Image.Image:
    try:
        return _decode(handle, name, options)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image Pillow can read") from None
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{found.group(1)} pixels" if found else "an image in this file"
        raise InputError(
            f"{name}: {size} is over the limit of {options.max_pixels} pixels "
            "(possible decompression bomb; raise it with «max-pixels»)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as err:
        reason = str(err) or type(err).__name__
        if "truncated" in reason:
            reason += " (pass «allow-truncated» to classify what is there)"
        raise InputError(f"{name}: cannot decode image: {reason}") from None


def _open_regular(path: str | os.PathLike, name: str):
    """Open a regular file for reading; FIFOs, sockets and devices are refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if glob.has_magic(os.fsdecode(path)):
            raise InputError(f"{name}: no file matches this pattern") from None
        raise InputError(f"{name}: no such file (or a broken symlink)") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not an image") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as err:
        raise InputError(f"{name}: cannot read file: {(err.strerror or str(err)).lower()}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise InputError(f"{name}: is {kind}, not an image file")
    return os.fdopen(fd, "rb")


def _decode(handle, name: str, options: DecodeOptions) -> Image.Image:
    # One policy for the whole run, so setting Pillow's globals here is safe. Pillow
    # refuses above twice its limit: half of ours makes it refuse exactly above ours.
    Image.MAX_IMAGE_PIXELS = options.max_pixels / 2 if options.max_pixels else None  # type: ignore[assignment]
    with Image.open(handle) as img:
        width, height = img.size
        if width < 1 or height < 1:
            raise InputError(f"{name}: image has no pixels ({width}x{height})")
        if options.max_pixels and width * height > options.max_pixels:
            raise InputError(
                f"{name}: {width}x{height} = {width * height} pixels is over the limit of "
                f"{options.max_pixels} (possible decompression bomb; raise it with «max-pixels»)"
            )
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        draft = None
        if options.draft_min_short_side and img.format == "JPEG":
            draft = _draft(img, options.draft_min_short_side)
        # One policy for the whole run, so setting Pillow's global here is safe.
        ImageFile.LOAD_TRUNCATED_IMAGES = options.allow_truncated
        img.load()
        orientation = img.getexif().get(ORIENTATION, 1)
        if orientation != 1:
            if draft:
                draft = _orient(draft, orientation, img.size)
            img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
        if draft:
            rgb.info[DRAFT_INFO] = draft
        return rgb


def _draft(img: Image.Image, min_short_side: int) -> tuple | None:
    """Ask libjpeg for the smallest DCT scale whose short side stays >= min_short_side.

    Returns the DRAFT_INFO record when the image will be decoded reduced, else None.
    """
    width, height = img.size
    short = min(width, height)
    if short < 2 * min_short_side:
        return None
    factor = short / min_short_side
    answer = img.draft(img.mode, (int(np.ceil(width / factor)), int(np.ceil(height / factor))))
    if answer is None or img.size == (width, height):
        return None
    return (width, height, tuple(float(v) for v in answer[1]))


def _orient(draft: tuple, orientation: int, size: tuple[int, int]) -> tuple:
    """The DRAFT_INFO record after exif_transpose moved the pixels of an image of `size`."""
    full_w, full_h, (x0, y0, x1, y1) = draft
    width, height = size
    if orientation in _FLIP_X:
        x0, x1 = width - x1, width - x0
    if orientation in _FLIP_Y:
        y0, y1 = height - y1, height - y0
    if orientation in _SWAP:
        return (full_h, full_w, (y0, x0, y1, x1))
    return (full_w, full_h, (x0, y0, x1, y1))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency on BACKGROUND."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_8bit(img)).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("L", "1") and "transparency" in img.info:
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _slices(img: Image.Image, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    width, height = img.size
    for start in range(0, height, rows):
        yield start, np.asarray(img.crop((0, start, width, min(height, start + rows))))


def _high_depth_to_8bit(img: Image.Image) -> np.ndarray:
    """16-bit and 32-bit greyscale to 8 bits, keeping the full range (not clipping at 255).

    Converted a slice of rows at a time, in place, so the temporaries stay small: memory
    is the image, its 8-bit copy and one slice, never a float64 copy of the whole image.
    """
    width, height = img.size
    out = np.empty((height, width), np.uint8)
    rows = max(1, HIGH_DEPTH_SLICE // max(1, width))
    scale, divisor = 255.0, 1
    if img.mode == "F":
        top = max((float(p[np.isfinite(p)].max(initial=0.0)) for _, p in _slices(img, rows)), default=0.0)
        scale = 255.0 / top if top > 1.0 else 255.0
    elif img.mode.startswith("I;16") or img.getextrema()[1] > 255:  # type: ignore[operator]
        divisor = 257
    for start, part in _slices(img, rows):
        if img.mode == "F":
            work = part.astype(np.float32)
            work *= scale
            np.nan_to_num(work, copy=False, nan=0.0)
            np.rint(work, out=work)
        else:
            work = part.astype(np.int32 if part.dtype.itemsize < 4 else np.int64)
            if divisor != 1:
                work += 128  # round(x / 257) for integers: 257 is odd, so there are no ties
                work //= divisor
        np.clip(work, 0, 255, out=work)
        out[start : start + len(work)] = work
    return out
