"""Scoring the matcher against a labelled set: category accuracy and NDCG@k with graded relevance.

A labelled query is `{"id", "text", "language", "category", "relevant": {listing id: grade}}`
with grades 1–3. Matching runs with availability and language filters off, so the numbers
measure understanding and semantic ranking rather than who happens to be online.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matcher.engine import Matcher, MatchQuery


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    id: str
    text: str
    language: str
    category: str
    relevant: Mapping[str, int]


def read_labelled(path: Path) -> list[LabelledQuery]:
    return [
        LabelledQuery(row["id"], row["text"], row["language"], row["category"], dict(row["relevant"]))
        for row in (json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip())
    ]


def ndcg_at(k: int, ranked: Sequence[str], relevant: Mapping[str, int]) -> float:
    gains = [(2 ** relevant.get(listing_id, 0) - 1) for listing_id in ranked[:k]]
    dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))
    ideal = sorted((2**grade - 1 for grade in relevant.values()), reverse=True)[:k]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


@dataclass(slots=True)
class EvaluationReport:
    queries: int = 0
    category_correct: int = 0  # the top category, even when below the confidence threshold
    category_confident_correct: int = 0
    unsure: int = 0
    ndcg5_total: float = 0.0
    seconds: float = 0.0
    by_language: dict[str, list[float]] = field(default_factory=dict)
    misses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def category_accuracy(self) -> float:
        return self.category_correct / self.queries if self.queries else 0.0

    @property
    def ndcg5(self) -> float:
        return self.ndcg5_total / self.queries if self.queries else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "category_accuracy": round(self.category_accuracy, 4),
            "confident_accuracy": round(
                self.category_confident_correct / max(1, self.queries - self.unsure), 4
            ),
            "unsure_rate": round(self.unsure / max(1, self.queries), 4),
            "ndcg@5": round(self.ndcg5, 4),
            "ms_per_query": round(1000 * self.seconds / max(1, self.queries), 2),
            "ndcg@5_by_language": {
                language: round(sum(values) / len(values), 4)
                for language, values in sorted(self.by_language.items())
            },
        }


def evaluate(matcher: Matcher, queries: Iterable[LabelledQuery]) -> EvaluationReport:
    report = EvaluationReport()
    for labelled in queries:
        started = time.perf_counter()
        result = matcher.match(
            MatchQuery(
                text=labelled.text, locale=labelled.language, top=5, include_offline=True, any_language=True
            )
        )
        report.seconds += time.perf_counter() - started
        report.queries += 1
        guess = result.understanding.category
        if guess is not None and guess.best == labelled.category:
            report.category_correct += 1
        if guess is not None and guess.category is None:
            report.unsure += 1
        elif guess is not None and guess.category == labelled.category:
            report.category_confident_correct += 1
        ranked = [expert.id for expert in result.experts]
        score = ndcg_at(5, ranked, labelled.relevant)
        report.ndcg5_total += score
        report.by_language.setdefault(labelled.language, []).append(score)
        if guess is None or guess.best != labelled.category or score < 0.3:
            report.misses.append(
                {"id": labelled.id, "category": guess.best if guess else None, "ndcg@5": round(score, 3)}
            )
    return report
