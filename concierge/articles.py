"""Self-help articles in the core: the library the matcher searches (shared plus every business's
own), what each offer of an article did, and the usefulness operators look at.

The shared library ships with the code (knowledge/data/articles); businesses add theirs with
`concierge articles add`, stored in `business_articles` and read at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, NotFound
from concierge.model import ArticleOffer, ArticleOutcome, Business, BusinessArticle, utcnow
from knowledge.articles import Article, ArticleText, load_library
from matcher.articles import ArticleHit, ArticlePassage

ArticleKey = tuple[str | None, str]  # (business id or None for the shared library, article id)


class ArticleLibrary:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], reads: async_sessionmaker[AsyncSession]
    ) -> None:
        self._sessions = sessions
        self._reads = reads
        self._articles: dict[ArticleKey, Article] = {}

    async def load(self) -> int:
        """The shared library plus every business's articles; how many in all."""
        articles: dict[ArticleKey, Article] = {(None, article.id): article for article in load_library()}
        async with self._reads() as db:
            for row in await db.scalars(select(BusinessArticle)):
                articles[(row.business_id, row.article_id)] = _from_row(row)
        self._articles = articles
        return len(articles)

    def passages(self) -> list[ArticlePassage]:
        return [
            ArticlePassage(article.id, article.business_id, text.title, text.body)
            for article in self._articles.values()
            for text in article.texts.values()
        ]

    def get(self, hit: ArticleHit) -> Article | None:
        return self._articles.get((hit.business_id, hit.article_id))

    async def offered(self, request_id: str, hit: ArticleHit, language: str) -> None:
        async with self._sessions.begin() as db:
            db.add(
                ArticleOffer(
                    request_id=request_id,
                    article_id=hit.article_id,
                    business_id=hit.business_id,
                    language=language,
                    score=hit.score,
                )
            )

    async def answer(self, request_id: str, outcome: ArticleOutcome) -> bool:
        """Record the person's answer once: False when there was no unanswered offer for the request."""
        async with self._sessions.begin() as db:
            changed = await db.execute(
                update(ArticleOffer)
                .where(ArticleOffer.request_id == request_id, ArticleOffer.outcome == ArticleOutcome.SHOWN)
                .values(outcome=outcome, answered_at=utcnow())
            )
        return bool(getattr(changed, "rowcount", 0))


def _from_row(row: BusinessArticle) -> Article:
    texts = {lang: ArticleText(entry["title"], entry["body"]) for lang, entry in row.texts.items()}
    return Article(row.article_id, row.category, texts, row.business_id)


# ---------------------------------------------------------------------- business articles


async def add_business_articles(
    sessions: async_sessionmaker[AsyncSession], business_id: str, articles: Sequence[Article]
) -> tuple[int, int]:
    """Insert or replace a business's articles by id: (added, replaced)."""
    async with sessions.begin() as db:
        if await db.get(Business, business_id) is None:
            raise NotFound("business", business_id)
        existing = set(
            await db.scalars(
                select(BusinessArticle.article_id).where(
                    BusinessArticle.business_id == business_id,
                    BusinessArticle.article_id.in_([article.id for article in articles]),
                )
            )
        )
        for article in articles:
            row = BusinessArticle(
                business_id=business_id,
                article_id=article.id,
                category=article.category,
                texts=article.to_json()["texts"],
            )
            await db.merge(row)
    return len(articles) - len(existing), len(existing)


async def business_articles(
    reads: async_sessionmaker[AsyncSession], business_id: str | None = None
) -> list[Article]:
    query = select(BusinessArticle).order_by(BusinessArticle.business_id, BusinessArticle.article_id)
    if business_id is not None:
        query = query.where(BusinessArticle.business_id == business_id)
    async with reads() as db:
        return [_from_row(row) for row in await db.scalars(query)]


async def remove_business_article(
    sessions: async_sessionmaker[AsyncSession], business_id: str, article_id: str
) -> None:
    async with sessions.begin() as db:
        gone = await db.execute(
            delete(BusinessArticle).where(
                BusinessArticle.business_id == business_id, BusinessArticle.article_id == article_id
            )
        )
        if not getattr(gone, "rowcount", 0):
            raise DomainError(f"business {business_id} has no article {article_id}")


# ---------------------------------------------------------------------- usefulness


@dataclass(frozen=True, slots=True)
class ArticleStats:
    article_id: str
    business_id: str | None
    shown: int  # every offer, answered or not
    solved: int
    still_want: int
    last_shown: datetime | None

    @property
    def solved_rate(self) -> float | None:
        """Of the answered offers, the share that solved the problem."""
        answered = self.solved + self.still_want
        return self.solved / answered if answered else None

    def to_json(self) -> dict[str, object]:
        rate = self.solved_rate
        return {
            "article": self.article_id,
            "business": self.business_id,
            "shown": self.shown,
            "solved": self.solved,
            "still_want": self.still_want,
            "solved_rate": None if rate is None else round(rate, 3),
            "last_shown": self.last_shown.isoformat() if self.last_shown else None,
        }


async def article_stats(db: AsyncSession, *, business_id: str | None = None) -> list[ArticleStats]:
    """Usefulness per article, most shown first (the CLI and the operators' console read this)."""

    def count(outcome: ArticleOutcome) -> ColumnElement[int]:
        return func.sum(case((ArticleOffer.outcome == outcome, 1), else_=0))

    query = (
        select(
            ArticleOffer.article_id,
            ArticleOffer.business_id,
            func.count(),
            count(ArticleOutcome.SOLVED),
            count(ArticleOutcome.STILL_WANT),
            func.max(ArticleOffer.shown_at),
        )
        .group_by(ArticleOffer.article_id, ArticleOffer.business_id)
        .order_by(func.count().desc(), ArticleOffer.article_id)
    )
    if business_id is not None:
        query = query.where(ArticleOffer.business_id == business_id)
    rows = await db.execute(query)
    return [
        ArticleStats(
            str(article_id),
            business,
            int(shown),
            int(solved or 0),
            int(still or 0),
            last if last is None or last.tzinfo else last.replace(tzinfo=utcnow().tzinfo),
        )
        for article_id, business, shown, solved, still, last in rows
    ]
