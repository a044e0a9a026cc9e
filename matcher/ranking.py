"""How candidates are scored once the hard filters have passed them.

    score = Σ weight_f · factor_f / Σ weight_f, every factor in [0, 1]

- semantic: cosine similarity of the request and the listing, rescaled per model so that the
  model's typical similarity of unrelated texts is 0 and identical texts 1;
- category: 1 when the listing lists the request's category, 0.5 when the category is unsure;
- language: 1 when the expert speaks the customer's language, 0.5 for English accepted instead;
- rating: the Bayesian average of the stars, (C·m + Σ stars) / (C + n) with prior mean m and
  weight C, rescaled from 1–5 to 0–1, so 5.0 from one review does not beat 4.8 from 200;
- price: 1 for free or within the budget, falling linearly to 0 at twice the budget; 0.5 when no
  budget was given or the currencies differ (no exchange rates here: neutral, not a guess);
  a per-minute rate is priced for `expected_minutes`;
- responsiveness: accepted / answered offers with a Beta prior (an expert without history sits
  at the prior, neither buried nor boosted);
- reliability: booked sessions the expert turned up for / all their booked sessions, with a
  Beta prior of `kept_weight` virtual sessions at `kept_rate`: a new expert sits at the prior,
  one no-show moves them a little (0.90 → 0.82), a long record of them a lot (20 of 40 → 0.58).
  A factor of its own rather than folded into responsiveness: answering offers quickly and
  turning up to a booked session are different promises, and each has its own weight.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

FACTORS = ("semantic", "category", "language", "rating", "price", "responsiveness", "reliability")


@dataclass(frozen=True, slots=True)
class Weights:
    semantic: float = 0.45
    category: float = 0.15
    language: float = 0.10
    rating: float = 0.15
    price: float = 0.10
    responsiveness: float = 0.05
    reliability: float = 0.10

    @classmethod
    def parse(cls, text: str) -> Weights:
        """`"semantic=0.5,rating=0.2"`: named weights override the defaults."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in FACTORS:
                raise ValueError(f"{part!r}: expected one of {', '.join(FACTORS)} as name=number")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{part!r}: {raw.strip()!r} is not a number") from None
            if not 0 <= value <= 10:
                raise ValueError(f"{part!r}: weights must be between 0 and 10")
            values[name] = value
        weights = cls(**values)
        if sum(weights.as_dict().values()) <= 0:
            raise ValueError("at least one weight must be positive")
        return weights

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Priors:
    rating_mean: float = 4.0
    rating_weight: float = 10.0
    accept_rate: float = 0.8
    accept_weight: float = 5.0
    kept_rate: float = 0.9
    kept_weight: float = 10.0
    expected_minutes: int = 30


Numbers = NDArray[np.float64]


def bayesian_rating(count: NDArray[Any], total: NDArray[Any], priors: Priors) -> Numbers:
    """Stars on the 1–5 scale, pulled towards the prior mean by a few virtual reviews."""
    return (priors.rating_weight * priors.rating_mean + total) / (priors.rating_weight + count)


def responsiveness(accepted: NDArray[Any], answered: NDArray[Any], priors: Priors) -> Numbers:
    return (priors.accept_rate * priors.accept_weight + accepted) / (priors.accept_weight + answered)


def reliability(kept: NDArray[Any], no_shows: NDArray[Any], priors: Priors) -> Numbers:
    """Share of booked sessions kept, pulled towards the prior by a few virtual sessions."""
    share: Numbers = (priors.kept_rate * priors.kept_weight + kept) / (priors.kept_weight + kept + no_shows)
    return share


def price_fit(
    free: NDArray[np.bool_],
    cost: NDArray[Any],
    same_currency: NDArray[np.bool_],
    budget: int | None,
) -> Numbers:
    """`cost`: the session price, or the per-minute rate times `Priors.expected_minutes`."""
    if budget is None or budget <= 0:
        fit = np.full(free.shape, 0.5)
    else:
        over = np.clip(1.0 - (cost - budget) / budget, 0.0, 1.0)
        fit = np.where(same_currency, np.where(cost <= budget, 1.0, over), 0.5)
    return np.where(free, 1.0, fit)


def combine(factors: dict[str, Numbers], weights: Weights) -> Numbers:
    table = weights.as_dict()
    total = sum(table.values())
    score: Numbers = sum(table[name] * factors[name] for name in FACTORS) / total  # type: ignore[assignment]
    return score
