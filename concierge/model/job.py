"""A job due at a time (a reminder, an expiry, an auto-cancel), kept in the database so it
survives restarts; the scheduler's processes take it in turns through a lease."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, JSONDocument, new_id, utcnow


class ScheduledJob(Base):
    __tablename__ = "scheduled_jobs"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The claim's question: what is due and not finished, earliest first.
        Index("ix_scheduled_jobs_due", "done_at", "failed_at", "run_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("job"))
    # The caller's name for the job ("booking:bk_1:reminder"): scheduling it again moves it.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    run_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Who runs it now, until when; another process may take it over once the lease is past.
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)  # given up after too many attempts
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
