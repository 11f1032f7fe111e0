"""Heat maps: the crop's geometry back onto the photo, occlusion sensitivity, overlays, and `imgclass explain`."""

import io
import json
import sys

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.explain import crop_box, occlusion_grid, to_original
from imgclass.presets import Overrides

PATCH = (300, 70, 400, 170)  # x0, y0, x1, y1 of the only textured square in a 480x320 picture
GREY = (124, 116, 104)  # torchvision's mean colour: hiding with it leaves a flat picture flat


def texture_model(path, pool: int = 8):
    """conv (a Laplacian on each channel) -> Abs -> AveragePool(pool) = A -> GAP -> Gemm [[1], [-1]]: class 0 is texture."""
    lap = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
    weight = np.stack([lap] * 3)[None]  # (1, 3, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["edges"], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["edges"], ["texture"]),
        helper.make_node("AveragePool", ["texture"], ["fmap"], kernel_shape=[pool, pool], strides=[pool, pool]),
        helper.make_node("GlobalAveragePool", ["fmap"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([[1.0], [-1.0]], np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(2, np.float32), "fc_b")]  # fmt: skip
    graph = helper.make_graph(nodes, "texture", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def texture(tmp_path_factory):
    return texture_model(tmp_path_factory.mktemp("texture") / "texture.onnx")


def picture() -> Image.Image:
    """Flat grey, but for a square of noise at PATCH: what the texture model's class 0 responds to."""
    arr = np.empty((320, 480, 3), np.uint8)
    arr[:] = GREY
    x0, y0, x1, y1 = PATCH
    rng = np.random.default_rng(0)
    arr[y0:y1, x0:x1] = np.clip(np.asarray(GREY) + rng.integers(-70, 70, (y1 - y0, x1 - x0, 3)), 0, 255)
    return Image.fromarray(arr)


def _peak(heat: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(np.nanargmax(heat), heat.shape)
    return int(x), int(y)


def _inside(point, box, margin: float = 0) -> bool:
    x, y = point
    x0, y0, x1, y1 = box
    return x0 - margin <= x < x1 + margin and y0 - margin <= y < y1 + margin


@pytest.mark.parametrize("preset", ["torchvision", "mlperf-resnet", "keras-tf", "tf-slim", "hf-resnet"])
def test_crop_box_is_what_the_model_sees(photos, make_model, preset):
    """The photo's box, resized to the input, is the preset's crop; the box moved by 4% is not."""
    model = make_model("tiny", spatial=None)
    clf = imgclass.load(model, preset=preset, overrides=Overrides(size=96), exact_decode=True)
    transform = clf.model.transform
    img = Image.open(photos["coffee.png"]).convert("RGB")
    crop = np.asarray(transform.geometry(img), np.float32)
    box = crop_box(transform, img.width, img.height)

    def difference(b):  # on 24x24 averages, so that resampling rules (TF's legacy bilinear) do not count
        region = np.asarray(img.resize((96, 96), Image.Resampling.BILINEAR, box=b), np.float32)
        return np.abs(region.reshape(24, 4, 24, 4, 3).mean((1, 3)) - crop.reshape(24, 4, 24, 4, 3).mean((1, 3))).mean()

    cut = (box[0] + 0.04 * img.width, box[1], box[2], box[3])  # a box 4% of the photo off on one side
    assert difference(box) < 4.0 and difference(cut) > 3 * difference(box), (difference(box), difference(cut))
    if preset == "keras-tf":
        assert box == (0.0, 0.0, float(img.width), float(img.height))  # squash: the whole photo


def test_to_original_puts_cells_where_they_belong():
    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = 1.0  # the cell from x 50%-75%, y 25%-50% of the box
    heat = to_original(grid, (100.0, 40.0, 300.0, 240.0), 400, 300)
    assert heat.shape == (300, 400)
    assert np.isnan(heat[:40]).all() and np.isnan(heat[:, :100]).all() and np.isnan(heat[:, 300:]).all()
    assert not np.isnan(heat[40:240, 100:300]).any()
    assert _peak(heat) in [(x, y) for x in (224, 225) for y in (114, 115)]  # the cell's centre: (225, 115)


def test_occlusion_grid_covers_the_input():
    from imgclass.preprocess import Transform
    from imgclass.presets import get_preset

    transform = Transform(get_preset("torchvision"), 50, 70)
    patches = occlusion_grid(transform, 16, 10)
    covered = np.zeros((50, 70), bool)
    for y, x, h, w in patches:
        covered[y : y + h, x : x + w] = True
    assert covered.all() and {(h, w) for _, _, h, w in patches} == {(16, 16)}
    assert (
        max(y for y, *_ in patches) == 34 and max(x for _, x, *_ in patches) == 54
    )  # the last square ends at the edge


@pytest.mark.parametrize("preset", ["torchvision", "keras-tf"])
@pytest.mark.parametrize("rotated", [False, True])
def test_occlusion_peaks_on_the_patch_in_photo_coordinates(texture, tmp_path, preset, rotated):
    """Centre crop or squash, stored upright or rotated with EXIF: the peak is over the textured square."""
    path = tmp_path / ("rotated.jpg" if rotated else "upright.png")
    shown = picture()
    if rotated:  # stored turned a quarter left; orientation 6 tells viewers to turn it back right
        exif = Image.Exif()
        exif[0x0112] = 6
        shown.transpose(Image.Transpose.ROTATE_90).save(path, quality=98, exif=exif)
    else:
        shown.save(path)
    clf = imgclass.load(texture, preset=preset, overrides=Overrides(size=96))
    exp = clf.explain(path, 0, method="occlusion", patch=8, stride=4)
    assert exp.image.size == (480, 320) and exp.label == "class 0" and exp.method == "occlusion"
    heat = exp.on_original()
    assert _inside(_peak(heat), PATCH), _peak(heat)
    x0, y0, x1, y1 = PATCH
    assert np.nanmean(heat[y0:y1, x0:x1]) > 10 * max(np.nanmean(heat[:, :200]), 1e-6)


def test_overlay_colours_the_crop_and_dims_the_rest(texture):
    pytest.importorskip("cmap")
    clf = imgclass.load(texture, preset="torchvision", overrides=Overrides(size=96))
    exp = clf.explain(picture(), 0, method="occlusion", patch=8, stride=4)
    over = np.asarray(exp.overlay(), np.int16)
    photo = np.asarray(picture(), np.int16)
    x0, y0, x1, y1 = (round(v) for v in exp.box)
    outside = over[:, : x0 - 1]
    assert np.abs(outside - np.rint(photo[:, : x0 - 1] * 0.35)).max() <= 1  # dimmed, not coloured
    inside = over[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
    assert np.abs(inside - photo[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]).mean() > 10  # coloured
    px, py = _peak(exp.on_original())
    assert over[py, px].sum() > over[10 + y0, 10 + x0].sum()  # inferno: hot is bright


def test_class_by_name_index_and_refusals(texture, make_model, photos):
    clf = imgclass.load(texture, preset="torchvision", overrides=Overrides(size=64))
    assert clf.explain(picture(), "CLASS 1", method="occlusion").index == 1
    assert clf.explain(picture(), "1", method="occlusion").label == "class 1"
    with pytest.raises(imgclass.UsageError, match="did you mean 'class 0', 'class 1'"):
        clf.explain(picture(), "class", method="occlusion")
    with pytest.raises(imgclass.UsageError, match="classes 0 to 1"):
        clf.explain(picture(), 7, method="occlusion")
    with pytest.raises(imgclass.UsageError, match="--method 'gradcam'"):
        clf.explain(picture(), method="gradcam")
    tiny = make_model("tiny", spatial=None)
    with pytest.raises(imgclass.UsageError, match="one --model"):
        imgclass.load_ensemble([tiny, tiny]).explain(photos["china.jpg"], method="occlusion")


def test_cli_writes_overlays_and_maps(texture, tmp_path, photos, home):
    pytest.importorskip("cmap")
    picture().save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    picture().save(tmp_path / "sub" / "a.png")  # the same name twice: a second file, not an overwrite
    (tmp_path / "broken.png").write_text("no")
    out = tmp_path / "maps"
    inputs = [tmp_path / "a.png", tmp_path / "sub" / "a.png", tmp_path / "broken.png"]
    result = run_cli("explain", *inputs, "-m", texture, "--preset", "torchvision", "--size", "64", "--method", "occlusion",
                     "--class", "0", "-o", out, "--npy", "--report", tmp_path / "r.html")  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["error"] for line in lines] == [None, None, "not an image Pillow can read"]
    assert [line.get("overlay") for line in lines] == [
        str(out / "a.occlusion.png"),
        str(out / "a.occlusion-2.png"),
        None,
    ]
    raw = np.load(lines[0]["map"])
    assert raw.shape == (64, 64) and lines[0]["map_shape"] == [64, 64] and lines[0]["class"]["index"] == 0
    assert Image.open(lines[0]["overlay"]).size == (480, 320)
    page = (tmp_path / "r.html").read_text()
    assert page.count('class="heat"') == 2 and page.count("<article") == 3


def test_missing_colour_map_extra_is_exit_2(texture, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cmap", None)  # as if `imgclass[explain]` were not installed
    picture().save(tmp_path / "a.png")
    err = io.StringIO()
    code = run(["explain", str(tmp_path / "a.png"), "-m", str(texture), "-o", str(tmp_path / "maps")],
               Environment(stdout=io.StringIO(), stderr=err))  # fmt: skip
    assert code == 2 and "pip install 'imgclass[explain]'" in err.getvalue()
    assert not (tmp_path / "maps").exists()  # refused before any work
