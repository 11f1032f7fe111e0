"""What an ONNX image classifier expects and returns, read from its graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgclass.errors import ModelError

_DTYPES = {1: "float32", 2: "uint8", 10: "float16", 11: "float64"}
# Shape-only ops: they pass a head's values through unchanged, so the head is looked for behind them.
PASS_THROUGH = {
    "Identity",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Cast",
    "Dropout",
    "QuantizeLinear",
    "DequantizeLinear",
}  # (de)quantising keeps values up to rounding: int8 exports


@dataclass(frozen=True)
class Signature:
    input_name: str
    layout: str  # "NCHW" or "NHWC"
    height: int | None  # None: dynamic
    width: int | None
    dtype: str  # float32, uint8, float16, float64
    batch: int | None  # None: dynamic batch axis
    output_name: str
    classes: int | None  # None: dynamic, known after the first run
    head: str  # the op that produces the output, shape-only ops looked through ("Softmax", "Sigmoid", "Gemm", ...)
    metadata: dict[str, str] = field(default_factory=dict)
    # The graph starts by re-normalising each channel from ImageNet mean/std to mean = std = 0.5:
    # torchvision's Inception v3 with transform_input=True (see _transform_input).
    transform_input: bool = False

    @property
    def softmax(self) -> bool:
        """The graph already ends in Softmax."""
        return self.head == "Softmax"

    @property
    def size(self) -> int | None:
        """The square input size, or None when dynamic or not square."""
        return self.height if self.height is not None and self.height == self.width else None

    def describe(self) -> dict:
        return {
            "input": self.input_name,
            "layout": self.layout,
            "height": self.height,
            "width": self.width,
            "dtype": self.dtype,
            "batch": self.batch if self.batch is not None else "dynamic",
            "output": self.output_name,
            "classes": self.classes,
            "softmax_in_graph": self.softmax,
            "head": self.head,
            "transform_input": self.transform_input,
        }


def _dims(value_info) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def inspect(model, path: Path) -> Signature:
    """Build the Signature of a parsed ONNX model, or raise ModelError (exit 3)."""
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelError(
            f"{path}: not a single-image classifier: it has {len(inputs)} inputs ({names}); imgclass needs exactly one"
        )
    image = inputs[0]
    dtype = _DTYPES.get(image.type.tensor_type.elem_type)
    dims = _dims(image)
    if dtype is None or len(dims) != 4:
        raise ModelError(f"{path}: input {image.name!r} is not a 4-D float or uint8 image tensor")
    if dims[1] == 3:
        layout = "NCHW"
    elif dims[3] == 3:
        layout = "NHWC"
    elif dims[1] is None and dims[3] is None:
        layout = "NCHW"
    else:
        raise ModelError(f"{path}: input {image.name!r} has shape {dims}: no axis of 3 colour channels")
    height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])

    output = _pick_output(graph, path)
    out_dims = _dims(output)
    return Signature(
        input_name=image.name,
        layout=layout,
        height=height,
        width=width,
        dtype=dtype,
        batch=dims[0],
        output_name=output.name,
        classes=out_dims[1],
        head=_head(graph, output.name),
        metadata={p.key: p.value for p in model.metadata_props},
        transform_input=_transform_input(graph, image.name, 1 if layout == "NCHW" else 3),
    )


def _pick_output(graph, path: Path):
    """The first float output shaped [N, classes]; MLPerf-style extra ArgMax outputs are skipped."""
    for output in graph.output:
        if _DTYPES.get(output.type.tensor_type.elem_type, "uint8").startswith("float") and len(_dims(output)) == 2:
            return output
    shapes = ", ".join(f"{o.name}{_dims(o)}" for o in graph.output)
    raise ModelError(f"{path}: not an image classifier: no output shaped [N, classes] (outputs: {shapes})")


def _head(graph, name: str) -> str:
    """The op type that produces output `name`, looking through shape-only ops ("" for a graph input)."""
    producers = {out: node for node in graph.node for out in node.output}
    seen = set()
    op = ""
    while name in producers and name not in seen:
        seen.add(name)
        node = producers[name]
        op = node.op_type
        if op not in PASS_THROUGH or not node.input:
            return op
        name = node.input[0]
    return op


# --- torchvision's transform_input ---------------------------------------------------------
# torchvision's Inception v3 (transform_input=True) starts its forward pass with, per channel c,
#     x_c = unsqueeze(x[:, c], 1) * (std_c / 0.5) + (mean_c - 0.5) / 0.5
# and concatenates the three: inputs normalised with ImageNet mean/std are turned into the
# mean = std = 0.5 inputs the weights were trained on. torch.onnx writes Gather (one index on
# the channel axis) -> Unsqueeze -> Mul -> Add per channel, then Concat; other exporters slice.
_SHAPE_ONLY = {"Unsqueeze", "Squeeze", "Reshape", "Identity"}


def _transform_input(graph, input_name: str, channel_axis: int) -> bool:
    """True when the graph input feeds torchvision's transform_input block, with its constants."""
    constants = _constants(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    branches = {}
    for node in consumers.get(input_name, []):
        channel = _selected_channel(node, constants, channel_axis)
        if channel is not None:
            branches[channel] = _affine_branch(node, consumers, constants)
    if sorted(branches) != [0, 1, 2] or any(b is None for b in branches.values()):
        return False
    concats = {id(b[2]) for b in branches.values()}
    concat = branches[0][2]
    if len(concats) != 1 or concat.op_type != "Concat" or _axis(concat, 4) != channel_axis:
        return False
    if [branches[c][3] for c in range(3)] != list(concat.input):
        return False
    return _is_imagenet_to_half([branches[c][0] for c in range(3)], [branches[c][1] for c in range(3)])


def _constants(graph) -> dict:
    """One-element constant tensors by name, from initializers and Constant nodes, as numbers."""
    from onnx import TensorProto, numpy_helper

    def one(tensor) -> bool:
        return all(d == 1 for d in tensor.dims) and tensor.data_location != TensorProto.EXTERNAL

    found = {t.name: numpy_helper.to_array(t).item() for t in graph.initializer if one(t)}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value" and one(attr.t):
                found[node.output[0]] = numpy_helper.to_array(attr.t).item()
            elif attr.name in ("value_float", "value_int"):
                found[node.output[0]] = attr.f if attr.name == "value_float" else attr.i
            elif attr.name == "value_ints" and len(attr.ints) == 1:
                found[node.output[0]] = attr.ints[0]
    return found


def _axis(node, rank: int, default: int = 0) -> int:
    axis = next((a.i for a in node.attribute if a.name == "axis"), default)
    return axis % rank


def _selected_channel(node, constants: dict, channel_axis: int) -> int | None:
    """The one channel a Gather or Slice on the channel axis picks out, else None."""
    if node.op_type == "Gather" and len(node.input) == 2 and _axis(node, 4) == channel_axis:
        index = constants.get(node.input[1])
        return int(index) % 3 if index is not None else None
    if node.op_type == "Slice" and len(node.input) >= 4:
        starts, ends, axes = (constants.get(name) for name in node.input[1:4])
        steps = constants.get(node.input[4]) if len(node.input) > 4 and node.input[4] else 1
        if starts is None or ends is None or axes is None:
            return None
        if axes % 4 == channel_axis and steps == 1 and ends == starts + 1:
            return int(starts)
    return None


def _affine_branch(node, consumers: dict, constants: dict):
    """Follow one channel through shape-only ops, Mul and Add: (scale, bias, next node, its input)."""
    scale, bias, name = 1.0, 0.0, node.output[0]
    seen: set[str] = set()
    while True:
        following = consumers.get(name, [])
        if len(following) != 1:
            return None
        nxt = following[0]
        if nxt.op_type in _SHAPE_ONLY:
            name = nxt.output[0]
            continue
        if nxt.op_type not in ("Mul", "Add") or nxt.op_type in seen:
            return (scale, bias, nxt, name) if seen == {"Mul", "Add"} else None
        other = nxt.input[1] if nxt.input[0] == name else nxt.input[0]
        value = constants.get(other)
        if value is None:
            return None
        scale, bias = (scale * value, bias * value) if nxt.op_type == "Mul" else (scale, bias + value)
        seen.add(nxt.op_type)
        name = nxt.output[0]


def _is_imagenet_to_half(scales: list[float], biases: list[float]) -> bool:
    """Do the per-channel x * scale + bias map ImageNet-normalised inputs to mean = std = 0.5?"""
    from imgclass._util.resources import load_json

    imagenet = load_json("presets.json")["presets"]["torchvision"]
    expected_scales = [s / 0.5 for s in imagenet["std"]]
    expected_biases = [(m - 0.5) / 0.5 for m in imagenet["mean"]]
    pairs = zip(scales + biases, expected_scales + expected_biases, strict=True)
    return all(abs(got - want) < 1e-4 for got, want in pairs)
