"""From raw model outputs to ranked predictions: softmax once, background offset, top-k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclass.records import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability."""
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x


@dataclass(frozen=True)
class Ranker:
    labels: tuple[str, ...]
    offset: int  # 1: output 0 is a background class
    softmax_in_graph: bool
    top: int
    threshold: float = 0.0

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities over all outputs (background included), softmax applied only if needed."""
        if self.softmax_in_graph:
            return outputs.astype(np.float64)
        return softmax(outputs)

    def rank(self, outputs: np.ndarray) -> list[list[Prediction]]:
        probs = self.probabilities(outputs)[:, self.offset :]
        k = min(self.top, probs.shape[1])
        results = []
        for row in probs:
            if k < row.shape[0]:
                part = np.argpartition(-row, k - 1)[:k]
            else:
                part = np.arange(row.shape[0])
            order = part[np.lexsort((part, -row[part]))]
            results.append(
                [
                    Prediction(rank, int(i), self.labels[i], float(row[i]))
                    for rank, i in enumerate(order, start=1)
                    if row[i] >= self.threshold
                ]
            )
        return results
