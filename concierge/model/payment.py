"""Payments as the provider sees them, and the double-entry ledger every money movement lands in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from concierge.model.base import Base, currency_column, enum_column, new_id, utcnow
from concierge.money import Money

if TYPE_CHECKING:
    from concierge.model.session import Session


class PaymentKind(StrEnum):
    AUTHORISATION = "authorisation"  # a hold for the quoted maximum
    CAPTURE = "capture"
    REFUND = "refund"
    PAYOUT = "payout"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount >= 0", name="amount_not_negative"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("pay"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    session: Mapped[Session] = relationship(foreign_keys=[session_id], lazy="raise")
    kind: Mapped[PaymentKind] = mapped_column(enum_column(PaymentKind, "payment_kind"))
    status: Mapped[PaymentStatus] = mapped_column(
        enum_column(PaymentStatus, "payment_status"), default=PaymentStatus.PENDING
    )
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(currency_column())
    # Derived from the session and the step, so a retried call can never move money twice.
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class LedgerEntry(Base):
    """One leg of a transaction; the legs of a transaction sum to zero per currency."""

    __tablename__ = "ledger_entries"
    __table_args__ = (CheckConstraint("amount <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(32), index=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id"), default=None)
    # e.g. "customer:per_…", "expert:demo-001", "platform:commission", "provider:stripe"
    session: Mapped[Session | None] = relationship(foreign_keys=[session_id], lazy="raise")
    account: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units: debit positive, credit negative
    currency: Mapped[str] = mapped_column(currency_column())
    memo: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
