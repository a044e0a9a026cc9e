"""A booked time with an expert: the slot is held from the customer's pick until it is called off.

At most one live booking per expert and start (a partial unique index); overlaps with buffers are
kept out by `concierge.bookings`, which takes the expert's row lock before it looks.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, enum_column, new_id, utcnow


class BookingStatus(StrEnum):
    PENDING = "pending"  # waiting for the expert to confirm
    CONFIRMED = "confirmed"
    DECLINED = "declined"  # the expert said no, or did not answer in time
    CANCELLED = "cancelled"  # called off by a party, or unpaid when it had to be paid
    DONE = "done"  # its time has passed: see `outcome`


class CancellationPolicy(StrEnum):
    """The fixed menu an expert picks from: free cancellation until this long before the start."""

    FLEXIBLE = "flexible"  # 1 hour
    MODERATE = "moderate"  # 24 hours
    STRICT = "strict"  # 72 hours


class Outcome(StrEnum):
    KEPT = "kept"
    CANCELLED_FREE = "cancelled_free"
    CANCELLED_LATE = "cancelled_late"  # charged under the policy
    CUSTOMER_NO_SHOW = "customer_no_show"  # charged under the policy
    EXPERT_NO_SHOW = "expert_no_show"
    EXPERT_CANCELLED = "expert_cancelled"
    UNPAID = "unpaid"


LIVE_STATUSES = (BookingStatus.PENDING, BookingStatus.CONFIRMED)


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index(
            "uq_bookings_expert_start_live",
            "expert_id",
            "starts_at",
            unique=True,
            sqlite_where=text("status IN ('pending', 'confirmed')"),
            postgresql_where=text("status IN ('pending', 'confirmed')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("bkg"))
    request_id: Mapped[str] = mapped_column(ForeignKey("help_requests.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), unique=True, default=None
    )
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    status: Mapped[BookingStatus] = mapped_column(
        enum_column(BookingStatus, "booking_status"), default=BookingStatus.PENDING, index=True
    )
    # The expert's policy when the customer booked: a later change does not apply to this booking.
    policy: Mapped[CancellationPolicy] = mapped_column(enum_column(CancellationPolicy, "cancellation_policy"))
    confirm_by: Mapped[datetime | None] = mapped_column(default=None)
    outcome: Mapped[Outcome | None] = mapped_column(enum_column(Outcome, "booking_outcome"), default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(16), default=None)  # customer | expert | system
    reschedules: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
