"""Bottleneck surgery on every export family: the head is found from the graph, and the cut graph's
output equals the tensor read out of the original graph."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import REAL_MODEL, real_model
from onnx import TensorProto, helper, numpy_helper
from support import onnx_builders as builders

import imgclass
from imgclass.cli import run
from imgclass.cli.environment import Environment
from imgclass.errors import ModelError
from imgclass.graph import surgery

TOL = 1e-5


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def read_back(model: onnx.ModelProto, head: surgery.Head, x: np.ndarray) -> dict[str, np.ndarray]:
    """The classifier output, pooled vector and feature map of the ORIGINAL graph, read with extra outputs."""
    exposed = surgery.expose(model, {"t/pooled": head.pooled, "t/fmap": head.feature_map, "t/logits": head.logits})
    outputs = session(exposed).run(None, {head.input: x})
    names = [o.name for o in exposed.graph.output]
    values = dict(zip(names, outputs, strict=True))
    return {"output": values[head.output], "pooled": values["t/pooled"].reshape(len(x), -1),
            "fmap": values["t/fmap"], "logits": values["t/logits"].reshape(len(x), -1)}  # fmt: skip


def raw_intermediate(model: onnx.ModelProto, name: str, feeds: dict) -> np.ndarray:
    """A tensor of the original graph as it is (no surgery at all): added as an output with the onnx helper."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.append(onnx.ValueInfoProto(name=name))
    return session(copy).run([name], feeds)[0]


def check_family(model: onnx.ModelProto, x: np.ndarray, int8: bool = False) -> surgery.Head:
    """int8: values are rounded to the quantisation steps between pool, linear layer and output."""
    head = surgery.find_head(model, "test-model")
    seen = read_back(model, head, x)
    # the pooled vector is the feature map averaged over height and width
    axes = (2, 3) if head.layout == "NCHW" else (1, 2)
    np.testing.assert_allclose(seen["fmap"].mean(axis=axes), seen["pooled"], atol=0.01 if int8 else 1e-4)
    # the weights reproduce the graph's own linear layer
    mine = seen["pooled"] @ head.weight.T + head.bias
    scale = max(1.0, float(np.abs(seen["logits"]).max()))
    assert np.abs(mine - seen["logits"]).max() <= (0.02 if int8 else 1e-4) * scale
    # the cut graph computes exactly the pooled tensor of the original graph
    cut = surgery.extract(model, {"emb": head.pooled}, dims={"emb": head.dim})
    embedded = session(cut).run(None, {head.input: x})[0]
    assert embedded.shape == (len(x), head.dim)
    np.testing.assert_allclose(embedded, seen["pooled"], atol=TOL, rtol=TOL)
    assert [o.name for o in cut.graph.output] == ["emb"]
    assert not any(
        n.op_type in ("Gemm", "Softmax", "QLinearMatMul", "QGemm") and n.output[0] == head.output
        for n in cut.graph.node
    )
    return head


@pytest.mark.parametrize(
    "sig, expect",
    [
        (dict(spatial=32), ("NCHW", 16, 1000, "Gemm")),
        (dict(spatial=32, layout="NHWC", softmax=True, classes=1001), ("NCHW", 16, 1001, "Gemm")),
        (dict(spatial=32, head="sigmoid", behind=("Reshape", "QDQ")), ("NCHW", 16, 1000, "Gemm")),
        (dict(spatial=None, dtype="uint8", batch=1), ("NCHW", 16, 1000, "Gemm")),
    ],
)
def test_tiny_families(sig, expect):
    model = builders.tiny(builders.Signature(**sig))
    batch = sig.get("batch") or 2
    layout = sig.get("layout", "NCHW")
    shape = (batch, 3, 32, 32) if layout == "NCHW" else (batch, 32, 32, 3)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, shape).astype(np.uint8) if sig.get("dtype") == "uint8" else rng.random(shape, np.float32)
    head = check_family(model, x)
    assert (head.layout, head.dim, head.classes, head.linear) == expect
    assert head.pool == "GlobalAveragePool"


@pytest.mark.slow
@pytest.mark.parametrize("kind, side, sig", [("resnet50", 224, {}), ("resnet50", 224, dict(layout="NHWC", softmax=True)),
                                             ("inception_v3", 299, dict(spatial=299, classes=1001))])  # fmt: skip
def test_resnet50_and_inception_v3(kind, side, sig):
    model = getattr(builders, kind)(builders.Signature(**sig))
    shape = (1, side, side, 3) if sig.get("layout") == "NHWC" else (1, 3, side, side)
    head = check_family(model, np.random.default_rng(0).random(shape, np.float32))
    assert head.dim == 2048
    assert head.classes == sig.get("classes", 1000)


def _keras_like(seed: int = 0) -> onnx.ModelProto:
    """tf2onnx's Keras layout: NHWC throughout, ReduceMean over axes 1,2 (no keepdims), MatMul + Add, Softmax."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["fmap"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["fmap"], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled", "dense_w"], ["mm"]),
        helper.make_node("Add", ["mm", "dense_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "dense_w"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "dense_b")]  # fmt: skip
    graph = helper.make_graph(nodes, "keras", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 16, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _slim_like(seed: int = 0) -> onnx.ModelProto:
    """TF-slim's Inception layout: an AveragePool whose window is the whole map, a 1x1 Conv as logits, Squeeze."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["fmap"]),
        helper.make_node("AveragePool", ["fmap"], ["pool"], kernel_shape=[7, 7]),
        helper.make_node("Dropout", ["pool"], ["drop"]),
        helper.make_node("Conv", ["drop", "logits_w", "logits_b"], ["conv_logits"], kernel_shape=[1, 1]),
        helper.make_node("Squeeze", ["conv_logits", "axes"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, 6, 1, 1)).astype(np.float32), "logits_w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "logits_b"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]  # fmt: skip
    graph = helper.make_graph(nodes, "slim", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 15, 15])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_keras_layout_reduce_mean_matmul_add():
    head = check_family(_keras_like(), np.random.default_rng(0).random((2, 16, 16, 3), np.float32))
    assert (head.layout, head.pool, head.linear, head.dim, head.classes) == ("NHWC", "ReduceMean", "MatMul+Add", 8, 5)
    assert head.channel_axis == 3


def test_tf_slim_layout_global_average_pool_window_and_1x1_conv():
    head = check_family(_slim_like(), np.random.default_rng(0).random((1, 3, 15, 15), np.float32))
    assert (head.layout, head.pool, head.linear, head.dim, head.classes) == ("NCHW", "AveragePool", "Conv1x1", 6, 4)


def _quantized(tmp_path: Path, fmt: str) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    source = builders.save(builders.tiny(builders.Signature(spatial=32, classes=5)), tmp_path / "tiny.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": np.random.default_rng(i).random((1, 3, 32, 32), np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.items, None)

    target = tmp_path / f"tiny-{fmt}.onnx"
    quant_format = QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator
    quantize_static(str(source), str(target), Reader(), quant_format=quant_format, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)  # fmt: skip
    return onnx.load(str(target))


@pytest.mark.parametrize("fmt, linear", [("qdq", "Gemm"), ("qoperator", "QGemm")])
def test_int8_graphs_made_by_onnxruntime_quantization(tmp_path, fmt, linear):
    model = _quantized(tmp_path, fmt)
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    head = check_family(model, np.random.default_rng(0).random((2, 3, 32, 32), np.float32), int8=True)
    assert (head.linear, head.dim, head.classes) == (linear, 16, 5)


@real_model
def test_real_int8_model_qlinear_global_average_pool():
    model = surgery.load_model_proto(REAL_MODEL)
    x = np.random.default_rng(0).random((2, 3, 224, 224), np.float32)
    head = surgery.find_head(model, str(REAL_MODEL))
    assert (head.pool, head.linear, head.dim, head.classes) == (
        "QLinearGlobalAveragePool",
        "QLinearMatMul+QLinearAdd",
        1280,
        1000,
    )
    assert head.pooled.quantized and head.feature_map.quantized
    # the raw uint8 tensor read straight out of the original graph, dequantised by hand
    raw = raw_intermediate(model, head.pooled.name, {"input": x}).reshape(2, -1)
    graph = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    by_hand = (raw.astype(np.float32) - graph[head.pooled.zero_point].astype(np.float32)) * graph[head.pooled.scale]
    cut = surgery.extract(model, {"emb": head.pooled}, dims={"emb": 1280})
    np.testing.assert_allclose(session(cut).run(None, {"input": x})[0], by_hand, atol=TOL)
    # logits from the dequantised weights agree with the int8 graph's to a few of its output steps
    seen = read_back(model, head, x)
    step = float(graph["output_scale"])
    assert np.abs(seen["pooled"] @ head.weight.T + head.bias - seen["output"]).max() < 40 * step


def test_embed_through_the_pipeline_equals_the_intermediate_tensor(make_model, photos):
    path = make_model("tiny", spatial=32, layout="NHWC", softmax=True)
    clf = imgclass.load(path)
    items = list(clf.embed([photos["chelsea.png"], photos["coffee.png"]], batch_size=2))
    assert [i.error for i in items] == [None, None]
    model = onnx.load(str(path))
    head = surgery.find_head(model, str(path))
    from PIL import Image

    batch = np.stack([clf.model.transform(Image.open(photos[n]).convert("RGB")) for n in ("chelsea.png", "coffee.png")])
    raw = raw_intermediate(model, head.pooled.name, {head.input: batch})
    np.testing.assert_allclose(np.stack([i.vector for i in items]), raw, atol=TOL, rtol=TOL)
    single = clf.vector(photos["chelsea.png"], normalize=True)
    np.testing.assert_allclose(single, raw[0] / np.linalg.norm(raw[0]), atol=TOL)


def test_attach_classifier_is_a_standalone_softmax_model(make_model):
    model = onnx.load(str(make_model("tiny", spatial=32)))
    head = surgery.find_head(model)
    rng = np.random.default_rng(3)
    weight, bias = rng.standard_normal((3, head.dim)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    mine = surgery.attach_classifier(model, head, weight, bias, {"imgclass.labels": '["a", "b", "c"]'})
    onnx.checker.check_model(mine)
    x = rng.random((4, 3, 32, 32), np.float32)
    probabilities = session(mine).run(None, {"x": x})[0]
    logits = read_back(model, head, x)["pooled"] @ weight.T + bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert {p.key: p.value for p in mine.metadata_props} == {"imgclass.labels": '["a", "b", "c"]'}
    assert [o.name for o in mine.graph.output] == ["probabilities"]
    assert "fc.weight" not in {t.name for t in mine.graph.initializer}  # the old head is gone
    again = surgery.find_head(mine)  # and the new model has a head of its own
    np.testing.assert_array_equal(again.weight, weight)
    with pytest.raises(ValueError, match="do not fit"):
        surgery.attach_classifier(model, head, weight[:, :-1], bias, {})


def _headless(tmp_path: Path) -> Path:
    """A classifier-shaped graph whose Gemm reads a flattened feature map: no global pool, no bottleneck."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Flatten", ["c"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc", "b"], ["logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 4, 4)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((3, 4 * 8 * 8)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.zeros(3, np.float32), "b")]  # fmt: skip
    graph = helper.make_graph(nodes, "headless", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)  # fmt: skip
    return builders.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), tmp_path / "headless.onnx"
    )


def test_a_graph_without_a_bottleneck_is_refused_with_the_reason(tmp_path, photos):
    path = _headless(tmp_path)
    with pytest.raises(ModelError, match="no bottleneck to train on: the linear layer's input comes from a Conv node"):
        surgery.find_head(onnx.load(str(path)), str(path))
    err = io.StringIO()
    code = run(["embed", str(photos["coffee.png"]), "--model", str(path), "--labels", str(_labels(tmp_path))],
               Environment(stdout=io.StringIO(), stderr=err))  # fmt: skip
    assert code == 3
    assert "no bottleneck to train on" in err.getvalue() and "headless.onnx" in err.getvalue()


def test_an_output_from_a_non_linear_op_is_refused():
    model = builders.tiny(builders.Signature(spatial=32))
    model.graph.node[-1].op_type = "Relu"  # Identity after the Gemm: now the output comes from a Relu
    del model.graph.node[-1].attribute[:]
    with pytest.raises(ModelError, match="comes from a Relu node, not from a linear layer"):
        surgery.find_head(model, "m.onnx")


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n")
    return path
