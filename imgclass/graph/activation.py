"""How a model's outputs become the probabilities it means: softmax, sigmoid, log-softmax or none.

The head is read from the graph (`Signature.head`: the op that produces the
output, shape-only ops looked through); ONNX metadata `imgclass.activation`
and the `--activation` flag override it. A name says what the model's scores
mean; `in_graph` says whether the graph has applied it already:

- softmax: one class per image; softmax is applied unless the graph ends in Softmax.
- logsoftmax: one class per image, log-probabilities; exp of a LogSoftmax output,
  else softmax (the same probabilities: softmax ignores a constant shift).
- sigmoid: independent per-class scores (multi-label): they do not sum to one;
  sigmoid is applied unless the graph ends in Sigmoid.
- none: the outputs are probabilities already and are used as they are (one class per image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgclass.errors import ConfigError, ImgclassError, UsageError
from imgclass.graph import metadata as props

if TYPE_CHECKING:
    import numpy as np

    from imgclass.graph.signature import Signature

ACTIVATIONS = ("softmax", "sigmoid", "logsoftmax", "none")
METADATA_KEY = props.ACTIVATION
# The op a graph ends in when it applies the activation itself (and the quantised ops that do the same).
_OPS = {"softmax": "Softmax", "sigmoid": "Sigmoid", "logsoftmax": "LogSoftmax"}
_DETECTED = {op: name for name, op in _OPS.items()} | {"QLinearSoftmax": "softmax", "QLinearSigmoid": "sigmoid"}
# Multi-label scores are independent: a class counts as present at sigmoid(0) = 0.5.
MULTI_LABEL_THRESHOLD = 0.5


@dataclass(frozen=True)
class Activation:
    name: str  # one of ACTIVATIONS
    in_graph: bool  # the graph applies it already: its outputs are (log-)probabilities
    source: str  # "detected (Sigmoid at the output)", "metadata imgclass.activation", "flag"

    @property
    def multi_label(self) -> bool:
        """Independent per-class probabilities that need not sum to one."""
        return self.name == "sigmoid"

    @property
    def default_threshold(self) -> float:
        """--threshold when none is given: 0.5 for multi-label scores, else keep every ranked class."""
        return MULTI_LABEL_THRESHOLD if self.multi_label else 0.0

    @property
    def applied(self) -> str:
        """What imgclass does to the outputs: "none" (already probabilities), "exp", "softmax" or "sigmoid"."""
        if self.name == "none" or (self.in_graph and self.name != "logsoftmax"):
            return "none"
        if self.name == "logsoftmax":
            return "exp" if self.in_graph else "softmax"
        return self.name

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Row-wise probabilities in float64, over all outputs (background included)."""
        import numpy as np

        x = outputs.astype(np.float64)
        step = self.applied
        if step == "exp":
            return np.exp(x)
        if step == "sigmoid":
            return sigmoid(x)
        return softmax(x) if step == "softmax" else x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability."""
    import numpy as np

    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function in float64, without overflow for large |x|."""
    import numpy as np

    x = logits.astype(np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def parse(value: str, origin: str, error: type[ImgclassError] = UsageError) -> str | None:
    """An activation name (case-insensitive; "auto" or "" = None: read it from the graph)."""
    name = value.strip().lower()
    if name in ("", "auto"):
        return None
    if name not in ACTIVATIONS:
        raise error(f"{origin} {value!r}: use auto, {', '.join(ACTIVATIONS)}")
    return name


def detect(signature: Signature) -> Activation:
    """What the head op says: Softmax, LogSoftmax, Sigmoid, or anything else = logits (softmax)."""
    head = signature.head
    if head in _DETECTED:
        return Activation(_DETECTED[head], True, f"detected ({head} at the output)")
    what = f"{head} at the output" if head else "no op at the output"
    return Activation("softmax", False, f"detected ({what}: logits)")


def choose_activation(signature: Signature, flag: str | None, origin: str) -> Activation:
    """--activation wins, then ONNX metadata imgclass.activation, then the graph's head."""
    name = parse(flag, "«activation»") if flag is not None else None
    source = "flag"
    if name is None and METADATA_KEY in signature.metadata:
        name = parse(signature.metadata[METADATA_KEY], f"{origin}: metadata {METADATA_KEY}", ConfigError)
        source = f"metadata {METADATA_KEY}"
    if name is None:
        return detect(signature)
    return Activation(name, name != "none" and _DETECTED.get(signature.head) == name, source)
