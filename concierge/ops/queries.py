"""What the live view and a session's page read: plain rows, rendered by `pages`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from concierge.errors import NotFound
from concierge.lifecycle import FINISHED_STATES, TERMINAL_STATES, State
from concierge.model import (
    Expert,
    HelpRequest,
    LedgerEntry,
    LifecycleEvent,
    MoneyBackRequest,
    Payment,
    Person,
    Review,
    Room,
    Session,
)

LIVE_ROWS = 100


@dataclass(frozen=True, slots=True)
class LiveFacts:
    experts_online: list[tuple[str, str, str]]  # (expert id, name, headline)
    experts_online_count: int
    requests_by_state: dict[str, int]  # requests still looking for an expert
    sessions_by_state: dict[str, int]  # sessions not yet finished
    live_sessions: list[tuple[Session, str, str]]  # (session, customer name, expert name)


async def live_facts(db: AsyncSession) -> LiveFacts:
    online = (
        select(Expert.id, Person.display_name, Expert.headline)
        .join(Person, Person.id == Expert.person_id)
        .where(Expert.online.is_(True), Expert.published.is_(True))
        .order_by(Expert.id)
    )
    count = int(
        await db.scalar(
            select(func.count(Expert.id)).where(Expert.online.is_(True), Expert.published.is_(True))
        )
        or 0
    )
    experts = [(i, n, h) for i, n, h in await db.execute(online.limit(LIVE_ROWS))]
    requests = {
        state.value: int(n)
        for state, n in await db.execute(
            select(HelpRequest.status, func.count(HelpRequest.id))
            .where(HelpRequest.status.in_([State.OPEN, State.OFFERED]))
            .group_by(HelpRequest.status)
        )
    }
    unfinished = [
        s
        for s in State
        if s not in FINISHED_STATES | TERMINAL_STATES and s not in (State.OPEN, State.OFFERED)
    ]
    sessions = {
        state.value: int(n)
        for state, n in await db.execute(
            select(Session.state, func.count(Session.id))
            .where(Session.state.in_(unfinished))
            .group_by(Session.state)
        )
    }
    expert_person = aliased(Person)
    live = [
        (session, customer, expert)
        for session, customer, expert in await db.execute(
            select(Session, Person.display_name, expert_person.display_name)
            .join(Person, Person.id == Session.customer_id)
            .join(Expert, Expert.id == Session.expert_id)
            .join(expert_person, expert_person.id == Expert.person_id)
            .where(Session.state == State.LIVE)
            .order_by(Session.started_at)
            .limit(LIVE_ROWS)
        )
    ]
    return LiveFacts(experts, count, requests, sessions, live)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    session: Session
    request: HelpRequest
    customer: Person
    expert: Expert
    expert_person: Person
    events: list[LifecycleEvent]
    room: Room | None
    payments: list[Payment]
    ledger: list[LedgerEntry]
    reviews: list[Review]
    money_back: MoneyBackRequest | None


async def session_facts(db: AsyncSession, session_id: str) -> SessionFacts:
    session = await db.get(Session, session_id)
    if session is None:
        raise NotFound("session", session_id)
    request = await db.get(HelpRequest, session.request_id)
    customer = await db.get(Person, session.customer_id)
    expert = await db.get(Expert, session.expert_id)
    assert request is not None
    assert customer is not None
    assert expert is not None
    expert_person = await db.get(Person, expert.person_id)
    assert expert_person is not None
    events = list(
        await db.scalars(
            select(LifecycleEvent)
            .where(LifecycleEvent.request_id == session.request_id)
            .order_by(LifecycleEvent.at, LifecycleEvent.id)
        )
    )
    return SessionFacts(
        session,
        request,
        customer,
        expert,
        expert_person,
        events,
        await db.scalar(select(Room).where(Room.session_id == session_id)),
        list(
            await db.scalars(
                select(Payment)
                .where(Payment.session_id == session_id)
                .order_by(Payment.created_at, Payment.id)
            )
        ),
        list(
            await db.scalars(
                select(LedgerEntry).where(LedgerEntry.session_id == session_id).order_by(LedgerEntry.id)
            )
        ),
        list(
            await db.scalars(
                select(Review).where(Review.session_id == session_id).order_by(Review.created_at)
            )
        ),
        await db.scalar(select(MoneyBackRequest).where(MoneyBackRequest.session_id == session_id)),
    )
