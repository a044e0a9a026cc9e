"""Self-help articles a business wrote for its communities, and what each offer of an article did."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, JSONDocument, enum_column, utcnow


class ArticleOutcome(StrEnum):
    SHOWN = "shown"  # offered, not answered (yet)
    SOLVED = "solved"  # "That solved it": the request closed
    STILL_WANT = "still_want"  # "Still want an expert": the request went on to the experts


class BusinessArticle(Base):
    __tablename__ = "business_articles"

    business_id: Mapped[str] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    texts: Mapped[dict[str, Any]] = mapped_column(JSONDocument)  # language → {"title", "body"}
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArticleOffer(Base):
    """One request's article: offered at most once per request, so the request is the key."""

    __tablename__ = "article_offers"

    request_id: Mapped[str] = mapped_column(
        ForeignKey("help_requests.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[str] = mapped_column(String(64), index=True)
    # The business that wrote it; None for the shared library. Kept when the article is removed,
    # so its history still counts.
    business_id: Mapped[str | None] = mapped_column(String(32), default=None)
    language: Mapped[str] = mapped_column(String(8))  # the language the person read it in
    score: Mapped[float] = mapped_column()
    outcome: Mapped[ArticleOutcome] = mapped_column(
        enum_column(ArticleOutcome, "article_outcome"), default=ArticleOutcome.SHOWN
    )
    shown_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
