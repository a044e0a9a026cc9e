"""Ratings and reviews both parties give after a session."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from concierge.model.base import Base, new_id, utcnow

if TYPE_CHECKING:
    from concierge.model.session import Session


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("session_id", "author_id"),
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_in_range"),
        CheckConstraint("author_id <> subject_id", name="not_self"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("rev"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    session: Mapped[Session] = relationship(foreign_keys=[session_id], lazy="raise")
    author_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    subject_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    stars: Mapped[int]
    text: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Double-blind: published when both have rated, or after a grace period.
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    hidden: Mapped[bool] = mapped_column(default=False)
    hidden_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # The subject's one public answer.
    reply_text: Mapped[str | None] = mapped_column(Text, default=None)
    reply_at: Mapped[datetime | None] = mapped_column(default=None)
