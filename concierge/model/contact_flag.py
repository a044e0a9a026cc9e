"""Contact details someone wrote where the other party would read them, hidden and kept for operators."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, new_id, utcnow


class ContactFlag(Base):
    __tablename__ = "contact_flags"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("flg"))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    # Where it was written: listing.headline, listing.bio, listing.skills, request, review,
    # review.reply, moneyback; `ref` is that thing's id.
    place: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str | None] = mapped_column(String(64), default=None)
    original: Mapped[str] = mapped_column(Text)
    kinds: Mapped[str] = mapped_column(String(100))  # what was found: "phone,email"
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
