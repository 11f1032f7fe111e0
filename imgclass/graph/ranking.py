"""From raw model outputs to ranked predictions: the model's activation, background offset, top-k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclass.graph.activation import Activation, softmax
from imgclass.records import Prediction

__all__ = ["Ranker", "softmax"]


@dataclass(frozen=True)
class Ranker:
    labels: tuple[str, ...]
    offset: int  # 1: output 0 is a background class
    activation: Activation
    top: int
    threshold: float = 0.0

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities over all outputs (background included), as the model means them."""
        return self.activation.probabilities(outputs)

    def rank(self, outputs: np.ndarray) -> list[list[Prediction]]:
        return self.rank_probabilities(self.probabilities(outputs)[:, self.offset :])

    def rank_probabilities(self, probs: np.ndarray) -> list[list[Prediction]]:
        """Top-k of probabilities over the labels (background class already left out)."""
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
