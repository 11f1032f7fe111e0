"""Graph surgery on ONNX classifiers: find the classifier head, cut the graph there, attach a new head.

Every CNN classifier imgclass serves ends the same way, whatever exported it:

    feature map [N,C,H,W] (or NHWC) -> global average pool -> flatten -> linear layer -> (softmax)
                                                      pooled vector [N,C] ^       ^ W [classes,C], b

`find_head` finds those pieces from the graph's structure, never from node names:
it walks back from the classifier output through activation and shape-only ops to
the linear layer (Gemm; MatMul + Add; a 1x1 Conv as in TF-slim; int8 QLinearMatMul
(+ QLinearAdd), QGemm or a QDQ-wrapped Gemm/MatMul), then from the linear layer's
input back through Flatten/Reshape/Squeeze/Dropout/QDQ to the pooling op
(GlobalAveragePool, ReduceMean over H and W, an AveragePool whose window is the
whole map, or int8 QLinearGlobalAveragePool). It returns one `Head` record:

- `head.feature_map`: the last spatial feature map (the pool's input), `head.layout` its axes;
- `head.pooled`: the bottleneck vector the linear layer reads (`head.dim` values per image);
- `head.weight` [classes, dim] and `head.bias` [classes]: the linear layer as float32
  arrays (int8 weights dequantised), so that logits = pooled @ weight.T + bias;
- `head.logits`: the linear layer's output tensor.

Tensors are `Tensor` records: a name in the graph, plus the scale and zero point of
an int8 tensor; `extract`/`expose` read them as float32 (adding a DequantizeLinear).

    model = load_model_proto(path)
    head = find_head(model, str(path))
    embedder = extract(model, {"embedding": head.pooled})            # the backbone alone
    both = expose(model, {"fmap": head.feature_map})                 # the classifier + the feature map
    mine = attach_classifier(model, head, weight, bias, metadata)    # backbone + a new Gemm + Softmax

Class activation maps (CAM_c = sum_k w_ck A_k) take `head.weight[c]` and the
feature map A from `expose(model, {"fmap": head.feature_map})`, on the axis
`head.channel_axis` of A.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclass.errors import ModelError
from imgclass.graph.signature import PASS_THROUGH

if TYPE_CHECKING:
    import numpy as np

# Ops between the pool and the linear layer that keep the pooled values (and their order) as they are.
_BETWEEN = PASS_THROUGH
# Ops after the linear layer on the way to the output: the head's activation, or the same shape-only ops.
_AFTER_LINEAR = _BETWEEN | {"Softmax", "LogSoftmax", "Sigmoid", "QLinearSoftmax", "QLinearSigmoid"}
PREFIX = "imgclass/"  # names of what surgery adds to a graph


@dataclass(frozen=True)
class Tensor:
    """A tensor in the graph; an int8 tensor also names its scale and zero point (read as float32 through them)."""

    name: str
    scale: str | None = None
    zero_point: str | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None


@dataclass(frozen=True)
class Head:
    """A classifier's head, found from the graph: feature map -> pool -> pooled vector -> linear layer."""

    input: str  # the image input
    output: str  # the classifier output the head was found from
    feature_map: Tensor  # the last spatial feature map: the pool's input
    layout: str  # "NCHW" or "NHWC": the feature map's axes
    pool: str  # the op that pools: GlobalAveragePool, ReduceMean, AveragePool, QLinearGlobalAveragePool
    pooled: Tensor  # the bottleneck vector the linear layer reads ([N, dim], or [N, dim, 1, 1] before a 1x1 Conv)
    linear: str  # Gemm, MatMul+Add, MatMul, Conv1x1, QLinearMatMul+QLinearAdd, QGemm, ...
    weight: np.ndarray  # [classes, dim] float32: logits = pooled @ weight.T + bias
    bias: np.ndarray  # [classes] float32
    logits: Tensor  # the linear layer's output

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def channel_axis(self) -> int:
        """The feature map's channel axis (1 for NCHW, 3 for NHWC)."""
        return 1 if self.layout == "NCHW" else 3

    def describe(self) -> dict[str, Any]:
        return {
            "feature_map": self.feature_map.name,
            "layout": self.layout,
            "pool": self.pool,
            "pooled": self.pooled.name,
            "dim": self.dim,
            "linear": self.linear,
            "classes": self.classes,
        }


def load_model_proto(path: Path):
    """The whole model, weights included (external data checked to stay in the model's folder first)."""
    from onnx.external_data_helper import load_external_data_for_model

    from imgclass.graph.reader import external_locations, read_graph

    model = read_graph(path)
    if external_locations(model):
        load_external_data_for_model(model, os.fspath(path.resolve().parent))
    return model


class _Graph:
    """Lookups over one graph: who produces a tensor, and constant values."""

    def __init__(self, model):
        graph = model.graph
        self.model = model
        self.producer = {out: node for node in graph.node for out in node.output}
        self.initializers = {t.name: t for t in graph.initializer}

    def node(self, name: str):
        return self.producer.get(name)

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor: an initializer, a Constant, or one dequantised/transposed/cast."""
        import numpy as np
        from onnx import numpy_helper

        if not name:
            return None
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            return _constant_value(node)
        if node.op_type in ("Identity", "Cast"):
            value = self.const(node.input[0])
            return None if value is None else value.astype(np.float32) if node.op_type == "Cast" else value
        if node.op_type == "Transpose":
            value = self.const(node.input[0])
            perm = _attr(node, "perm")
            return None if value is None else np.transpose(value, perm)
        if node.op_type == "DequantizeLinear":
            value, scale = self.const(node.input[0]), self.const(node.input[1])
            zero = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if value is None or scale is None or (len(node.input) > 2 and node.input[2] and zero is None):
                return None
            return dequantize(value, scale, zero, _attr(node, "axis", 1))
        return None


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _constant_value(node) -> np.ndarray | None:
    import numpy as np
    from onnx import numpy_helper

    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_floats"):
            return np.asarray(_attr(node, attribute.name), np.float32)
        if attribute.name in ("value_int", "value_ints"):
            return np.asarray(_attr(node, attribute.name), np.int64)
    return None


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1) -> np.ndarray:
    """(x - zero_point) * scale as float32; a 1-D scale applies along `axis` (per-channel quantisation)."""
    import numpy as np

    x = x.astype(np.float32)
    scale = np.asarray(scale, np.float32)
    zero = np.zeros_like(scale) if zero_point is None else np.asarray(zero_point).astype(np.float32)
    if scale.ndim == 1 and scale.size > 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((x - zero) * scale).astype(np.float32)


class _NoHead(Exception):
    """Why a graph has no classifier head (becomes a ModelError naming the model)."""


@dataclass(frozen=True)
class _Linear:
    kind: str
    weight: np.ndarray
    bias: np.ndarray
    data: Tensor  # what the linear layer reads
    logits: Tensor


def find_head(model, origin: str = "model") -> Head:
    """The classifier head of `model` (an onnx.ModelProto with its weights), or ModelError (exit 3) saying why not."""
    from imgclass.graph.signature import inspect

    signature = inspect(model, Path(origin))  # not a single-input [N, classes] classifier: ModelError already
    graph = _Graph(model)
    try:
        linear = _read_linear(graph, _walk_to_linear(graph, signature.output_name))
        feature_map, layout, pool = _walk_to_pool(graph, linear.data)
    except _NoHead as why:
        raise ModelError(f"{origin}: no bottleneck to train on: {why}") from None
    return Head(signature.input_name, signature.output_name, feature_map, layout, pool, linear.data, linear.kind,
                linear.weight, linear.bias, linear.logits)  # fmt: skip


_LINEAR_OPS = {"Gemm", "MatMul", "Add", "Conv", "QLinearMatMul", "QLinearAdd", "QGemm"}


def _walk_to_linear(graph: _Graph, output: str):
    name = output
    for _ in range(64):
        node = graph.node(name)
        if node is None:
            raise _NoHead(f"the output {output!r} is not computed by the graph")
        if node.op_type in _LINEAR_OPS:
            return node
        if node.op_type not in _AFTER_LINEAR or not node.input:
            raise _NoHead(f"the output {output!r} comes from a {node.op_type} node, not from a linear layer "
                          "(Gemm, MatMul, a 1x1 Conv or their int8 forms)")  # fmt: skip
        name = node.input[0]
    raise _NoHead(f"the output {output!r} passes through too many shape-only ops")


def _read_linear(graph: _Graph, node) -> _Linear:
    readers = {"Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Conv": _conv, "QLinearMatMul": _qlinear_matmul,
               "QLinearAdd": _qlinear_add, "QGemm": _qgemm}  # fmt: skip
    return readers[node.op_type](graph, node)


def _required(graph: _Graph, node, index: int, what: str) -> np.ndarray:
    value = graph.const(node.input[index]) if len(node.input) > index else None
    if value is None:
        raise _NoHead(f"the {node.op_type} node's {what} are not constant")
    return value


def _bias(value: np.ndarray | None, classes: int) -> np.ndarray:
    import numpy as np

    if value is None:
        return np.zeros(classes, np.float32)
    flat = np.asarray(value, np.float32).reshape(-1)
    if flat.size == 1:
        return np.full(classes, flat[0], np.float32)
    if flat.size != classes:
        raise _NoHead(f"the linear layer's bias has {flat.size} values for {classes} classes")
    return flat.copy()


def _gemm(graph: _Graph, node) -> _Linear:
    import numpy as np

    if _attr(node, "transA", 0):
        raise _NoHead("the Gemm transposes its input (transA=1)")
    b = _required(graph, node, 1, "weights").astype(np.float32)
    weight = b if _attr(node, "transB", 0) else b.T
    weight = np.ascontiguousarray(float(_attr(node, "alpha", 1.0)) * weight, np.float32)
    c = graph.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    bias = float(_attr(node, "beta", 1.0)) * _bias(c, weight.shape[0])
    return _Linear("Gemm", weight, bias.astype(np.float32), Tensor(node.input[0]), Tensor(node.output[0]))


def _matmul(graph: _Graph, node) -> _Linear:
    import numpy as np

    b = _required(graph, node, 1, "weights")
    if b.ndim != 2:
        raise _NoHead(f"the MatMul's weights have shape {list(b.shape)}, not [features, classes]")
    weight = np.ascontiguousarray(b.T, np.float32)
    return _Linear("MatMul", weight, _bias(None, weight.shape[0]), Tensor(node.input[0]), Tensor(node.output[0]))


def _add(graph: _Graph, node) -> _Linear:
    for mine, other in ((0, 1), (1, 0)):
        product = graph.node(node.input[mine])
        bias = graph.const(node.input[other])
        if product is not None and product.op_type in ("MatMul", "Gemm") and bias is not None:
            inner = _matmul(graph, product) if product.op_type == "MatMul" else _gemm(graph, product)
            total = inner.bias + _bias(bias, inner.weight.shape[0])
            return _Linear(f"{product.op_type}+Add", inner.weight, total, inner.data, Tensor(node.output[0]))
    raise _NoHead("the output comes from an Add that is not a MatMul plus a constant bias")


def _conv(graph: _Graph, node) -> _Linear:
    import numpy as np

    w = _required(graph, node, 1, "weights")
    if w.ndim != 4 or w.shape[2:] != (1, 1) or _attr(node, "group", 1) != 1:
        raise _NoHead(f"the output comes from a Conv with weights {list(w.shape)}, not a 1x1 classifier")
    bias = graph.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    weight = np.ascontiguousarray(w[:, :, 0, 0], np.float32)
    return _Linear("Conv1x1", weight, _bias(bias, weight.shape[0]), Tensor(node.input[0]), Tensor(node.output[0]))


def _quantized_const(graph: _Graph, node, first: int, what: str, axis: int) -> np.ndarray:
    value, scale = _required(graph, node, first, what), _required(graph, node, first + 1, f"{what} scales")
    zero = graph.const(node.input[first + 2]) if len(node.input) > first + 2 and node.input[first + 2] else None
    return dequantize(value, scale, zero, axis)


def _qtensor(node, first: int) -> Tensor:
    zero = node.input[first + 2] if len(node.input) > first + 2 and node.input[first + 2] else None
    return Tensor(node.input[first], node.input[first + 1], zero)


def _qoutput(node, scale: int) -> Tensor:
    """An int8 op's output, with the scale and zero point at inputs `scale`, `scale + 1`."""
    zero = node.input[scale + 1] if len(node.input) > scale + 1 and node.input[scale + 1] else None
    return Tensor(node.output[0], node.input[scale], zero)


def _qlinear_matmul(graph: _Graph, node) -> _Linear:
    import numpy as np

    b = _quantized_const(graph, node, 3, "weights", axis=-1)  # [features, classes], per-column scales
    weight = np.ascontiguousarray(b.T, np.float32)
    return _Linear("QLinearMatMul", weight, _bias(None, weight.shape[0]), _qtensor(node, 0), _qoutput(node, 6))


def _qlinear_add(graph: _Graph, node) -> _Linear:
    for mine, other in ((0, 3), (3, 0)):
        product = graph.node(node.input[mine])
        if product is not None and product.op_type == "QLinearMatMul" and graph.const(node.input[other]) is not None:
            inner = _qlinear_matmul(graph, product)
            bias = _quantized_const(graph, node, other, "bias", axis=-1)
            total = inner.bias + _bias(bias, inner.weight.shape[0])
            return _Linear("QLinearMatMul+QLinearAdd", inner.weight, total, inner.data, _qoutput(node, 6))
    raise _NoHead("the output comes from a QLinearAdd that is not a QLinearMatMul plus a constant bias")


def _qgemm(graph: _Graph, node) -> _Linear:
    """com.microsoft QGemm: int8 A and B, an int32 bias quantised with scale a_scale * b_scale."""
    import numpy as np

    if _attr(node, "transA", 0):
        raise _NoHead("the QGemm transposes its input (transA=1)")
    trans_b = bool(_attr(node, "transB", 0))
    b = _quantized_const(graph, node, 3, "weights", axis=0 if trans_b else 1)
    weight = np.ascontiguousarray(float(_attr(node, "alpha", 1.0)) * (b if trans_b else b.T), np.float32)
    bias = None
    if len(node.input) > 6 and node.input[6]:
        raw = _required(graph, node, 6, "bias").astype(np.float32)
        a_scale, b_scale = _required(graph, node, 1, "input scale"), _required(graph, node, 4, "weight scales")
        bias = raw * np.asarray(a_scale, np.float32) * np.asarray(b_scale, np.float32).reshape(-1)
    logits = _qoutput(node, 7) if len(node.input) > 7 and node.input[7] else Tensor(node.output[0])
    return _Linear("QGemm", weight, _bias(bias, weight.shape[0]), _qtensor(node, 0), logits)


def _walk_to_pool(graph: _Graph, data: Tensor) -> tuple[Tensor, str, str]:
    name = data.name
    for _ in range(64):
        node = graph.node(name)
        if node is None:
            raise _NoHead("the linear layer reads a graph input or a constant, not pooled features")
        op = node.op_type
        if op == "GlobalAveragePool":
            return Tensor(node.input[0]), "NCHW", op
        if op == "QLinearGlobalAveragePool":
            return _qtensor(node, 0), "NHWC" if _attr(node, "channels_last", 0) else "NCHW", op
        if op == "ReduceMean":
            return Tensor(node.input[0]), _reduce_layout(graph, node), op
        if op == "AveragePool":
            _check_global_window(graph, node)
            return Tensor(node.input[0]), "NCHW", op
        if op not in _BETWEEN or not node.input:
            raise _NoHead(f"the linear layer's input comes from a {op} node, not from a global average pool "
                          "(GlobalAveragePool, ReduceMean over height and width, or its int8 form)")  # fmt: skip
        name = node.input[0]
    raise _NoHead("too many shape-only ops between the pool and the linear layer")


def _reduce_layout(graph: _Graph, node) -> str:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = graph.const(node.input[1])
        axes = None if value is None else [int(a) for a in value.reshape(-1)]
    normal = sorted(int(a) % 4 for a in axes) if axes else None
    if normal == [2, 3]:
        return "NCHW"
    if normal == [1, 2]:
        return "NHWC"
    raise _NoHead(f"the linear layer's input is a ReduceMean over axes {axes}, not over height and width")


def _check_global_window(graph: _Graph, node) -> None:
    """An AveragePool is global when its window is the whole feature map (TF-slim's 8x8 average pool)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(graph.model)
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input)}
    info = infos.get(node.input[0])
    dims = [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim] if info else []
    window = list(_attr(node, "kernel_shape", []))
    if len(dims) != 4 or dims[2:] != window or any(_attr(node, "pads", [0]) or [0]):
        raise _NoHead(f"the linear layer's input comes from an AveragePool with window {window}, "
                      f"not the whole feature map ({dims[2:] if len(dims) == 4 else 'size unknown'})")  # fmt: skip


def _float_view(tensor: Tensor, out: str, flatten: bool) -> list:
    """Nodes that read `tensor` as float32 into `out` (dequantised when int8, flattened to [N, -1] if asked)."""
    from onnx import helper

    nodes, source = [], tensor.name
    if tensor.quantized:
        inputs = [tensor.name, str(tensor.scale), *([tensor.zero_point] if tensor.zero_point else [])]
        source = f"{out}/dequantized"
        nodes.append(helper.make_node("DequantizeLinear", inputs, [source], name=source))
    if flatten:
        nodes.append(helper.make_node("Flatten", [source], [out], name=out, axis=1))
    else:
        nodes.append(helper.make_node("Identity", [source], [out], name=out))
    return nodes


def _batch_dim(model) -> int | str:
    weights = {t.name for t in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in weights)
    first = image.type.tensor_type.shape.dim[0]
    return first.dim_value if first.HasField("dim_value") and first.dim_value > 0 else (first.dim_param or "N")


def _names(model) -> set[str]:
    graph = model.graph
    return ({o for n in graph.node for o in n.output} | {i.name for i in graph.input}
            | {t.name for t in graph.initializer})  # fmt: skip


def _check_new(model, names) -> None:
    taken = sorted(set(names) & _names(model))
    if taken:
        raise ValueError(f"tensor name(s) {taken} already exist in the graph")


def _build(model, nodes: list, outputs: list, initializers: tuple = (), metadata: Mapping[str, str] | None = None):
    """A new model: the nodes that `outputs` need (in graph order), their weights and inputs, nothing else."""
    from onnx import helper

    graph = model.graph
    needed = {o.name for o in outputs}
    kept = []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_inputs(node))
    kept.reverse()
    weights = [t for t in (*graph.initializer, *initializers) if t.name in needed]
    inputs = [i for i in graph.input if i.name in needed]
    infos = [v for v in graph.value_info if v.name in needed]
    new_graph = helper.make_graph(kept, graph.name or "imgclass", inputs, outputs, weights, value_info=infos)
    new_graph.sparse_initializer.extend(t for t in graph.sparse_initializer if t.values.name in needed)
    new = helper.make_model(new_graph, opset_imports=list(model.opset_import), producer_name="imgclass")
    new.ir_version = model.ir_version
    new.functions.extend(model.functions)
    source = model.metadata_props if metadata is None else [_Prop(k, v) for k, v in metadata.items()]
    for prop in source:
        new.metadata_props.add(key=prop.key, value=prop.value)
    return new


@dataclass(frozen=True)
class _Prop:
    key: str
    value: str


def _subgraph_inputs(node) -> set[str]:
    """Outer-scope names a node's subgraphs (If, Loop, Scan) read."""
    from onnx import AttributeProto

    names: set[str] = set()
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == AttributeProto.GRAPH else list(attribute.graphs)
        for sub in graphs:
            for inner in sub.node:
                names.update(inner.input)
                names.update(_subgraph_inputs(inner))
    return names


def _vector_info(name: str, batch: int | str, dim: int | None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, dim] if dim else None)


def extract(model, outputs: Mapping[str, Tensor], flatten: bool = True, dims: Mapping[str, int] | None = None):
    """The part of `model` that computes `outputs` (new output name -> tensor), read as float32.

    `flatten`: each output is flattened to [N, -1] (the pooled vector, whatever its rank).
    The classifier's own output and everything only it needs are left out; metadata is kept.
    """
    _check_new(model, outputs)
    added = [node for out, tensor in outputs.items() for node in _float_view(tensor, out, flatten)]
    batch = _batch_dim(model)
    infos = [_vector_info(name, batch, (dims or {}).get(name) if flatten else None) for name in outputs]
    return _build(model, [*model.graph.node, *added], infos)


def expose(model, outputs: Mapping[str, Tensor]):
    """`model` whole, with each tensor in `outputs` as an extra float32 output (for CAMs: the feature map)."""
    _check_new(model, outputs)
    added = [node for out, tensor in outputs.items() for node in _float_view(tensor, out, flatten=False)]
    infos = [*model.graph.output, *(_vector_info(name, _batch_dim(model), None) for name in outputs)]
    return _build(model, [*model.graph.node, *added], infos)


def attach_classifier(model, head: Head, weight: np.ndarray, bias: np.ndarray, metadata: Mapping[str, str],
                      output: str = "probabilities"):  # fmt: skip
    """A standalone classifier: `model` up to `head.pooled`, then Gemm(weight [classes, dim], bias) and Softmax.

    The model's own head and metadata are dropped; `metadata` becomes its metadata_props.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    weight = np.ascontiguousarray(weight, np.float32)
    bias = np.ascontiguousarray(bias, np.float32).reshape(-1)
    if weight.ndim != 2 or weight.shape[1] != head.dim or bias.shape != (weight.shape[0],):
        raise ValueError(f"weight {weight.shape} and bias {bias.shape} do not fit a {head.dim}-d bottleneck")
    pooled, logits = PREFIX + "bottleneck", PREFIX + "logits"
    names = {pooled, logits, output, PREFIX + "head.weight", PREFIX + "head.bias"}
    _check_new(model, names - {output} if output == head.output else names)
    inits = [
        numpy_helper.from_array(weight, PREFIX + "head.weight"),
        numpy_helper.from_array(bias, PREFIX + "head.bias"),
    ]
    added = [
        *_float_view(head.pooled, pooled, flatten=True),
        helper.make_node(
            "Gemm", [pooled, PREFIX + "head.weight", PREFIX + "head.bias"], [logits], name=logits, transB=1
        ),
        helper.make_node("Softmax", [logits], [output], name=PREFIX + "softmax", axis=1),
    ]
    keep = [node for node in model.graph.node if output not in node.output]
    info = _vector_info(output, _batch_dim(model), weight.shape[0])
    return _build(model, [*keep, *added], [info], tuple(inits), metadata)
