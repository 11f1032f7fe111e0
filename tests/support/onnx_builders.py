"""Build ONNX classifiers at test time with the onnx helper API and seeded weights.

`resnet50()` and `inception_v3()` follow torchvision's topology layer for layer
(their trainable parameter counts are 25,557,032 and 23,834,568, BatchNorm
running statistics not counted, as in PyTorch). `tiny()` is a small conv net
for fast tests. Every builder takes the same signature options, so that one set
of weights can be exported behind NCHW logits, NHWC + Softmax, a 1001-class
head with a background class, uint8 input, a fixed batch of 1 or a dynamic
spatial size. `head` puts the same logits behind Softmax, LogSoftmax or Sigmoid,
and `behind` adds shape-only ops after the head (Reshape, Identity, Flatten, ...);
`metadata` sets ONNX metadata_props.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
RUNNING_STATS = (".running_mean", ".running_var")


@dataclass(frozen=True)
class Signature:
    layout: str = "NCHW"  # or NHWC
    softmax: bool = False  # the same as head="softmax"
    classes: int = 1000  # 1001: a background class at index 0
    dtype: str = "float32"  # or uint8 (the graph casts and scales by 1/255 itself)
    batch: int | None = None  # None: dynamic
    spatial: int | None = 224  # None: dynamic height and width
    input_name: str = "x"
    output_name: str = "logits"
    head: str = "logits"  # logits, softmax, logsoftmax, sigmoid: the op after the classifier's Gemm
    behind: tuple[str, ...] = ()  # ops after the head: Identity, Reshape, Flatten, Cast, Transpose, Squeeze, QDQ
    metadata: tuple[tuple[str, str], ...] = ()  # ONNX metadata_props (key, value)

    # torchvision's Inception v3 with transform_input=True starts by re-normalising each channel
    # (see transform_input below): "gather" as torch.onnx writes it, "slice" as other exporters do.
    transform_input: str | None = None


HEAD_OPS = {"logits": None, "softmax": "Softmax", "logsoftmax": "LogSoftmax", "sigmoid": "Sigmoid"}


class GraphBuilder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def int64(self, name: str, values: list[int]) -> str:
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.name(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k, stride=1, pad=None, name: str = "conv", gain: float = 1.0) -> str:
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = ((kh - 1) // 2, (kw - 1) // 2) if pad is None else ((pad, pad) if isinstance(pad, int) else pad)
        fan_in = cin * kh * kw
        w = self.rng.standard_normal((cout, cin, kh, kw)).astype(np.float32) * np.sqrt(2.0 / fan_in) * gain
        wname = self.init(f"{name}.weight", w)
        return self.node("Conv", [x, wname], name, kernel_shape=[kh, kw], strides=[stride, stride], pads=[ph, pw, ph, pw])

    def bn(self, x: str, c: int, name: str, gamma: float = 1.0, eps: float = 1e-5) -> str:
        scale = self.init(f"{name}.weight", gamma * (1.0 + 0.1 * self.rng.standard_normal(c)))
        bias = self.init(f"{name}.bias", 0.1 * self.rng.standard_normal(c))
        mean = self.init(f"{name}.running_mean", 0.05 * self.rng.standard_normal(c))
        var = self.init(f"{name}.running_var", 1.0 + 0.1 * self.rng.random(c))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], name, epsilon=eps)

    def conv_bn(self, x, cin, cout, k, stride=1, pad=None, name="cbr", relu=True, gamma=1.0, eps=1e-5):
        y = self.bn(self.conv(x, cin, cout, k, stride, pad, name=f"{name}.conv"), cout, f"{name}.bn", gamma, eps)
        return self.node("Relu", [y]) if relu else y

    def pool(self, op: str, x: str, k: int, stride: int, pad: int = 0) -> str:
        attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [pad] * 4}
        if op == "AveragePool":
            attrs["count_include_pad"] = 1
        return self.node(op, [x], **attrs)

    def head(self, x: str, features: int, sig: Signature) -> str:
        pooled = self.node("Flatten", [self.node("GlobalAveragePool", [x])], axis=1)
        w = self.rng.standard_normal((1000, features)).astype(np.float32) / np.sqrt(features)
        b = 0.1 * self.rng.standard_normal(1000).astype(np.float32)
        if sig.classes == 1001:  # same weights, plus a background class in front
            w = np.concatenate([self.rng.standard_normal((1, features)).astype(np.float32) / np.sqrt(features), w])
            b = np.concatenate([np.zeros(1, np.float32), b])
        elif sig.classes != 1000:
            w, b = w[: sig.classes], b[: sig.classes]
        return self.node("Gemm", [pooled, self.init("fc.weight", w), self.init("fc.bias", b)], "fc", transB=1)


# torchvision/models/inception.py, Inception3._transform_input, per channel:
#     torch.unsqueeze(x[:, c], 1) * (std_c / 0.5) + (mean_c - 0.5) / 0.5
TORCHVISION_TRANSFORM_INPUT = [
    (0.229 / 0.5, (0.485 - 0.5) / 0.5),
    (0.224 / 0.5, (0.456 - 0.5) / 0.5),
    (0.225 / 0.5, (0.406 - 0.5) / 0.5),
]


def transform_input(g: GraphBuilder, x: str, select: str = "gather") -> str:
    """torchvision's transform_input block as an export writes it: per channel, select it
    (Gather + Unsqueeze, as torch.onnx does, or Slice), Mul, Add; then Concat on channels."""

    def const(value, dtype) -> str:
        name = g.name("const")
        g.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype))))
        return name

    channels = []
    for c, (scale, bias) in enumerate(TORCHVISION_TRANSFORM_INPUT):
        if select == "gather":
            picked = g.node("Gather", [x, const(c, np.int64)], axis=1)
            picked = g.node("Unsqueeze", [picked, const([1], np.int64)])
        else:
            picked = g.node("Slice", [x, *(const([v], np.int64) for v in (c, c + 1, 1))])
        scaled = g.node("Mul", [picked, const(scale, np.float32)])
        channels.append(g.node("Add", [scaled, const(bias, np.float32)]))
    return g.node("Concat", channels, axis=1)


def _wrap(builder: GraphBuilder, body, sig: Signature, name: str) -> onnx.ModelProto:
    batch = sig.batch if sig.batch is not None else "N"
    h = w = sig.spatial if sig.spatial is not None else None
    hdim, wdim = (h, w) if h is not None else ("H", "W")
    shape = [batch, 3, hdim, wdim] if sig.layout == "NCHW" else [batch, hdim, wdim, 3]
    elem = TensorProto.UINT8 if sig.dtype == "uint8" else TensorProto.FLOAT
    x = sig.input_name
    if sig.dtype == "uint8":
        x = builder.node("Cast", [x], to=TensorProto.FLOAT)
        x = builder.node("Mul", [x, builder.init("input_scale", np.array(1 / 255, np.float32))])
    if sig.layout == "NHWC":
        x = builder.node("Transpose", [x], perm=[0, 3, 1, 2])
    if sig.transform_input:
        x = transform_input(builder, x, sig.transform_input)
    logits = body(builder, x)
    _head(builder, logits, sig)
    builder.nodes[-1].output[0] = sig.output_name
    graph = helper.make_graph(
        builder.nodes,
        name,
        [helper.make_tensor_value_info(sig.input_name, elem, shape)],
        [helper.make_tensor_value_info(sig.output_name, TensorProto.FLOAT, [batch, sig.classes])],
        builder.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgclass-tests")
    for key, value in sig.metadata:
        model.metadata_props.add(key=key, value=value)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _head(builder: GraphBuilder, logits: str, sig: Signature) -> str:
    """The head op (none for logits), then the `behind` ops; the last node's output becomes the graph's."""
    op = HEAD_OPS["softmax" if sig.softmax else sig.head]
    if op is None and not sig.behind:
        return builder.node("Identity", [logits])
    out = logits if op is None else builder.node(op, [logits], op.lower(), **({} if op == "Sigmoid" else {"axis": 1}))
    for shape_op in sig.behind:
        if shape_op == "Reshape":
            out = builder.node("Reshape", [out, builder.int64(builder.name("shape"), [-1, sig.classes])])
        elif shape_op == "Squeeze":
            axes = builder.int64(builder.name("axes"), [2])
            out = builder.node("Squeeze", [builder.node("Unsqueeze", [out, axes]), axes])
        elif shape_op == "Cast":
            out = builder.node("Cast", [out], to=TensorProto.FLOAT)
        elif shape_op == "Transpose":
            out = builder.node("Transpose", [out], perm=[0, 1])
        elif shape_op == "QDQ":  # an int8 export's QuantizeLinear -> DequantizeLinear pair, scale 1/255
            scale = builder.init(builder.name("scale"), np.array(1 / 255, np.float32))
            zero = builder.name("zero")
            builder.inits.append(numpy_helper.from_array(np.array(0, np.uint8), zero))
            out = builder.node("DequantizeLinear", [builder.node("QuantizeLinear", [out, scale, zero]), scale, zero])
        else:
            out = builder.node(shape_op, [out])
    return out


def resnet50(sig: Signature = Signature(), seed: int = 0) -> onnx.ModelProto:
    def body(g: GraphBuilder, x: str) -> str:
        y = g.conv_bn(x, 3, 64, 7, stride=2, pad=3, name="stem")
        y = g.pool("MaxPool", y, 3, 2, 1)
        cin = 64
        for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=False), start=1):
            for block in range(blocks):
                stride = 2 if block == 0 and stage > 1 else 1
                name = f"layer{stage}.{block}"
                out = g.conv_bn(y, cin, width, 1, name=f"{name}.1")
                out = g.conv_bn(out, width, width, 3, stride=stride, name=f"{name}.2")
                out = g.conv_bn(out, width, width * 4, 1, name=f"{name}.3", relu=False, gamma=0.2)
                shortcut = y
                if block == 0:
                    shortcut = g.conv_bn(y, cin, width * 4, 1, stride=stride, name=f"{name}.down", relu=False)
                y = g.node("Relu", [g.node("Add", [out, shortcut])])
                cin = width * 4
        return g.head(y, 2048, sig)

    return _wrap(GraphBuilder(seed), body, sig, "resnet50")


def inception_v3(sig: Signature = Signature(spatial=299), seed: int = 0) -> onnx.ModelProto:
    def basic(g, x, cin, cout, k, stride=1, pad=0, name="c"):
        return g.conv_bn(x, cin, cout, k, stride, pad, name=name, eps=1e-3)

    def block_a(g, x, cin, pool_features, n):
        b1 = basic(g, x, cin, 64, 1, name=f"{n}.b1x1")
        b5 = basic(g, basic(g, x, cin, 48, 1, name=f"{n}.b5_1"), 48, 64, 5, pad=2, name=f"{n}.b5_2")
        bd = basic(g, x, cin, 64, 1, name=f"{n}.bd_1")
        bd = basic(g, bd, 64, 96, 3, pad=1, name=f"{n}.bd_2")
        bd = basic(g, bd, 96, 96, 3, pad=1, name=f"{n}.bd_3")
        bp = basic(g, g.pool("AveragePool", x, 3, 1, 1), cin, pool_features, 1, name=f"{n}.bp")
        return g.node("Concat", [b1, b5, bd, bp], axis=1), 224 + pool_features

    def block_b(g, x, cin, n):
        b3 = basic(g, x, cin, 384, 3, stride=2, name=f"{n}.b3")
        bd = basic(g, x, cin, 64, 1, name=f"{n}.bd_1")
        bd = basic(g, bd, 64, 96, 3, pad=1, name=f"{n}.bd_2")
        bd = basic(g, bd, 96, 96, 3, stride=2, name=f"{n}.bd_3")
        bp = g.pool("MaxPool", x, 3, 2)
        return g.node("Concat", [b3, bd, bp], axis=1), 480 + cin

    def block_c(g, x, cin, c7, n):
        b1 = basic(g, x, cin, 192, 1, name=f"{n}.b1x1")
        b7 = basic(g, x, cin, c7, 1, name=f"{n}.b7_1")
        b7 = basic(g, b7, c7, c7, (1, 7), pad=(0, 3), name=f"{n}.b7_2")
        b7 = basic(g, b7, c7, 192, (7, 1), pad=(3, 0), name=f"{n}.b7_3")
        bd = basic(g, x, cin, c7, 1, name=f"{n}.bd_1")
        bd = basic(g, bd, c7, c7, (7, 1), pad=(3, 0), name=f"{n}.bd_2")
        bd = basic(g, bd, c7, c7, (1, 7), pad=(0, 3), name=f"{n}.bd_3")
        bd = basic(g, bd, c7, c7, (7, 1), pad=(3, 0), name=f"{n}.bd_4")
        bd = basic(g, bd, c7, 192, (1, 7), pad=(0, 3), name=f"{n}.bd_5")
        bp = basic(g, g.pool("AveragePool", x, 3, 1, 1), cin, 192, 1, name=f"{n}.bp")
        return g.node("Concat", [b1, b7, bd, bp], axis=1), 768

    def block_d(g, x, cin, n):
        b3 = basic(g, basic(g, x, cin, 192, 1, name=f"{n}.b3_1"), 192, 320, 3, stride=2, name=f"{n}.b3_2")
        b7 = basic(g, x, cin, 192, 1, name=f"{n}.b7_1")
        b7 = basic(g, b7, 192, 192, (1, 7), pad=(0, 3), name=f"{n}.b7_2")
        b7 = basic(g, b7, 192, 192, (7, 1), pad=(3, 0), name=f"{n}.b7_3")
        b7 = basic(g, b7, 192, 192, 3, stride=2, name=f"{n}.b7_4")
        bp = g.pool("MaxPool", x, 3, 2)
        return g.node("Concat", [b3, b7, bp], axis=1), 512 + cin

    def block_e(g, x, cin, n):
        b1 = basic(g, x, cin, 320, 1, name=f"{n}.b1x1")
        b3 = basic(g, x, cin, 384, 1, name=f"{n}.b3_1")
        b3 = g.node("Concat", [basic(g, b3, 384, 384, (1, 3), pad=(0, 1), name=f"{n}.b3_2a"),
                               basic(g, b3, 384, 384, (3, 1), pad=(1, 0), name=f"{n}.b3_2b")], axis=1)
        bd = basic(g, x, cin, 448, 1, name=f"{n}.bd_1")
        bd = basic(g, bd, 448, 384, 3, pad=1, name=f"{n}.bd_2")
        bd = g.node("Concat", [basic(g, bd, 384, 384, (1, 3), pad=(0, 1), name=f"{n}.bd_3a"),
                               basic(g, bd, 384, 384, (3, 1), pad=(1, 0), name=f"{n}.bd_3b")], axis=1)
        bp = basic(g, g.pool("AveragePool", x, 3, 1, 1), cin, 192, 1, name=f"{n}.bp")
        return g.node("Concat", [b1, b3, bd, bp], axis=1), 2048

    def body(g: GraphBuilder, x: str) -> str:
        y = basic(g, x, 3, 32, 3, stride=2, name="Conv2d_1a")
        y = basic(g, y, 32, 32, 3, name="Conv2d_2a")
        y = basic(g, y, 32, 64, 3, pad=1, name="Conv2d_2b")
        y = g.pool("MaxPool", y, 3, 2)
        y = basic(g, y, 64, 80, 1, name="Conv2d_3b")
        y = basic(g, y, 80, 192, 3, name="Conv2d_4a")
        y = g.pool("MaxPool", y, 3, 2)
        c = 192
        for n, pf in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            y, c = block_a(g, y, c, pf, n)
        y, c = block_b(g, y, c, "Mixed_6a")
        for n, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            y, c = block_c(g, y, c, c7, n)
        y, c = block_d(g, y, c, "Mixed_7a")
        for n in ("Mixed_7b", "Mixed_7c"):
            y, c = block_e(g, y, c, n)
        return g.head(y, c, sig)

    return _wrap(GraphBuilder(seed), body, sig, "inception_v3")


def tiny(sig: Signature = Signature(spatial=32), seed: int = 0, width: int = 16) -> onnx.ModelProto:
    """A two-conv net: fast, yet every pixel and channel reaches the logits."""

    def body(g: GraphBuilder, x: str) -> str:
        y = g.conv_bn(x, 3, width, 3, stride=2, name="conv1")
        y = g.conv_bn(y, width, width, 3, name="conv2")
        return g.head(y, width, sig)

    return _wrap(GraphBuilder(seed), body, sig, "tiny")


def parameter_count(model: onnx.ModelProto) -> int:
    """Trainable parameters as PyTorch counts them (BatchNorm running statistics left out)."""
    return sum(
        int(np.prod(t.dims)) for t in model.graph.initializer
        if not t.name.endswith(RUNNING_STATS) and t.name != "input_scale"
    )


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
