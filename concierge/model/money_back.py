"""A customer's request for their money back after a session, and how it was decided."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, currency_column, enum_column, new_id, utcnow


class MoneyBackStatus(StrEnum):
    OPEN = "open"  # waiting for the expert
    GRANTED = "granted"  # refunded, by the expert or the operators
    DECLINED = "declined"  # by the expert; the customer may escalate
    ESCALATED = "escalated"  # waiting for the operators
    REFUSED = "refused"  # by the operators: final


class MoneyBackRequest(Base):
    __tablename__ = "money_back_requests"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("granted_amount IS NULL OR granted_amount > 0", name="granted_positive"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("mbr"))
    # One request per session: a second would only repeat the first.
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)  # what could still be refunded when asked
    currency: Mapped[str] = mapped_column(currency_column())
    status: Mapped[MoneyBackStatus] = mapped_column(
        enum_column(MoneyBackStatus, "money_back_status"), default=MoneyBackStatus.OPEN, index=True
    )
    granted_amount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(16), default=None)  # "expert" | "operator"
    note: Mapped[str | None] = mapped_column(String(500), default=None)  # the operator's reasons
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
