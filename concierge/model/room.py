"""Video rooms: the gateway's durable record of one call (see video_gateway.rooms.RoomRecord)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from concierge.model.base import Base, currency_column, enum_column, utcnow
from video_gateway.meter import EndReason, MeterState
from video_gateway.rooms import MediaMode


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (CheckConstraint("billed_seconds >= 0", name="room_billed_not_negative"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Ad-hoc rooms (`concierge rooms create`) have no session.
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id"), unique=True, default=None)
    customer_name: Mapped[str] = mapped_column(String(120))
    customer_language: Mapped[str] = mapped_column(String(8))
    expert_name: Mapped[str] = mapped_column(String(120))
    expert_language: Mapped[str] = mapped_column(String(8))
    mode: Mapped[MediaMode] = mapped_column(enum_column(MediaMode, "room_mode"))
    recorded: Mapped[bool] = mapped_column(default=False)
    budget_seconds: Mapped[int | None] = mapped_column(default=None)
    tariff_currency: Mapped[str | None] = mapped_column(currency_column(), default=None, nullable=True)
    tariff_per_minute: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tariff_per_session: Mapped[int | None] = mapped_column(BigInteger, default=None)
    links_expire_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[MeterState] = mapped_column(
        enum_column(MeterState, "room_state"), default=MeterState.WAITING
    )
    billed_seconds: Mapped[int] = mapped_column(default=0)
    end_reason: Mapped[EndReason | None] = mapped_column(
        enum_column(EndReason, "room_end_reason"), default=None
    )
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    recording: Mapped[str | None] = mapped_column(String(255), default=None)
