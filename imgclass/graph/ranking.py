"""From raw model outputs to ranked predictions: the model's activation, background offset, top-k.

With a `Grouping`, the ranked items are groups of classes instead of classes: a group's
probability is the sum of its classes' probabilities (softmax), or their maximum when the
scores are independent (multi-label: a sum could pass one and means nothing); each group
lists its top classes as `members`. With `abstain_below`, each row also says whether its
top probability (after grouping) is below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclass.graph.activation import Activation, softmax
from imgclass.records import Member, Prediction

__all__ = ["Grouping", "Ranker", "Ranking", "softmax"]


@dataclass(frozen=True)
class Grouping:
    """Named groups of class indices (resolved from `coarse` or a user's file by `imgclass.data.groups`)."""

    source: str  # "coarse", or the file the groups came from
    names: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]  # class indices of each group, in `names` order

    def probabilities(self, probs: np.ndarray, multi_label: bool) -> np.ndarray:
        """(rows, groups) float64: each group's members summed, or their maximum for multi-label scores."""
        probs = np.asarray(probs, dtype=np.float64)
        reduce = np.max if multi_label else np.sum  # a sum per row, in the same order whatever the batch
        return np.stack([reduce(probs[:, list(m)], axis=1) for m in self.members], axis=1)


class Ranking(list[Prediction]):
    """One row's ranked predictions (a list of Prediction); `abstained`: its top probability is below the
    ranker's `abstain_below` (None when there is none)."""

    abstained: bool | None = None


def top_order(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values of `row`, largest first, ties by index."""
    if k < row.shape[0]:
        part = np.argpartition(-row, k - 1)[:k]
    else:
        part = np.arange(row.shape[0])
    return part[np.lexsort((part, -row[part]))]


@dataclass(frozen=True)
class Ranker:
    labels: tuple[str, ...]
    offset: int  # 1: output 0 is a background class
    activation: Activation
    top: int
    threshold: float = 0.0
    grouping: Grouping | None = None
    abstain_below: float | None = None

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities over all outputs (background included), as the model means them."""
        return self.activation.probabilities(outputs)

    def rank(self, outputs: np.ndarray) -> list[Ranking]:
        return self.rank_probabilities(self.probabilities(outputs)[:, self.offset :])

    def rank_probabilities(self, probs: np.ndarray) -> list[Ranking]:
        """Top-k of probabilities over the labels (background class already left out), or of their groups."""
        if self.grouping is not None:
            return self._rank_groups(probs, self.grouping)
        k = min(self.top, probs.shape[1])
        results = []
        for row in probs:
            ranking = Ranking(
                Prediction(rank, int(i), self.labels[i], float(row[i]))
                for rank, i in enumerate(top_order(row, k), start=1)
                if row[i] >= self.threshold
            )
            results.append(self._verdict(ranking, row))
        return results

    def _rank_groups(self, probs: np.ndarray, grouping: Grouping) -> list[Ranking]:
        scores = grouping.probabilities(probs, self.activation.multi_label)
        k = min(self.top, len(grouping.names))
        results = []
        for row, group_row in zip(probs, scores, strict=True):
            ranking = Ranking()
            for g in top_order(group_row, k):
                if group_row[g] < self.threshold:
                    continue
                members = np.asarray(grouping.members[g])
                best = members[top_order(row[members], min(self.top, len(members)))]
                listed = tuple(Member(int(i), self.labels[i], float(row[i])) for i in best)
                ranking.append(Prediction(len(ranking) + 1, None, grouping.names[g], float(group_row[g]), listed))
            results.append(self._verdict(ranking, group_row))
        return results

    def _verdict(self, ranking: Ranking, row: np.ndarray) -> Ranking:
        if self.abstain_below is not None:
            ranking.abstained = bool(row.size == 0 or float(row.max()) < self.abstain_below)
        return ranking
