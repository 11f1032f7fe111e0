"""Heat maps: the crop's geometry back onto the photo, occlusion sensitivity, overlays, and `imgclass explain`."""

import io
import json
import sys

import numpy as np
import onnx
import pytest
from conftest import REAL_MODEL, real_model, run_cli
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.data.presets import Overrides
from imgclass.graph.activation import softmax
from imgclass.inference.explain import crop_box, occlusion_grid, to_original

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
    from imgclass.data.presets import get_preset
    from imgclass.data.transforms import Transform

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
    with pytest.raises(imgclass.UsageError, match="method 'gradcam'"):
        clf.explain(picture(), method="gradcam")
    tiny = make_model("tiny", spatial=None)
    with pytest.raises(imgclass.UsageError, match="one model"):
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


# --- class activation maps -------------------------------------------------------------------------


def quantized(make_model, tmp_path_factory, fmt: str):
    """The tiny builder net quantised to int8 by ONNX Runtime: QOperator (QLinearConv, QGemm) or QDQ."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    source = make_model("tiny", spatial=32)

    class Samples(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.samples = iter([{"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.samples, None)

    out = tmp_path_factory.mktemp("int8") / f"tiny-{fmt}.onnx"
    quantize_static(str(source), str(out), Samples(), quant_format=getattr(QuantFormat, fmt),
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    return out


def _proto(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def _init(model, name):
    found = {t.name: t for t in model.graph.initializer}
    return numpy_helper.to_array(found[name]).astype(np.float32) if name in found else None


def _deq(model, value_name, scale_name, zero_name):
    """An initializer (or a run-time value given as an array) dequantised with the named scale and zero point."""
    value = _init(model, value_name) if isinstance(value_name, str) else value_name.astype(np.float32)
    scale, zero = _init(model, scale_name), _init(model, zero_name) if zero_name else 0.0
    if np.ndim(scale) == 1 and scale.size > 1:  # per-channel weights: along the output axis
        shape = [1] * value.ndim
        shape[0 if value.shape[0] == scale.size else -1] = scale.size
        scale, zero = scale.reshape(shape), np.reshape(zero, shape)
    return (value - zero) * scale


def reference(path, sample):
    """The test's own reading of a GAP + linear graph: (logits, A [C, h, w] float, W [classes, C], b, int8 bound).

    A is the pool's input, read by adding it to the original graph's outputs; W and b are read from the
    initializers (dequantised by hand for int8), without imgclass.
    """
    import onnxruntime as ort

    model = onnx.load(str(path))
    nodes = {n.op_type: n for n in model.graph.node}
    pool = nodes.get("GlobalAveragePool") or nodes["QLinearGlobalAveragePool"]
    kind = TensorProto.FLOAT
    if pool.op_type == "QLinearGlobalAveragePool":  # the int8 map's type is its zero point's
        kind = helper.np_dtype_to_tensor_dtype(numpy_helper.to_array(_proto(model, pool.input[2])).dtype)
    model.graph.output.append(helper.make_tensor_value_info(pool.input[0], kind, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, fmap = session.run(
        [model.graph.output[0].name, pool.input[0]], {session.get_inputs()[0].name: sample[None]}
    )
    if pool.op_type == "QLinearGlobalAveragePool":
        fmap = _deq(model, fmap, pool.input[1], pool.input[2])
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers = {i: n for n in model.graph.node for i in n.input}
    pooled_step = out_step = 0.0  # int8 rounding of the pooled vector and of the logits on their way out
    if "Gemm" in nodes:
        g = nodes["Gemm"]
        w, b = (_init(model, g.input[i]) for i in (1, 2))
        if w is None:  # QDQ: weights, bias and the pooled vector come through DequantizeLinear
            w, b = (_deq(model, *(list(producer[g.input[i]].input) + [None])[:3]) for i in (1, 2))
            source = producer[g.input[0]]
            while source.op_type != "DequantizeLinear":
                source = producer[source.input[0]]
            pooled_step = float(_init(model, source.input[1]))
            out_step = float(_init(model, consumers[g.output[0]].input[1]))
    elif "QGemm" in nodes:
        g = nodes["QGemm"]
        w = _deq(model, g.input[3], g.input[4], g.input[5])
        b = _init(model, g.input[6]) * _init(model, g.input[1]) * _init(model, g.input[4])
        pooled_step = float(_init(model, g.input[1]))
        out_step = float(_init(model, g.input[7])) if len(g.input) > 7 else 0.0
    else:  # QLinearMatMul + QLinearAdd (the real int8 MobileNet)
        m, a = nodes["QLinearMatMul"], nodes["QLinearAdd"]
        w = _deq(model, m.input[3], m.input[4], m.input[5]).T
        b = _deq(model, a.input[3], a.input[4], a.input[5]).reshape(-1)
        pooled_step = float(_init(model, m.input[1]))
        out_step = float(_init(model, m.input[6])) + float(_init(model, a.input[6]))

    def bound(row: int) -> float:
        """How far the logit may be from mean(CAM) + b: half a step of each int8 rounding on the way."""
        return float(np.abs(w[row]).sum() * pooled_step / 2 + out_step / 2)

    return logits[0], fmap[0], w, b.reshape(-1), bound


CAM_FAMILIES = {
    "tiny": dict(kind="tiny", spatial=None),
    "nhwc-softmax": dict(kind="tiny", spatial=None, layout="NHWC", head="softmax"),
    "background-1001": dict(kind="tiny", spatial=None, classes=1001),
    "int8-qoperator": "QOperator",
    "int8-qdq": "QDQ",
    "resnet50": dict(kind="resnet50"),
    "inception-v3": dict(kind="inception_v3", spatial=299),
    "real-mobilenetv2-int8": "real",
}


@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=pytest.mark.slow) if f in ("resnet50", "inception-v3") else
     pytest.param(f, marks=real_model) if f.startswith("real") else f for f in CAM_FAMILIES],
)  # fmt: skip
def test_cam_equals_the_weighted_sum_of_the_original_graphs_feature_map(family, make_model, tmp_path_factory, photos):
    spec = CAM_FAMILIES[family]
    if spec == "real":
        path = REAL_MODEL
    else:
        path = quantized(make_model, tmp_path_factory, spec) if isinstance(spec, str) else make_model(**spec)
    clf = imgclass.load(path, preset="torchvision", exact_decode=True)
    exp = clf.explain(photos["chelsea.png"], method="cam")
    sample = clf.model.transform(Image.open(photos["chelsea.png"]).convert("RGB"))
    logits, fmap, w, b, bound = reference(path, sample)
    row = clf.model.offset + exp.index
    expected = np.tensordot(w[row].astype(np.float64), fmap.astype(np.float64), axes=(0, 0))
    assert exp.map.shape == fmap.shape[1:]
    assert np.abs(exp.map - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    if family != "nhwc-softmax":  # a softmax head's output is not the logit
        tolerance = bound(row) + 1e-5 * max(1.0, abs(logits[row]))
        deviation = abs(exp.map.mean() + b[row] - logits[row])
        assert deviation <= tolerance and deviation < 0.05 * logits.std(), (deviation, tolerance)
    else:  # the output is softmax(logits): softmax of every class's mean(CAM) + b
        means = np.tensordot(w.astype(np.float64), fmap.astype(np.float64), axes=(1, 0)).mean((1, 2)) + b
        assert np.abs(softmax(means[None])[0] - logits).max() <= 1e-5
    assert exp.index == exp.record.predictions[0].index and exp.probability == exp.record.predictions[0].probability


@pytest.mark.parametrize("preset", ["torchvision", "keras-tf"])
@pytest.mark.parametrize("rotated", [False, True])
def test_cam_peaks_on_the_patch_in_photo_coordinates(texture, tmp_path, preset, rotated):
    path = tmp_path / ("rotated.jpg" if rotated else "upright.png")
    if rotated:
        exif = Image.Exif()
        exif[0x0112] = 6
        picture().transpose(Image.Transpose.ROTATE_90).save(path, quality=98, exif=exif)
    else:
        picture().save(path)
    clf = imgclass.load(texture, preset=preset, overrides=Overrides(size=128))
    exp = clf.explain(path, 0)  # cam is the default
    assert exp.method == "cam" and exp.map.shape == (16, 16)  # 128 / the texture model's pool of 8
    heat = exp.on_original()
    assert _inside(_peak(heat), PATCH), _peak(heat)
    x0, y0, x1, y1 = PATCH
    assert np.nanmean(heat[y0:y1, x0:x1]) > 5 * np.nanmean(heat[:, :200])


def test_cam_refuses_a_graph_without_global_average_pooling(tmp_path, photos, home):
    """conv -> Flatten -> Gemm: no pooled feature map, so no CAM: exit 3 pointing at --method occlusion."""
    pytest.importorskip("cmap")  # without the extra, explain stops before it reads the model (exit 2)
    nodes = [helper.make_node("Conv", ["x", "w"], ["f"], strides=[8, 8], kernel_shape=[8, 8]),
             helper.make_node("Flatten", ["f"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1)]  # fmt: skip
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((10, 64)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]  # fmt: skip
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "flat.onnx"
    onnx.save(model, str(path))
    result = run_cli("explain", photos["china.jpg"], "-m", path, "-o", tmp_path / "maps")
    assert (
        result.returncode == 3 and "--method occlusion" in result.stderr and "global average pooling" in result.stderr
    )
    assert (
        run_cli("explain", photos["china.jpg"], "-m", path, "-o", tmp_path / "maps", "--method", "occlusion").returncode
        == 0
    )


CUP = (170, 15, 412, 310)  # x0, y0, x1, y1 of the cup (rim to foot, handle included) in skimage's coffee.png, 600x400


@real_model
def test_espresso_map_of_the_real_model_peaks_inside_the_cup(photos):
    clf = imgclass.load(REAL_MODEL)
    exp = clf.explain(photos["coffee.png"], "espresso")
    assert exp.index == 967 and exp.map.shape == (7, 7) and exp.image.size == (600, 400)
    heat = exp.on_original()
    assert _inside(_peak(heat), CUP), _peak(heat)
    x0, y0, x1, y1 = CUP
    assert np.nanmean(heat[y0:y1, x0:x1]) > np.nanmean(np.where(_outside_mask(heat.shape, CUP), heat, np.nan))


def _outside_mask(shape, box):
    mask = np.ones(shape, bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = False
    return mask


def test_occlusion_progress_on_a_terminal_is_cleared(texture, tmp_path):
    pytest.importorskip("cmap")
    picture().save(tmp_path / "a.png")
    args = ["explain", str(tmp_path / "a.png"), "-m", str(texture), "--size", "64", "--method", "occlusion",
            "--patch", "8", "--stride", "8", "--batch-size", "16", "-o", str(tmp_path / "maps")]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run(args, Environment(stdout=out, stderr=err, stderr_isatty=True)) == 0
    assert "occluding a.png 1/4" in err.getvalue() and "occluding a.png 4/4" in err.getvalue()  # 64 squares, 16 a run
    assert err.getvalue().endswith("\r\x1b[2K") and json.loads(out.getvalue())["method"] == "occlusion"
    out, err = io.StringIO(), io.StringIO()
    assert run([*args, "-q", "--force"], Environment(stdout=out, stderr=err, stderr_isatty=True)) == 0
    assert err.getvalue() == ""
