"""Payments as the provider sees them, and the double-entry ledger every money movement lands in."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from concierge.model.base import Base, JSONDocument, currency_column, enum_column, new_id, utcnow
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
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("fee >= 0 AND fee <= amount", name="fee_within_amount"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("pay"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    session: Mapped[Session] = relationship(foreign_keys=[session_id], lazy="raise")
    kind: Mapped[PaymentKind] = mapped_column(enum_column(PaymentKind, "payment_kind"))
    status: Mapped[PaymentStatus] = mapped_column(
        enum_column(PaymentStatus, "payment_status"), default=PaymentStatus.PENDING
    )
    provider: Mapped[str] = mapped_column(String(32))
    # The provider's handle: a Checkout Session for a hold, a PaymentIntent once paid, a refund, a transfer.
    provider_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    payment_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    checkout_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    # The ledger account that pays: a customer, or the business sponsoring the session.
    payer: Mapped[str] = mapped_column(String(128), default="")
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)  # the platform's commission in `amount`
    currency: Mapped[str] = mapped_column(currency_column())
    # For a hold: the terms it was quoted on (maximum minutes, minimum charge, rounding).
    terms: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, default=None)
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
    kind: Mapped[str] = mapped_column(String(32), default="")
    account: Mapped[str] = mapped_column(String(128), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units: debit positive, credit negative
    currency: Mapped[str] = mapped_column(currency_column())
    memo: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """Every provider event handled once: a replayed or duplicated delivery finds its id here."""

    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notice(Base):
    """Something people must be told that no message of theirs caused (a payment arrived, a
    session was settled): written with the change itself, delivered once by the bots' ticker."""

    __tablename__ = "notices"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # e.g. "ses_…:settled"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
