"""The matcher: understand a request, filter the listings that may take it, rank the rest."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from knowledge.taxonomy import Taxonomy
from matcher.articles import ArticleHit, ArticleIndex, ArticlePassage, wants_a_person
from matcher.budget import Budget, parse_budget
from matcher.categories import CategoryClassifier
from matcher.embedders import Embedder
from matcher.errors import IndexCorrupt
from matcher.facets import PRICING_MODES, SLOT_MINUTES, Facets
from matcher.index import ExpertIndex
from matcher.language import LanguageDetectorPort, LanguageGuess, LanguageSource
from matcher.listing import Listing
from matcher.ranking import (
    Priors,
    Weights,
    bayesian_rating,
    combine,
    price_fit,
    reliability,
    responsiveness,
)
from matcher.understanding import Understanding, clean
from matcher.when import parse_when

_RETRIEVE = 100  # semantic candidates re-ranked with every factor
_VOTERS = 20  # nearest listings whose categories vote on the request's category
_MIN_SEMANTIC = 0.1  # below this (rescaled) similarity, only a category match keeps a candidate
_EMBED_BATCH = 512


class NoExperts(StrEnum):
    """Why a result has no experts; the dialogue explains or widens the search."""

    CANNOT_UNDERSTAND = "cannot_understand"
    EMPTY_CATALOGUE = "empty_catalogue"
    NONE_AVAILABLE = "none_available"  # nobody who fits passes the filters (time, language…)


@dataclass(frozen=True, slots=True)
class MatchQuery:
    text: str
    locale: str = "en"  # the person's language when the text does not tell
    timezone: str = "UTC"
    currency: str = "EUR"
    now: datetime | None = None
    language: str | None = None  # forced language (the dialogue knows it)
    at: datetime | None = None  # forced time, overriding what the text says
    top: int = 3
    include_offline: bool = False  # skip the availability filter
    accept_english: bool = False
    any_language: bool = False  # skip the language filter (evaluation, operators)
    business_id: str | None = None
    business_only: bool = False  # only that business's experts (else: theirs first)
    blocked: frozenset[str] = frozenset()
    # Also look for a self-help article at or above this rescaled similarity (a new request's
    # first reading); None: experts only.
    article_threshold: float | None = None


@dataclass(frozen=True, slots=True)
class RankedExpert:
    id: str
    score: float
    reasons: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 4), "reasons": self.reasons}


@dataclass(frozen=True, slots=True)
class MatchResult:
    understanding: Understanding
    experts: list[RankedExpert] = field(default_factory=list)
    no_experts: NoExperts | None = None
    article: ArticleHit | None = None

    def to_json(self) -> dict[str, Any]:
        u = self.understanding
        return {
            "language": u.language.code if u.language else None,
            "language_source": u.language.source.value if u.language else None,
            "category": u.category.category if u.category else None,
            "category_confidence": u.category.confidence if u.category else None,
            "when": u.when.isoformat() if u.when else None,
            "budget": u.budget.to_json() if u.budget else None,
            "problem": u.problem.value if u.problem else None,
            "experts": [expert.to_json() for expert in self.experts],
            "no_experts": self.no_experts.value if self.no_experts else None,
            "article": (
                {"id": self.article.article_id, "score": self.article.score} if self.article else None
            ),
        }


@dataclass(slots=True)
class SyncReport:
    embedded: int = 0
    removed: int = 0
    listings: int = 0


class Matcher:
    def __init__(
        self,
        embedder: Embedder,
        detector: LanguageDetectorPort,
        taxonomy: Taxonomy,
        *,
        weights: Weights | None = None,
        priors: Priors | None = None,
        exact_limit: int = 20_000,
        index_dir: Path | None = None,
    ) -> None:
        self.embedder = embedder
        self.detector = detector
        self.taxonomy = taxonomy
        self.weights = weights or Weights()
        self.priors = priors or Priors()
        self.classifier = CategoryClassifier(embedder, taxonomy)
        self._index_dir = index_dir
        self._exact_limit = exact_limit
        self.index = self._load_index()
        self._listings: dict[str, Listing] = {}
        self._facets = Facets([c.id for c in taxonomy.categories])
        self._availability: dict[tuple[bool, int], NDArray[np.bool_]] = {}
        self.articles = ArticleIndex(embedder.dim)

    def load_articles(self, passages: Sequence[ArticlePassage]) -> int:
        """Replace the self-help articles searched alongside experts; how many articles."""
        self.articles.load(passages, self.embedder, self._index_dir)
        return len(self.articles)

    def _load_index(self) -> ExpertIndex:
        if self._index_dir is not None:
            try:
                return ExpertIndex.load(
                    self._index_dir,
                    embedder=self.embedder.name,
                    dim=self.embedder.dim,
                    exact_limit=self._exact_limit,
                )
            except IndexCorrupt:
                pass  # rebuilt from the catalogue by the first sync
        return ExpertIndex(self.embedder.dim, exact_limit=self._exact_limit)

    # ------------------------------------------------------------------ catalogue

    def sync(
        self,
        listings: Iterable[Listing],
        *,
        progress: bool = False,
        vectors: NDArray[np.float32] | None = None,
    ) -> SyncReport:
        """Make the index and the facts match `listings`: embed only what changed.

        `vectors`, when given, are precomputed embeddings in the order of `listings` (bulk loads
        from another pipeline, benchmarks); nothing is embedded then.
        """
        listings = list(listings)
        given = {listing.id: row for row, listing in enumerate(listings)} if vectors is not None else {}
        wanted = {listing.id: listing for listing in listings}
        stale = [item for item in wanted.values() if self.index.fingerprint(item.id) != item.fingerprint]
        report = SyncReport(listings=len(wanted))
        gone = [listing_id for listing_id in self.index.listing_ids() if listing_id not in wanted]
        report.removed = self.index.remove(gone)
        bar = tqdm(
            total=len(stale),
            desc="indexing listings",
            unit="listing",
            disable=not progress or len(stale) < 1000,
        )
        for start in range(0, len(stale), _EMBED_BATCH):
            chunk = stale[start : start + _EMBED_BATCH]
            if vectors is not None:
                rows = vectors[[given[item.id] for item in chunk]]
            else:
                rows = self.embedder.embed_passages([item.text for item in chunk])
            report.embedded += self.index.upsert(
                [(item.id, item.fingerprint, v) for item, v in zip(chunk, rows, strict=True)]
            )
            bar.update(len(chunk))
        bar.close()
        self._listings = wanted
        self._rebuild_facets()
        if self._index_dir is not None and (report.embedded or report.removed):
            self.index.save(self._index_dir, embedder=self.embedder.name)
        return report

    def update(self, listings: Iterable[Listing]) -> SyncReport:
        """Add or change a few listings (an expert going online, editing a listing) in place."""
        changed = list(listings)
        stale = [item for item in changed if self.index.fingerprint(item.id) != item.fingerprint]
        report = SyncReport(listings=len(self._listings))
        if stale:
            rows = self.embedder.embed_passages([item.text for item in stale])
            report.embedded = self.index.upsert(
                [(item.id, item.fingerprint, v) for item, v in zip(stale, rows, strict=True)]
            )
        for item in changed:
            self._listings[item.id] = item
        if stale:  # new positions (and tombstones): rebuild the facts around them
            self._rebuild_facets()
            if self._index_dir is not None:
                self.index.save(self._index_dir, embedder=self.embedder.name)
        else:
            for item in changed:
                position = self.index.position(item.id)
                if position is not None:
                    self._facets.set(position, item)
            self._availability.clear()
        report.listings = len(self._listings)
        return report

    def remove(self, listing_ids: Iterable[str]) -> int:
        gone = [listing_id for listing_id in listing_ids if self._listings.pop(listing_id, None) is not None]
        removed = self.index.remove(gone)
        if removed:
            self._rebuild_facets()
        return removed

    def listing(self, listing_id: str) -> Listing | None:
        return self._listings.get(listing_id)

    def _rebuild_facets(self) -> None:
        facets = Facets([c.id for c in self.taxonomy.categories], capacity=max(1024, self.index.size))
        for listing_id, listing in self._listings.items():
            position = self.index.position(listing_id)
            if position is not None:
                facets.set(position, listing)
        # Tombstones keep default rows (offline, no language, no hours): every filter drops them.
        facets.extend_to(self.index.size)
        self._facets = facets
        self._availability.clear()

    # ------------------------------------------------------------------ requests

    def understand(self, query: MatchQuery) -> tuple[Understanding, NDArray[np.float32] | None]:
        text, problem = clean(query.text)
        if problem is not None:
            return Understanding(text=text, problem=problem), None
        now = query.now or datetime.now(ZoneInfo("UTC"))
        if query.language:
            language = LanguageGuess(query.language, 1.0, LanguageSource.LOCALE)
        else:
            language = self.detector.detect(text, fallback=query.locale)
        vector = self.embedder.embed_queries([text])[0]
        votes = self._expert_votes(vector)
        category = self.classifier.classify(vector, votes)
        zone = _zone_or_utc(query.timezone)
        when = query.at or parse_when(text, language.code, zone, now)
        budget = parse_budget(text, language.code, query.currency)
        return Understanding(text, None, language, category, when, budget), vector

    def _expert_votes(self, vector: NDArray[np.float32]) -> dict[str, float]:
        votes: dict[str, float] = {}
        for position, similarity in self.index.search(vector, _VOTERS):
            weight = math.exp(self.classifier.semantic(similarity) / 0.05)
            for name in self._facets.categories_of(position):
                votes[name] = votes.get(name, 0.0) + weight
        return votes

    def match(self, query: MatchQuery) -> MatchResult:
        understanding, vector = self.understand(query)
        if vector is None or understanding.language is None:
            return MatchResult(understanding, no_experts=NoExperts.CANNOT_UNDERSTAND)
        result = self.find(vector, understanding, query)
        if query.article_threshold is not None and not wants_a_person(understanding):
            hit = self.articles.search(
                vector, query.business_id, self.classifier.semantic, query.article_threshold
            )
            if hit is not None:
                result = replace(result, article=hit)
        return result

    def find(
        self, vector: NDArray[np.float32], understanding: Understanding, query: MatchQuery
    ) -> MatchResult:
        """Filter, search and rank for an understood request (the part after embedding)."""
        if len(self.index) == 0:
            return MatchResult(understanding, no_experts=NoExperts.EMPTY_CATALOGUE)
        allowed = self.allowed(query, understanding)
        found = self.index.search(vector, max(_RETRIEVE, query.top), allowed)
        ranked = self._rank(found, query, understanding) if found else []
        if not ranked:
            return MatchResult(understanding, no_experts=NoExperts.NONE_AVAILABLE)
        return MatchResult(understanding, ranked)

    def _available(self, moment: datetime | None, query: MatchQuery) -> NDArray[np.bool_]:
        """Who may take the request at `moment` (None: now). Cached per 15-minute slot."""
        now = moment is None
        at = query.now or datetime.now(UTC) if now else moment
        assert at is not None
        slot = int(at.timestamp()) // (SLOT_MINUTES * 60)
        key = (now, slot)
        cached = self._availability.get(key)
        if cached is None:
            facets = self._facets
            cached = facets.open_at(at)
            if now:  # now: also online and not in a session
                cached &= facets.column("online").astype(bool) & ~facets.column("busy").astype(bool)
            if len(self._availability) > 64:
                self._availability.clear()
            self._availability[key] = cached
        return cached

    def allowed(self, query: MatchQuery, understanding: Understanding) -> NDArray[np.bool_]:
        """The hard filters as a mask over index positions."""
        facets = self._facets
        allowed = np.ones(len(facets), dtype=bool)
        if not query.include_offline:
            allowed &= self._available(understanding.when, query)
        if not query.any_language and understanding.language is not None:
            speaks = facets.speaks(understanding.language.code)
            if query.accept_english:
                speaks |= facets.speaks("en")
            allowed &= speaks
        if query.business_id is not None and query.business_only:
            allowed &= facets.in_business(query.business_id)
        for listing_id in query.blocked:
            position = self.index.position(listing_id)
            if position is not None:
                allowed[position] = False
        return allowed

    def _rank(
        self, found: Sequence[tuple[int, float]], query: MatchQuery, understanding: Understanding
    ) -> list[RankedExpert]:
        """Every factor for every candidate at once (numpy), reasons only for those returned."""
        facets = self._facets
        positions = np.asarray([position for position, _ in found])
        similarity = np.asarray([score for _, score in found], dtype=np.float64)
        column = facets.column
        floor = self.classifier.floor
        semantic = np.clip((similarity - floor) / (1 - floor), 0.0, 1.0)
        guess = understanding.category
        if guess is None or guess.category is None:
            category = np.full(positions.size, 0.5)
        else:
            bit = 1 << facets.category_names.index(guess.category)
            category = ((column("category_bits")[positions] & bit) != 0).astype(float)
        code = understanding.language.code if understanding.language else query.locale
        language = np.where(
            facets.speaks(code)[positions], 1.0, np.where(facets.speaks("en")[positions], 0.5, 0.0)
        )
        stars = bayesian_rating(
            column("rating_count")[positions], column("rating_total")[positions], self.priors
        )
        factors = {
            "semantic": semantic,
            "category": category,
            "language": language,
            "rating": (stars - 1) / 4,
            "price": self._price_fit(positions, understanding.budget),
            "responsiveness": responsiveness(
                column("accepted")[positions], column("answered")[positions], self.priors
            ),
            "reliability": reliability(column("kept")[positions], column("no_shows")[positions], self.priors),
        }
        score = combine(factors, self.weights)
        home = facets.businesses.index(query.business_id) if query.business_id in facets.businesses else -2
        outside = column("business")[positions] != home
        # Someone free but unrelated is no help: keep those in the request's category or close
        # enough in meaning. A community's own experts come first; then the score decides.
        relevant = (category == 1.0) | (semantic >= _MIN_SEMANTIC)
        ranked = np.lexsort((-score, outside))
        order = ranked[relevant[ranked]][: query.top]
        return [
            RankedExpert(
                facets.ids[positions[i]],
                float(score[i]),
                {name: round(float(values[i]), 3) for name, values in factors.items()}
                | {"stars": round(float(stars[i]), 2)},
            )
            for i in order
        ]

    def _price_fit(self, positions: NDArray[np.intp], budget: Budget | None) -> NDArray[np.float64]:
        facets = self._facets
        modes = facets.column("mode")[positions]
        per_minute = modes == PRICING_MODES.index("per_minute")
        cost = facets.column("price")[positions] * np.where(per_minute, self.priors.expected_minutes, 1)
        currency = (
            facets.currencies.index(budget.currency)
            if budget and budget.currency in facets.currencies
            else -1
        )
        return price_fit(
            modes == PRICING_MODES.index("free"),
            cost,
            facets.column("currency")[positions] == currency,
            budget.amount if budget else None,
        )


def _zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")
