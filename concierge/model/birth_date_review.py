"""A change of a stated birth date that would cross an age gate, waiting for an operator."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, enum_column, new_id, utcnow


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class BirthDateReview(Base):
    __tablename__ = "birth_date_reviews"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("bdr"))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    stated: Mapped[date]  # the new date asked for
    previous: Mapped[date | None]  # the date in force when asked (None: refused as under 13)
    status: Mapped[ReviewStatus] = mapped_column(
        enum_column(ReviewStatus, "birth_date_review_status"), default=ReviewStatus.PENDING, index=True
    )
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
