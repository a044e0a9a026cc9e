"""Sessions (a claimed request on its way to a call and a bill) and the lifecycle audit trail."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, composite, mapped_column, relationship

from concierge.lifecycle import State
from concierge.model.base import Base, JSONDocument, currency_column, enum_column, new_id, utcnow
from concierge.pricing import Pricing, PricingMode

if TYPE_CHECKING:
    from concierge.model.expert import Expert
    from concierge.model.person import Person
    from concierge.model.request import HelpRequest


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint("billed_seconds >= 0", name="billed_seconds_not_negative"),
        CheckConstraint(
            "ended_at IS NULL OR (started_at IS NOT NULL AND ended_at >= started_at)",
            name="ends_after_start",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ses"))
    request_id: Mapped[str] = mapped_column(ForeignKey("help_requests.id"), unique=True)
    request: Mapped[HelpRequest] = relationship(foreign_keys=[request_id], lazy="raise")
    customer_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    customer: Mapped[Person] = relationship(foreign_keys=[customer_id], lazy="raise")
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id"), index=True)
    # Snapshot at claim time: a later change of the listing's price does not reprice this session.
    expert: Mapped[Expert] = relationship(foreign_keys=[expert_id], lazy="raise")
    pricing: Mapped[Pricing] = composite(
        mapped_column("pricing_mode", enum_column(PricingMode, "pricing_mode")),
        mapped_column("price_amount", BigInteger),
        mapped_column("price_currency", currency_column()),
    )
    commission_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    scheduled_start: Mapped[datetime | None] = mapped_column(default=None)
    scheduled_end: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[State] = mapped_column(
        enum_column(State, "lifecycle_state"), default=State.CLAIMED, index=True
    )
    room_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    billed_seconds: Mapped[int] = mapped_column(default=0)
    recorded: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LifecycleEvent(Base):
    """One row per transition, written in the same transaction as the state change."""

    __tablename__ = "lifecycle_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("help_requests.id", ondelete="CASCADE"), index=True)
    request: Mapped[HelpRequest] = relationship(foreign_keys=[request_id], lazy="raise")
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), default=None
    )
    session: Mapped[Session | None] = relationship(foreign_keys=[session_id], lazy="raise")
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[State] = mapped_column(enum_column(State, "from_state"))
    to_state: Mapped[State] = mapped_column(enum_column(State, "to_state"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, default=None)
