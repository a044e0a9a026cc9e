"""One person blocking another: the pair is never matched again, whoever blocked whom."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, utcnow


class Block(Base):
    __tablename__ = "blocks"
    __table_args__ = (CheckConstraint("person_id <> blocked_id", name="not_self"),)

    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True)
    blocked_id: Mapped[str] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
