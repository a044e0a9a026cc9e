"""People (customers and experts alike) and the chat identities that lead to them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from concierge.model.base import Base, enum_column, new_id, utcnow


class Channel(StrEnum):
    TELEGRAM = "telegram"
    DISCORD = "discord"
    WEB = "web"


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("per"))
    display_name: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(35), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Only for age gating (customers 13+, experts 18+, under-18 sessions recorded).
    birth_date: Mapped[date | None] = mapped_column(default=None)
    # Set instead of a birth date for someone under 13: all that is kept to refuse them again.
    refused_until: Mapped[date | None] = mapped_column(default=None)
    # Muted (flooding, abuse, an operator): their messages are ignored until then.
    muted_until: Mapped[datetime | None] = mapped_column(default=None)
    muted_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class ChannelIdentity(Base):
    """A Telegram user id, Discord user id or widget visitor id, bound to one person."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("cid"))
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    external_id: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    person: Mapped[Person] = relationship(foreign_keys=[person_id], lazy="raise")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
