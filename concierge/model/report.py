"""One party of a session reporting the other to the operators."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, JSONDocument, enum_column, new_id, utcnow


class ReportStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (
        # A person reports a session once: a second report would only repeat the first.
        UniqueConstraint("session_id", "reporter_id"),
        CheckConstraint("reporter_id <> reported_id", name="not_self"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("rep"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    reporter_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    reported_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    # The session's facts when reported (times, billed seconds, events, room, payments).
    facts: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[ReportStatus] = mapped_column(
        enum_column(ReportStatus, "report_status"), default=ReportStatus.OPEN, index=True
    )
    note: Mapped[str | None] = mapped_column(String(500), default=None)  # the operator's conclusion
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
