"""An expert's listing: what they help with, in which languages, at what price, when."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, true
from sqlalchemy.orm import Mapped, composite, mapped_column, relationship

from concierge.hours import WeeklyHours
from concierge.model.base import Base, JSONDocument, currency_column, enum_column, utcnow
from concierge.model.booking import CancellationPolicy
from concierge.pricing import Pricing, PricingMode

if TYPE_CHECKING:
    from concierge.model.person import Person


class Expert(Base):
    __tablename__ = "experts"
    __table_args__ = (
        CheckConstraint("rating_count >= 0", name="rating_count_not_negative"),
        CheckConstraint(
            "rating_total >= rating_count AND rating_total <= 5 * rating_count",
            name="rating_total_in_range",
        ),
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
        CheckConstraint("sessions_kept >= 0 AND no_shows >= 0", name="attendance_not_negative"),
        CheckConstraint("booking_minutes BETWEEN 15 AND 480", name="booking_minutes_in_range"),
        CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 240 AND buffer_after_minutes BETWEEN 0 AND 240",
            name="buffers_in_range",
        ),
        CheckConstraint(
            "max_sessions_per_day IS NULL OR max_sessions_per_day >= 1", name="max_per_day_positive"
        ),
        CheckConstraint("min_notice_minutes BETWEEN 0 AND 43200", name="min_notice_in_range"),
    )

    # Listing ids come from the operator's import files, hence a string chosen outside.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), unique=True)
    person: Mapped[Person] = relationship(foreign_keys=[person_id], lazy="raise")
    headline: Mapped[str] = mapped_column(String(200))
    bio: Mapped[str] = mapped_column(Text, default="")
    skills: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    categories: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    languages: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    pricing: Mapped[Pricing] = composite(
        mapped_column("pricing_mode", enum_column(PricingMode, "pricing_mode")),
        mapped_column("price_amount", BigInteger),
        mapped_column("price_currency", currency_column()),
    )
    time_zone: Mapped[str] = mapped_column(String(64))
    hours_json: Mapped[dict[str, Any]] = mapped_column("hours", JSONDocument, default=dict)
    # Dates whose hours differ from the week's: {"2026-12-24": [], "2026-12-27": ["10:00-12:00"]}.
    hours_exceptions: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict, server_default="{}")
    booking_minutes: Mapped[int] = mapped_column(default=30, server_default="30")
    buffer_before_minutes: Mapped[int] = mapped_column(default=0, server_default="0")
    buffer_after_minutes: Mapped[int] = mapped_column(default=0, server_default="0")
    max_sessions_per_day: Mapped[int | None] = mapped_column(default=None)
    min_notice_minutes: Mapped[int] = mapped_column(default=120, server_default="120")
    auto_confirm: Mapped[bool] = mapped_column(default=True, server_default=true())
    cancellation_policy: Mapped[CancellationPolicy] = mapped_column(
        enum_column(CancellationPolicy, "cancellation_policy"),
        default=CancellationPolicy.FLEXIBLE,
        server_default=CancellationPolicy.FLEXIBLE.value,
    )
    # Bumped by every booking: the row lock that keeps two bookings from taking overlapping times.
    booking_seq: Mapped[int] = mapped_column(default=0, server_default="0")
    online: Mapped[bool] = mapped_column(default=False)
    # A listing is matched only once published: a new expert's draft is not, until its setup is done.
    published: Mapped[bool] = mapped_column(default=False, server_default=true())
    # Sum of 1–5 star ratings: the mean and the Bayesian average derive from these two.
    rating_count: Mapped[int] = mapped_column(default=0)
    rating_total: Mapped[int] = mapped_column(default=0)
    # Booked sessions the expert turned up for, and those they missed (`concierge.reliability`).
    sessions_kept: Mapped[int] = mapped_column(default=0, server_default="0")
    no_shows: Mapped[int] = mapped_column(default=0, server_default="0")
    payout_account_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Set by the provider (Stripe's account.updated) once onboarding is complete.
    payouts_enabled: Mapped[bool] = mapped_column(default=False)
    business_id: Mapped[str | None] = mapped_column(
        ForeignKey("businesses.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def hours(self) -> WeeklyHours:
        return WeeklyHours.parse(self.hours_json)

    @hours.setter
    def hours(self, value: WeeklyHours) -> None:
        self.hours_json = value.to_json()

    @property
    def rating_mean(self) -> float | None:
        return self.rating_total / self.rating_count if self.rating_count else None
