"""What operators look at to judge a session: money-back requests and reports both show it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from concierge.errors import NotFound
from concierge.model import LifecycleEvent, Payment, PaymentKind, Room, Session


async def session_facts(db: AsyncSession, session_id: str) -> dict[str, Any]:
    """The session's times, billed seconds, its lifecycle and connection events, the room's end
    and recording if there is one, and the money, as plain JSON values."""
    session = await db.get(Session, session_id)
    if session is None:
        raise NotFound("session", session_id)
    events = list(
        await db.scalars(
            select(LifecycleEvent)
            .where(LifecycleEvent.session_id == session.id)
            .order_by(LifecycleEvent.at, LifecycleEvent.id)
        )
    )
    room = await db.scalar(select(Room).where(Room.session_id == session.id))
    payments = list(await db.scalars(select(Payment).where(Payment.session_id == session.id)))
    return {
        "session": {
            "id": session.id,
            "state": session.state.value,
            "started_at": session.started_at.isoformat() if session.started_at else None,
            "ended_at": session.ended_at.isoformat() if session.ended_at else None,
            "billed_seconds": session.billed_seconds,
            "recorded": session.recorded,
        },
        "events": [
            {"at": e.at.isoformat(), "event": e.event, "to": e.to_state.value, "detail": e.detail}
            for e in events
        ],
        "room": None
        if room is None
        else {
            "id": room.id,
            "state": room.state.value,
            "billed_seconds": room.billed_seconds,
            "end_reason": room.end_reason.value if room.end_reason else None,
            "recording": room.recording,
        },
        "payments": [
            {"kind": p.kind.value, "status": p.status.value, "amount": p.amount, "fee": p.fee}
            for p in payments
            if p.kind is not PaymentKind.AUTHORISATION or p.status.value != "pending"
        ],
    }
