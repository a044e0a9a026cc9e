"""Operators (the people who run the service and use the console at /ops) and the log of every
time one of them opened a recording."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, new_id, utcnow


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("opr"))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # An argon2id hash in PHC format: it carries its own salt and parameters.
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class RecordingAccess(Base):
    """One operator opening one session's recording: kept as long as the operators table is."""

    __tablename__ = "recording_accesses"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
