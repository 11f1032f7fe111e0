"""Turn an int8 QOperator ONNX classifier back into a float32 graph: a real fp32 stand-in.

    python scripts/dequantize.py ../shared/models/mobilenetv2-12-int8.onnx /tmp/mobilenetv2-fp32.onnx

The only real ImageNet model in this workplace (the ONNX Model Zoo's MobileNet v2-1.0-int8)
is already quantised. To measure what `imgclass models quantize` does to a real network we
need its float graph, which the zoo file does not carry. This script rebuilds one:

- QuantizeLinear / DequantizeLinear become Identity (every tensor stays float);
- QLinearConv, QLinearMatMul, com.microsoft QLinearAdd and QLinearGlobalAveragePool become
  Conv, MatMul, Add and GlobalAveragePool on the dequantised weights ((w - zero_point) * scale,
  per channel where the scale is; int32 biases times input scale times weight scale);
- every one of those is followed by a Clip to the range its uint8/int8 output could hold,
  because that saturation is part of what the int8 network computes (a zero point of 0 on a
  uint8 output is a fused ReLU, a top at 255 * scale a fused ReLU6).

The result computes what the int8 model computes without its rounding: a float32 model with
real trained weights, not a model that was ever trained in float32 as it stands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.nodes: list = []
        self.new_inits: dict[str, np.ndarray] = {}

    def value(self, name: str) -> np.ndarray:
        return self.inits[name]

    def const(self, name: str, array: np.ndarray) -> str:
        self.new_inits[name] = np.asarray(array, dtype=np.float32)
        return name

    def dequantized(self, name: str, scale: str, zero: str, axis: int = 0) -> str:
        """A float version of a quantised input: an initializer dequantised, or the (float) tensor itself."""
        if name not in self.inits:
            return name
        q = self.value(name).astype(np.float32)
        s, z = self.value(scale).astype(np.float32), self.value(zero).astype(np.float32)
        if s.ndim == 1 and s.size > 1:
            shape = [1] * q.ndim
            shape[axis] = s.size
            s, z = s.reshape(shape), z.reshape(shape)
        return self.const(f"{name}__float", (q - z) * s)

    def clip(self, out: str, scale: str, zero: str) -> tuple[str, list]:
        """The float output name for the op, and a Clip to what its integer output can hold."""
        low, high = _RANGE[self.value(zero).dtype]
        s, z = float(self.value(scale)), float(self.value(zero))
        lo = self.const(f"{out}__min", np.array((low - z) * s))
        hi = self.const(f"{out}__max", np.array((high - z) * s))
        raw = f"{out}__unclipped"
        return raw, [helper.make_node("Clip", [raw, lo, hi], [out], name=f"{out}__clip")]


def _convert(g: _Graph, node) -> list:
    i, op = list(node.input), node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if op == "QuantizeLinear":
        return [helper.make_node("Identity", [i[0]], [node.output[0]], name=node.name or node.output[0])]
    if op == "DequantizeLinear":
        return [helper.make_node("Identity", [i[0]], [node.output[0]], name=node.name or node.output[0])]
    if op == "QLinearConv":
        w = g.dequantized(i[3], i[4], i[5], axis=0)
        inputs = [i[0], w]
        if len(i) > 8 and i[8]:
            bias = g.value(i[8]).astype(np.float32) * float(g.value(i[1])) * g.value(i[4]).astype(np.float32)
            inputs.append(g.const(f"{i[8]}__float", bias))
        raw, clip = g.clip(node.output[0], i[6], i[7])
        return [helper.make_node("Conv", inputs, [raw], name=node.name or raw, **attrs), *clip]
    if op == "QLinearMatMul":
        a, b = g.dequantized(i[0], i[1], i[2], axis=1), g.dequantized(i[3], i[4], i[5], axis=1)
        raw, clip = g.clip(node.output[0], i[6], i[7])
        return [helper.make_node("MatMul", [a, b], [raw], name=node.name or raw), *clip]
    if op == "QLinearAdd":
        a, b = g.dequantized(i[0], i[1], i[2]), g.dequantized(i[3], i[4], i[5])
        raw, clip = g.clip(node.output[0], i[6], i[7])
        return [helper.make_node("Add", [a, b], [raw], name=node.name or raw), *clip]
    if op == "QLinearGlobalAveragePool":
        if attrs.get("channels_last"):
            raise SystemExit(f"{node.name}: channels_last QLinearGlobalAveragePool is not handled")
        raw, clip = g.clip(node.output[0], i[3], i[4])
        return [helper.make_node("GlobalAveragePool", [i[0]], [raw], name=node.name or raw), *clip]
    if op.startswith("QLinear") or op in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"):
        raise SystemExit(f"{node.name}: {op} is not handled by this script")
    return [node]


def dequantize(source: Path, dest: Path) -> Path:
    model = onnx.load(str(source))
    g = _Graph(model)
    nodes = [new for node in model.graph.node for new in _convert(g, node)]
    used = {name for node in nodes for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    kept += [numpy_helper.from_array(a, n) for n, a in g.new_inits.items() if n in used]
    graph = helper.make_graph(nodes, model.graph.name, list(model.graph.input), list(model.graph.output), kept)
    opsets = [helper.make_opsetid("", next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))]
    out = helper.make_model(graph, opset_imports=opsets, producer_name="imgclass scripts/dequantize.py")
    out.ir_version = model.ir_version
    meta = out.metadata_props.add()
    meta.key, meta.value = "imgclass.dequantized_from", source.name
    onnx.checker.check_model(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(dest))
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(dequantize(Path(sys.argv[1]), Path(sys.argv[2])))
