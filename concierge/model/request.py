"""Help requests as customers wrote them, and the offers sent to experts for each."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from concierge.lifecycle import State
from concierge.model.base import Base, currency_column, enum_column, new_id, utcnow
from concierge.money import Money

if TYPE_CHECKING:
    from concierge.model.expert import Expert
    from concierge.model.person import Person


class HelpRequest(Base):
    __tablename__ = "help_requests"
    __table_args__ = (
        CheckConstraint("(budget_amount IS NULL) = (budget_currency IS NULL)", name="budget_has_currency"),
        CheckConstraint("budget_amount IS NULL OR budget_amount >= 0", name="budget_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("req"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    customer: Mapped[Person] = relationship(foreign_keys=[customer_id], lazy="raise")
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    category: Mapped[str | None] = mapped_column(String(32), default=None)
    # None means "now"; otherwise the moment the customer asked for, in UTC.
    wanted_at: Mapped[datetime | None] = mapped_column(default=None)
    budget_amount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    budget_currency: Mapped[str | None] = mapped_column(currency_column(), default=None)
    community_id: Mapped[str | None] = mapped_column(
        ForeignKey("communities.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[State] = mapped_column(
        enum_column(State, "lifecycle_state"), default=State.OPEN, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def budget(self) -> Money | None:
        if self.budget_amount is None or self.budget_currency is None:
            return None
        return Money(self.budget_amount, self.budget_currency)

    @budget.setter
    def budget(self, value: Money | None) -> None:
        self.budget_amount = None if value is None else value.amount
        self.budget_currency = None if value is None else value.currency


class OfferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    TAKEN = "taken"  # closed before this expert answered: another accepted first, or the request ended


class Offer(Base):
    __tablename__ = "offers"
    __table_args__ = (UniqueConstraint("request_id", "expert_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("off"))
    request_id: Mapped[str] = mapped_column(ForeignKey("help_requests.id", ondelete="CASCADE"), index=True)
    request: Mapped[HelpRequest] = relationship(foreign_keys=[request_id], lazy="raise")
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"))
    expert: Mapped[Expert] = relationship(foreign_keys=[expert_id], lazy="raise")
    rank: Mapped[int]
    score: Mapped[float]
    status: Mapped[OfferStatus] = mapped_column(
        enum_column(OfferStatus, "offer_status"), default=OfferStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
