"""The Open Inference Protocol v2 (KServe, Triton) over HTTP: infer requests in, responses out.

Two extensions that `tritonclient` uses by default are spoken:
- binary tensor data: the body is a JSON header of `Inference-Header-Content-Length`
  bytes followed by the raw tensors, in input (output) order; a tensor's JSON says
  `"parameters": {"binary_data_size": n}`. A BYTES element is a 4-byte
  little-endian length and the bytes;
- classification: an output requested with `"parameters": {"classification": K}`
  is answered with K `"<probability>:<index>:<label>"` strings per image instead
  of the probabilities.

Inputs are one BYTES tensor of encoded images (any shape; one image per element).
Without the binary extension an element is a base64 string.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

INPUT = "IMAGE"
OUTPUT = "PROBABILITIES"
HEADER = "Inference-Header-Content-Length"
MAX_ELEMENTS = 1024  # images in one infer request


class ProtocolError(Exception):
    """A request the protocol cannot read (HTTP 400 with the message)."""


@dataclass(frozen=True)
class Requested:
    name: str
    binary: bool
    classification: int | None = None


@dataclass
class InferRequest:
    id: str | None
    images: list[bytes]
    outputs: list[Requested] = field(default_factory=list)


def metadata(name: str, classes: int, platform: str = "onnxruntime_onnx") -> dict[str, Any]:
    return {
        "name": name,
        "versions": ["1"],
        "platform": platform,
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, classes]}],
    }


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """Read an infer request (JSON, or JSON + binary tensors); raises ProtocolError."""
    head, binary = _split(body, header_length)
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"the request is not JSON: {err}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise ProtocolError('the request needs "inputs": a list with one BYTES tensor of encoded images')
    images: list[bytes] = []
    offset = 0
    for tensor in request["inputs"]:
        if not isinstance(tensor, dict) or tensor.get("name") != INPUT:
            raise ProtocolError(f"unknown input {_name(tensor)}: this model takes one input, {INPUT!r}")
        if tensor.get("datatype") != "BYTES":
            raise ProtocolError(f"input {INPUT!r} is BYTES (encoded images), not {tensor.get('datatype')!r}")
        found, offset = _elements(tensor, binary, offset)
        images += found
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data follow the tensors the header describes")
    if not images or len(images) > MAX_ELEMENTS:
        raise ProtocolError(f"give between 1 and {MAX_ELEMENTS} images, not {len(images)}")
    params = request.get("parameters")
    params = params if isinstance(params, dict) else {}
    outputs = _outputs(request.get("outputs"), bool(params.get("binary_data_output", False)))
    ident = request.get("id")
    return InferRequest(str(ident) if ident is not None else None, images, outputs)


def _name(tensor: Any) -> str:
    return repr(tensor.get("name")) if isinstance(tensor, dict) else repr(type(tensor).__name__)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(f"{HEADER} is not a number: {header_length[:40]!r}") from None
    if not 0 < length <= len(body):
        raise ProtocolError(f"{HEADER} {length} is outside the body of {len(body)} bytes")
    return body[:length], body[length:]


def _shape_count(tensor: dict) -> int:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ProtocolError(f"input {INPUT!r} needs a shape: a list of sizes, e.g. [2]")
    count = 1
    for dim in shape:
        count *= dim
        if count > MAX_ELEMENTS:
            raise ProtocolError(f"at most {MAX_ELEMENTS} images in one request")
    return count


def _elements(tensor: dict, binary: bytes, offset: int) -> tuple[list[bytes], int]:
    count = _shape_count(tensor)
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is None:
        return _json_elements(tensor.get("data"), count), offset
    if not isinstance(size, int) or size < 0 or offset + size > len(binary):
        raise ProtocolError(f"binary_data_size {size!r} is more than the {len(binary) - offset} bytes left")
    chunk, items, pos = binary[offset : offset + size], [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise ProtocolError("a BYTES element's 4-byte length is cut off")
        (length,) = struct.unpack_from("<I", chunk, pos)
        if pos + 4 + length > len(chunk):
            raise ProtocolError(f"a BYTES element of {length} bytes runs past its tensor")
        items.append(chunk[pos + 4 : pos + 4 + length])
        pos += 4 + length
    if len(items) != count:
        raise ProtocolError(f"the shape says {count} images, the binary data holds {len(items)}")
    return items, offset + size


def _json_elements(data: Any, count: int) -> list[bytes]:
    flat: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    if len(flat) != count or not all(isinstance(s, str) for s in flat):
        raise ProtocolError(f"the shape says {count} images; give that many base64 strings in data")
    try:
        return [base64.b64decode(s, validate=True) for s in flat]
    except (binascii.Error, ValueError):
        raise ProtocolError("a data element is not base64 (send images as base64 strings, or as binary data)") from None


def _outputs(requested: Any, binary_default: bool) -> list[Requested]:
    if requested is None:
        return [Requested(OUTPUT, binary_default)]
    if not isinstance(requested, list):
        raise ProtocolError('"outputs" must be a list')
    result = []
    for item in requested:
        if not isinstance(item, dict) or item.get("name") != OUTPUT:
            raise ProtocolError(f"unknown output {_name(item)}: this model has one output, {OUTPUT!r}")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError('an output\'s "parameters" must be an object')
        k = params.get("classification")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ProtocolError(f"classification must be a count of at least 1, not {k!r}")
        result.append(Requested(OUTPUT, bool(params.get("binary_data", binary_default)), k))
    return result


def classification(row: np.ndarray, k: int, labels: tuple[str, ...]) -> list[str]:
    """The top `k` of one row as `"<probability>:<index>:<label>"` (ties by index, as records rank them)."""
    import numpy as np

    k = min(k, row.shape[0])
    order = np.lexsort((np.arange(row.shape[0]), -row))[:k]
    return [f"{float(row[i]):.9g}:{int(i)}:{labels[i]}" for i in order]


def encode_response(model: str, request: InferRequest, probs: np.ndarray, labels: tuple[str, ...]
                    ) -> tuple[bytes, int | None]:  # fmt: skip
    """The response body and, when any output is binary, the length of its JSON header."""
    outputs, chunks = [], []
    for want in request.outputs:
        if want.classification is not None:
            rows = [classification(row, want.classification, labels) for row in probs]
            shape = [len(rows), len(rows[0]) if rows else 0]
            tensor: dict[str, Any] = {"name": want.name, "datatype": "BYTES", "shape": shape}
            if want.binary:
                data = b"".join(struct.pack("<I", len(b)) + b for r in rows for b in (s.encode() for s in r))
            else:
                tensor["data"] = [s for r in rows for s in r]
        else:
            tensor = {"name": want.name, "datatype": "FP32", "shape": list(probs.shape)}
            if want.binary:
                data = probs.astype("<f4").tobytes()
            else:
                tensor["data"] = [float(v) for v in probs.astype("float32").ravel()]
        if want.binary:
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        outputs.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    head = json.dumps(response).encode()
    return (head + b"".join(chunks), len(head)) if chunks else (head, None)
