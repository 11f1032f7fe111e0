"""Decoding odd and broken images to RGB."""

import os
import random

import numpy as np
import pytest
from PIL import Image

from imgclass.data.images import BACKGROUND, DecodeOptions, display_path, load_rgb
from imgclass.errors import InputError


def save(img, path, **kw):
    img.save(path, **kw)
    return path


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (40, 30)
    r, g, b = out.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60  # cyan ink 0, magenta + yellow full: red


def test_16bit_greyscale_keeps_full_range(tmp_path):
    arr = np.full((20, 20), 65535, np.uint16)
    arr[:, :10] = 32896  # half range
    path = save(Image.fromarray(arr), tmp_path / "g16.png")
    out = np.asarray(load_rgb(path))
    assert out[0, 15].tolist() == [255, 255, 255]
    assert out[0, 5].tolist() == [128, 128, 128]


def test_8bit_greyscale_and_bilevel(tmp_path):
    out = np.asarray(load_rgb(save(Image.new("L", (5, 5), 77), tmp_path / "g.png")))
    assert out[2, 2].tolist() == [77, 77, 77]
    out = np.asarray(load_rgb(save(Image.new("1", (5, 5), 1), tmp_path / "b.png")))
    assert out[2, 2].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_the_background(tmp_path, mode):
    img = Image.new(mode, (4, 4), (0, 0) if mode == "LA" else (0, 0, 0, 0))
    img.putpixel((0, 0), (200, 255) if mode == "LA" else (200, 10, 10, 255))
    out = np.asarray(load_rgb(save(img, tmp_path / f"{mode}.png")))
    assert out[3, 3].tolist() == list(BACKGROUND)  # fully transparent
    assert out[0, 0].tolist() == ([200] * 3 if mode == "LA" else [200, 10, 10])


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    path = save(img, tmp_path / "p.png", transparency=0)
    out = np.asarray(load_rgb(path))
    assert out[0, 0].tolist() == list(BACKGROUND)
    assert out[1, 1].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when shown
    out = load_rgb(save(img, tmp_path / "rot.jpg", exif=exif, quality=95))
    assert out.size == (20, 60)
    top = np.asarray(out)[2, 10]
    assert top[0] > 200 and top[2] < 60  # the left strip is now on top


def test_first_frame_of_animated_gif_and_multipage_tiff(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    assert np.asarray(load_rgb(gif))[4, 4].tolist() == [255, 0, 0]
    tif = tmp_path / "pages.tiff"
    frames[1].save(tif, save_all=True, append_images=[frames[0]])
    assert np.asarray(load_rgb(tif))[4, 4].tolist() == [0, 255, 0]


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "PNG"])
def test_other_formats(tmp_path, fmt):
    path = save(
        Image.new("RGB", (9, 7), (1, 2, 3)),
        tmp_path / f"x.{fmt.lower()}",
        format=fmt,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    assert np.asarray(load_rgb(path))[3, 3].tolist() == [1, 2, 3]


def test_one_pixel_and_extreme_aspect(tmp_path):
    assert load_rgb(save(Image.new("RGB", (1, 1), (9, 9, 9)), tmp_path / "one.png")).size == (1, 1)
    assert load_rgb(save(Image.new("RGB", (4000, 3), (9, 9, 9)), tmp_path / "wide.png")).size == (4000, 3)


def _expect_error(path, fragment, options=DecodeOptions()):
    with pytest.raises(InputError) as err:
        load_rgb(path, options)
    message = str(err.value)
    assert message.startswith(display_path(path) + ":") and fragment in message
    assert "\n" not in message


def test_truncated_image_fails_unless_allowed(tmp_path, photos):
    data = photos["china.jpg"].read_bytes()
    path = tmp_path / "trunc.jpg"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, "truncated")
    assert load_rgb(path, DecodeOptions(allow_truncated=True)).size == (640, 427)


def test_broken_inputs_each_have_a_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    _expect_error(tmp_path / "empty.jpg", "empty file")
    (tmp_path / "page.jpg").write_text("<html><body>404</body></html>")
    _expect_error(tmp_path / "page.jpg", "not an image")
    # Seeded noise behind a prefix that no image format starts with: os.urandom bytes were sometimes taken
    # for an image ("Unsupported SGI image mode"), so the test failed by chance.
    (tmp_path / "noise.png").write_bytes(b"\xffNOISE\x00" + random.Random(26).randbytes(4088))
    _expect_error(tmp_path / "noise.png", "not an image")
    header_only = tmp_path / "header.png"
    header_only.write_bytes(save(Image.new("RGB", (64, 64)), tmp_path / "full.png").read_bytes()[:60])
    _expect_error(header_only, "truncated")
    (tmp_path / "folder.jpg").mkdir()
    _expect_error(tmp_path / "folder.jpg", "directory")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    _expect_error(tmp_path / "dangling.jpg", "broken symlink")


def test_pixel_limit_refuses_bombs_before_decoding(tmp_path):
    path = save(Image.new("RGB", (300, 300)), tmp_path / "big.png")
    _expect_error(path, "over the limit", DecodeOptions(max_pixels=300 * 300 - 1))
    assert load_rgb(path, DecodeOptions(max_pixels=300 * 300)).size == (300, 300)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "secret.png")
    path.chmod(0)
    _expect_error(path, "permission denied")


def test_non_utf8_names_are_shown_with_escapes(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"
    Image.new("RGB", (4, 4)).save(os.fsdecode(raw), format="PNG")
    shown = display_path(os.fsdecode(raw))
    shown.encode("utf-8")  # printable
    assert shown.endswith("caf\\udce9.png")
    assert load_rgb(os.fsdecode(raw)).size == (4, 4)
