"""Bottleneck vectors: a classifier cut below its head, run through the same pipeline as `batch`.

    clf = imgclass.load("resnet50")
    for item in clf.embed(["photos/"], normalize=True):   # one Embedding per image, input order
        print(item.path, item.vector.shape)                # (2048,); item.error for a bad input
    vector = clf.vector("cat.jpg")                          # one image: a float32 array

The bottleneck is found by `imgclass.graph.surgery.find_head` (the pooled vector the
classifier's linear layer reads); a model without one is refused with ModelError.
Nothing here prints.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from imgclass.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

    from imgclass.graph.runtime import Device, Runner
    from imgclass.graph.surgery import Head
    from imgclass.store.loader import LoadedModel

OUTPUT = "imgclass/embedding"


@dataclass(frozen=True)
class Embedding:
    """One input's bottleneck vector (float32, `dim` values), or the reason it has none."""

    path: str
    model: str
    vector: np.ndarray | None = None
    error: str | None = None
    item: Any = None  # the pipeline input it came from (a path, or a training view)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        vector = None if self.vector is None else [float(v) for v in self.vector]
        return {"path": self.path, "model": self.model, "vector": vector, "error": self.error}


class Bottleneck:
    """A session on the model's graph cut at its bottleneck (the pooled vector before the classifier)."""

    def __init__(self, model: LoadedModel, device: Device, threads: int | None = None, spinning: bool = False):
        from imgclass.graph import surgery

        proto = surgery.load_model_proto(model.path)
        self.head: Head = surgery.find_head(proto, str(model.path))
        self.model = model
        self._cut = surgery.extract(proto, {OUTPUT: self.head.pooled}, dims={OUTPUT: self.head.dim})
        del proto
        self._device, self._threads, self._spinning = device, threads, spinning
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.head.dim

    @property
    def runner(self) -> Runner:
        """ONNX Runtime on the cut graph, started on first use (ModelError if it cannot load)."""
        with self._lock:
            if self._runner is None:
                self._runner = self._start()
            return self._runner

    def _start(self) -> Runner:

        from imgclass.graph.runtime import Runner, create_session

        data = self._cut.SerializeToString()
        session, providers = create_session(data, self._device, self._threads, name=self.model.path,
                                            spinning=self._spinning)  # fmt: skip
        self._cut = None  # ONNX Runtime holds its own copy now
        signature = replace(self.model.signature, output_name=OUTPUT, classes=self.dim)
        return Runner(session, signature, providers, self._device)

    def run(self, batch: np.ndarray, normalize: bool = False) -> np.ndarray:
        """[N, dim] float32 vectors for a preprocessed batch; `normalize`: each scaled to unit L2 norm."""
        import numpy as np

        vectors = self.runner.run(batch).astype(np.float32, copy=False)
        if vectors.shape[1] != self.dim:
            raise ModelError(f"{self.model.path}: the bottleneck gave {vectors.shape[1]} values, expected {self.dim}")
        return l2_normalize(vectors) if normalize else vectors


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (an all-zero row stays zero)."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class EmbedOutputs:
    """Pipeline outputs that are bottleneck vectors (see `pipeline.Outputs`)."""

    def __init__(self, bottleneck: Bottleneck, normalize: bool = False):
        self.bottleneck, self.normalize = bottleneck, normalize

    def ready(self) -> None:
        self.bottleneck.runner  # noqa: B018 - raises the cut graph's load error

    def run(self, batch: np.ndarray) -> list[Any]:
        return list(self.bottleneck.run(batch, self.normalize))

    def record(self, item: Any, path: str, result: Any, error: str | None, raw: str | None = None) -> Embedding:
        vector = None if result is None else result.copy()
        return Embedding(path, self.bottleneck.model.name, vector, error, item)
