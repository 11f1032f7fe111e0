"""Read an ONNX file's graph (without its weights) and refuse unsafe or broken files.

Nothing outside the model's own folder is ever opened: external-data references
are checked from the graph alone, before ONNX Runtime reads a byte of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclass.errors import ModelError


def read_graph(path: Path):
    """Parse the ONNX protobuf at `path` without loading external data."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not a readable ONNX model ({_short(err)})") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read model: {err.strerror or err}") from None
    if not model.graph.node or not model.graph.output or not model.graph.input:
        raise ModelError(f"{path}: not an ONNX model (no graph inside; truncated or another kind of file?)")
    check_external_data(model, path)
    return model


def external_locations(model) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor whose data lives in another file."""
    from onnx import TensorProto

    return [
        (t.name, next((e.value for e in t.external_data if e.key == "location"), ""))
        for t in _all_tensors(model)
        if t.data_location == TensorProto.EXTERNAL
    ]


def check_external_data(model, path: Path) -> None:
    check_locations(external_locations(model), path)


def check_locations(locations: list[tuple[str, str]], path: Path) -> None:
    """Refuse external-data locations that are absolute or lead outside the model's folder."""
    folder = path.resolve().parent
    for name, location in locations:
        if not location or os.path.isabs(location) or Path(location).drive:
            raise ModelError(
                f"{path}: refused: tensor {name!r} points to external data at an absolute or empty path {location!r}"
            )
        target = (folder / location).resolve()
        if folder != target and folder not in target.parents:
            raise ModelError(
                f"{path}: refused: tensor {name!r} points to external data outside the model's folder ({location!r})"
            )


def _all_tensors(model):
    from onnx import AttributeProto

    def walk(graph):
        yield from graph.initializer
        yield from (s.values for s in graph.sparse_initializer)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == AttributeProto.GRAPH:
                    yield from walk(attr.g)
                elif attr.type == AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        yield from walk(sub)
                elif attr.type == AttributeProto.TENSORS:
                    yield from attr.tensors

    return walk(model.graph)


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:160]
