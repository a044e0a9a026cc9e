"""Businesses, the communities they link (groups, guilds, widget keys) and invitation codes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from concierge.model.base import Base, currency_column, enum_column, new_id, utcnow
from concierge.model.person import Channel


class RosterScope(StrEnum):
    ROSTER_ONLY = "roster_only"  # requests from its communities go only to its own experts
    ROSTER_FIRST = "roster_first"  # its experts first, then the whole marketplace


class Business(Base):
    __tablename__ = "businesses"
    __table_args__ = (
        CheckConstraint(
            "(sponsorship_budget_amount IS NULL) = (sponsorship_currency IS NULL)",
            name="budget_has_currency",
        ),
        CheckConstraint(
            "sponsorship_budget_amount IS NULL OR sponsorship_budget_amount >= 0",
            name="budget_not_negative",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("biz"))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[RosterScope] = mapped_column(
        enum_column(RosterScope, "roster_scope"), default=RosterScope.ROSTER_FIRST
    )
    # None: the platform default (CONCIERGE_COMMISSION_PERCENT) applies.
    commission_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2), default=None)
    # Typed into /setup by a community admin to link a group, guild or widget to this business.
    setup_code: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    sponsors_sessions: Mapped[bool] = mapped_column(default=False)
    sponsorship_budget_amount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sponsorship_currency: Mapped[str | None] = mapped_column(currency_column(), default=None)
    # Sent as /setup CODE in a private chat, it makes the sender one of the business's admins.
    admin_code: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    # Shown in its communities instead of the default welcome; None: the default.
    greeting: Mapped[str | None] = mapped_column(String(500), default=None)
    brand_colour: Mapped[str | None] = mapped_column(String(7), default=None)  # "#rrggbb", validated
    logo_url: Mapped[str | None] = mapped_column(String(500), default=None)  # https only, validated
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Community(Base):
    """A Telegram chat, Discord guild or web widget key linked to a business."""

    __tablename__ = "communities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("com"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"), index=True)
    business: Mapped[Business] = relationship(foreign_keys=[business_id], lazy="raise")
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InviteCode(Base):
    __tablename__ = "invite_codes"
    __table_args__ = (CheckConstraint("uses_left >= 0", name="uses_left_not_negative"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    # None: an invitation to the open marketplace rather than to a business roster.
    business_id: Mapped[str | None] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), default=None, index=True
    )
    business: Mapped[Business | None] = relationship(foreign_keys=[business_id], lazy="raise")
    uses_left: Mapped[int] = mapped_column(default=1)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BusinessAdmin(Base):
    """A person who manages a business from the chat (/setup, /roster, /budget, /report)."""

    __tablename__ = "business_admins"

    business_id: Mapped[str] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BusinessAlert(Base):
    """One alert to a business's admins per kind and month ("budget_80", "budget_spent", "report"):
    the primary key makes sending it twice impossible, across processes."""

    __tablename__ = "business_alerts"

    business_id: Mapped[str] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-11"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
