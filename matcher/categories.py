"""Which taxonomy category a request belongs to, from embedding similarity.

Two signals: the request against the taxonomy's example requests, labels and descriptions in
every UI language (mean of the closest few per category, softmaxed), and the categories of the
listings closest to the request (the expert-side signal). Below `threshold` the answer is
"unsure" so that the dialogue asks instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from knowledge.taxonomy import Taxonomy
from matcher.embedders import Embedder

_NEIGHBOURS = 3


@dataclass(frozen=True, slots=True)
class CategoryGuess:
    category: str | None  # None: unsure
    confidence: float
    best: str  # the top category even when unsure, for the dialogue to suggest
    scores: Mapping[str, float]


class CategoryClassifier:
    def __init__(
        self,
        embedder: Embedder,
        taxonomy: Taxonomy,
        *,
        threshold: float = 0.4,
        temperature: float = 0.04,
        expert_weight: float = 0.3,
    ) -> None:
        self.names = [category.id for category in taxonomy.categories]
        texts: list[str] = []
        owners: list[int] = []
        for index, category in enumerate(taxonomy.categories):
            for language in taxonomy.languages:
                for text in (
                    category.label(language),
                    category.description(language),
                    *category.examples.get(language, ()),
                ):
                    texts.append(text)
                    owners.append(index)
        self._vectors = embedder.embed_passages(texts)
        self._owners = np.asarray(owners)
        # Each category's rows as one row of a table (short ones padded with a row that always
        # sorts first), so a request's per-category top scores are one sort instead of a mask,
        # a sort and a mean per category, which cost more than the similarities themselves.
        rows = [np.flatnonzero(self._owners == index) for index in range(len(self.names))]
        self._table: NDArray[np.intp] | None = None
        if min(map(len, rows), default=0) >= _NEIGHBOURS:  # else a short one's top would hold the pad
            self._table = np.full((len(rows), max(map(len, rows))), len(texts))
            for index, mine in enumerate(rows):
                self._table[index, : len(mine)] = mine
        self.floor = self._unrelated_similarity()
        self.threshold = threshold
        # Models differ in how far apart unrelated texts sit (USE ≈ 0.05, E5 ≈ 0.75): the
        # softmax temperature scales with the room between "unrelated" and "identical".
        self.temperature = temperature * (1 - self.floor)
        self.expert_weight = expert_weight

    def _unrelated_similarity(self) -> float:
        """Mean similarity between examples of different categories: this model's "unrelated"."""
        similarities = self._vectors @ self._vectors.T
        different = self._owners[:, None] != self._owners[None, :]
        return float(np.clip(similarities[different].mean(), 0.0, 0.95))

    def semantic(self, similarity: float) -> float:
        """A cosine similarity rescaled so that "unrelated" is 0 and "identical" is 1."""
        # Plain floats: called for each neighbour of every request, where numpy's per-call
        # overhead was most of the cost (the same float64 arithmetic, NaN passes through).
        return min(max((similarity - self.floor) / (1 - self.floor), 0.0), 1.0)

    def example_scores(self, query: NDArray[np.float32]) -> NDArray[np.float64]:
        similarities = self._vectors @ query
        if self._table is not None:
            padded = np.append(similarities, np.float32(-np.inf))
            top = np.sort(padded[self._table], axis=1)[:, -_NEIGHBOURS:]
            per_category = top.mean(axis=1).astype(np.float64)
        else:
            per_category = np.empty(len(self.names))
            for index in range(len(self.names)):
                mine = np.sort(similarities[self._owners == index])[-_NEIGHBOURS:]
                per_category[index] = mine.mean()
        logits = (per_category - per_category.max()) / self.temperature
        weights = np.exp(logits)
        probabilities: NDArray[np.float64] = weights / weights.sum()
        return probabilities

    def classify(
        self, query: NDArray[np.float32], expert_votes: Mapping[str, float] | None = None
    ) -> CategoryGuess:
        probabilities = self.example_scores(query)
        if expert_votes:
            total = sum(expert_votes.values())
            if total > 0:
                votes = np.asarray([expert_votes.get(name, 0.0) / total for name in self.names])
                probabilities = (1 - self.expert_weight) * probabilities + self.expert_weight * votes
        order = np.argsort(-probabilities)
        best = self.names[order[0]]
        confidence = float(probabilities[order[0]])
        return CategoryGuess(
            category=best if confidence >= self.threshold else None,
            confidence=round(confidence, 4),
            best=best,
            scores={self.names[i]: round(float(probabilities[i]), 4) for i in order[:3]},
        )
