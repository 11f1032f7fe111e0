"""What an ONNX image classifier expects and returns, read from its graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgclass.errors import ModelError

_DTYPES = {1: "float32", 2: "uint8", 10: "float16", 11: "float64"}
# Shape-only ops: they pass a head's values through unchanged, so the head is looked for behind them.
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast", "Dropout",
                 "QuantizeLinear", "DequantizeLinear"}  # (de)quantising keeps values up to rounding: int8 exports


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
        raise ModelError(f"{path}: not a single-image classifier: it has {len(inputs)} inputs ({names}); imgclass needs exactly one")
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
        if op not in _PASS_THROUGH or not node.input:
            return op
        name = node.input[0]
    return op
