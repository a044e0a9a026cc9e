"""The request→session lifecycle: the pure table, then the persisted one on both engines."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, IllegalTransition, NotFound
from concierge.lifecycle import (
    FINISHED_STATES,
    REQUEST_STATES,
    STARTED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Event,
    State,
    next_state,
)
from concierge.model import HelpRequest, LifecycleEvent, Offer, OfferStatus, Session, utcnow
from concierge.pricing import Pricing, PricingMode
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person

# ---------------------------------------------------------------- the pure table


def test_every_state_is_reachable_and_every_live_path_can_finish() -> None:
    reachable, frontier = {State.OPEN}, [State.OPEN]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(State)
    for state in set(State) - TERMINAL_STATES - {State.SETTLED}:
        assert any(source is state for source, _ in TRANSITIONS), f"{state} is a dead end"


def test_terminal_states_absorb_everything() -> None:
    for state in TERMINAL_STATES:
        for event in Event:
            with pytest.raises(IllegalTransition):
                next_state(state, event)


@given(st.lists(st.sampled_from(Event), max_size=30))
def test_random_event_sequences_keep_the_invariants(events: list[Event]) -> None:
    state, visited = State.OPEN, [State.OPEN]
    for event in events:
        try:
            state = next_state(state, event)
        except IllegalTransition:
            continue
        visited.append(state)
    assert not {State.SETTLED, State.CANCELLED} <= set(visited)
    assert not {State.SETTLED, State.EXPIRED} <= set(visited)
    if State.REFUNDED in visited:
        assert State.SETTLED in visited
    if State.LIVE in visited:
        assert State.READY in visited
    if State.SETTLED in visited:
        assert visited.index(State.ENDED) < visited.index(State.SETTLED)
    for terminal in TERMINAL_STATES & set(visited):
        assert visited[-1] is terminal


# ---------------------------------------------------------------- persisted


class Clock:
    """Advances a minute per reading so that durations are never zero or negative."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


SESSION_EVENTS = {
    Event.REQUEST_PAYMENT,
    Event.PAYMENT_AUTHORISED,
    Event.CONFIRM_FREE,
    Event.GO_LIVE,
    Event.END,
    Event.SETTLE,
    Event.REFUND,
    Event.FORFEIT,
    Event.LAPSE,
}


class World:
    """A customer and two experts, and a way to drive one request through any event."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.lifecycle = Lifecycle(sessions, clock=Clock())

    async def setup(self, free: bool) -> None:
        pricing = Pricing(PricingMode.FREE, 0, "EUR") if free else Pricing(PricingMode.PER_MINUTE, 90, "EUR")
        suffix = secrets.token_hex(4)  # examples share one database
        self.customer = await add_person(self.sessions, "Customer")
        self.expert = (await add_expert(self.sessions, f"a-{suffix}", pricing=pricing)).id
        self.runner_up = (await add_expert(self.sessions, f"b-{suffix}", pricing=pricing)).id

    async def new_request(self) -> str:
        return (await self.lifecycle.open_request(self.customer.id, "my router blinks red")).id

    async def session_id(self, request_id: str) -> str:
        async with self.sessions() as db:
            found = await db.scalar(select(Session.id).where(Session.request_id == request_id))
        if found is None:
            raise NotFound("session for request", request_id)
        return found

    async def apply(self, request_id: str, event: Event, billed: int) -> None:
        life = self.lifecycle
        if event is Event.OFFER:
            await life.offer(request_id, [(self.expert, 0.9), (self.runner_up, 0.4)])
        elif event is Event.CLAIM:
            await life.claim(request_id, self.expert, commission_percent=Decimal(20))
        elif event is Event.CANCEL:
            await life.cancel(request_id, "changed my mind")
        elif event is Event.EXPIRE:
            await life.expire(request_id, "timeout")
        else:
            session_id = await self.session_id(request_id)
            calls: dict[Event, Any] = {
                Event.REQUEST_PAYMENT: lambda: life.request_payment(session_id),
                Event.PAYMENT_AUTHORISED: lambda: life.payment_authorised(session_id),
                Event.CONFIRM_FREE: lambda: life.confirm_free(session_id),
                Event.GO_LIVE: lambda: life.go_live(session_id, room_id=f"room-{session_id}"),
                Event.END: lambda: life.end(session_id, billed),
                Event.SETTLE: lambda: life.settle(session_id),
                Event.REFUND: lambda: life.refund(session_id),
                # Bookings' transitions have no method of their own: the booking code advances
                # the session inside its own transaction.
                Event.FORFEIT: lambda: self._advance(
                    session_id, event, started_at=utcnow(), ended_at=utcnow(), billed_seconds=billed
                ),
                Event.LAPSE: lambda: self._advance(session_id, event),
            }
            await calls[event]()

    async def _advance(self, session_id: str, event: Event, **changes: Any) -> None:
        async with self.sessions.begin() as db:
            session = await db.get(Session, session_id)
            assert session is not None
            await self.lifecycle.advance(db, session, event, **changes)

    async def snapshot(self, request_id: str) -> dict[str, Any]:
        def rows(objects: Any) -> list[dict[str, Any]]:
            return [
                {column.key: getattr(obj, column.key) for column in obj.__table__.columns} for obj in objects
            ]

        async with self.sessions() as db:
            return {
                "request": rows([await db.get(HelpRequest, request_id)]),
                "sessions": rows(await db.scalars(select(Session).where(Session.request_id == request_id))),
                "offers": rows(
                    await db.scalars(select(Offer).where(Offer.request_id == request_id).order_by(Offer.rank))
                ),
                "events": rows(
                    await db.scalars(
                        select(LifecycleEvent)
                        .where(LifecycleEvent.request_id == request_id)
                        .order_by(LifecycleEvent.id)
                    )
                ),
            }


def expected_outcome(state: State, event: Event, *, free: bool, billed: int) -> State | None:
    """What the persisted lifecycle must do, from the pure table plus the domain guards."""
    if event is Event.END and billed < 0:
        return None
    has_session = state not in REQUEST_STATES or state is State.CLAIMED
    if event in SESSION_EVENTS and not has_session:
        return None
    if (event is Event.REQUEST_PAYMENT and free) or (event is Event.CONFIRM_FREE and not free):
        return None
    return TRANSITIONS.get((state, event))


def check_invariants(snapshot: dict[str, Any]) -> None:
    request = snapshot["request"][0]
    sessions = snapshot["sessions"]
    assert request["status"] in REQUEST_STATES
    assert len(sessions) <= 1
    assert bool(sessions) == (request["status"] is State.CLAIMED)
    current = sessions[0]["state"] if sessions else request["status"]

    # The audit trail is a legal path from `open` that ends in the current state.
    path = State.OPEN
    visited = {path}
    for row in snapshot["events"]:
        assert row["from_state"] is path
        assert TRANSITIONS[(row["from_state"], Event(row["event"]))] is row["to_state"]
        path = row["to_state"]
        visited.add(path)
    assert path is current
    assert not {State.SETTLED, State.CANCELLED} <= visited

    if sessions:
        session = sessions[0]
        assert session["billed_seconds"] >= 0
        assert (session["started_at"] is not None) == (current in STARTED_STATES)
        assert (session["ended_at"] is not None) == (current in FINISHED_STATES)
        if session["ended_at"] is not None:
            assert session["ended_at"] >= session["started_at"]
        accepted = [o for o in snapshot["offers"] if o["status"] is OfferStatus.ACCEPTED]
        assert [o["expert_id"] for o in accepted] == [session["expert_id"]]
        assert all(o["status"] is not OfferStatus.PENDING for o in snapshot["offers"])


events_strategy = st.lists(
    st.sampled_from(Event) | st.sampled_from([Event.OFFER, Event.CLAIM, Event.GO_LIVE, Event.END]),
    max_size=14,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_strategy, free=st.booleans(), billed=st.integers(-3, 90))
async def test_random_event_sequences_persist_atomically(
    sessions: async_sessionmaker[AsyncSession], events: list[Event], free: bool, billed: int
) -> None:
    world = World(sessions)
    await world.setup(free)
    request_id = await world.new_request()
    state = State.OPEN
    for event in events:
        before = await world.snapshot(request_id)
        target = expected_outcome(state, event, free=free, billed=billed)
        if target is None:
            with pytest.raises(DomainError):
                await world.apply(request_id, event, billed)
            assert await world.snapshot(request_id) == before, f"{event} changed something"
        else:
            await world.apply(request_id, event, billed)
            state = target
        assert await world.lifecycle.state_of(request_id) is state
        check_invariants(await world.snapshot(request_id))


async def test_a_paid_session_from_request_to_refund(sessions: async_sessionmaker[AsyncSession]) -> None:
    world = World(sessions)
    await world.setup(free=False)
    request_id = await world.new_request()
    for event in [
        Event.OFFER,
        Event.CLAIM,
        Event.REQUEST_PAYMENT,
        Event.PAYMENT_AUTHORISED,
        Event.GO_LIVE,
        Event.END,
        Event.SETTLE,
        Event.REFUND,
    ]:
        await world.apply(request_id, event, billed=45)
    snapshot = await world.snapshot(request_id)
    check_invariants(snapshot)
    session = snapshot["sessions"][0]
    assert session["state"] is State.REFUNDED
    assert session["billed_seconds"] == 45
    assert session["room_id"] == f"room-{session['id']}"
    # The session keeps the price the listing had when it was claimed.
    assert (session["pricing_mode"], session["price_amount"]) == (PricingMode.PER_MINUTE, 90)
    assert [o["status"] for o in snapshot["offers"]] == [OfferStatus.ACCEPTED, OfferStatus.TAKEN]


async def test_a_free_session_skips_payment(sessions: async_sessionmaker[AsyncSession]) -> None:
    world = World(sessions)
    await world.setup(free=True)
    request_id = await world.new_request()
    await world.apply(request_id, Event.OFFER, 0)
    await world.apply(request_id, Event.CLAIM, 0)
    with pytest.raises(DomainError, match="needs no payment"):
        await world.apply(request_id, Event.REQUEST_PAYMENT, 0)
    await world.apply(request_id, Event.CONFIRM_FREE, 0)
    assert await world.lifecycle.state_of(request_id) is State.READY


async def test_billing_more_than_the_time_in_the_room_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = World(sessions)
    await world.setup(free=True)
    request_id = await world.new_request()
    for event in [Event.OFFER, Event.CLAIM, Event.CONFIRM_FREE, Event.GO_LIVE]:
        await world.apply(request_id, event, 0)
    with pytest.raises(DomainError, match="exceeds"):
        await world.apply(request_id, Event.END, 3600)  # the clock moved one minute
    assert await world.lifecycle.state_of(request_id) is State.LIVE


async def test_only_an_offered_expert_other_than_the_customer_can_claim(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = World(sessions)
    await world.setup(free=False)
    outsider = await add_expert(sessions, "outsider")
    request_id = await world.new_request()
    await world.lifecycle.offer(request_id, [(world.expert, 1.0)])
    with pytest.raises(DomainError, match="not offered"):
        await world.lifecycle.claim(request_id, outsider.id, commission_percent=Decimal(20))
    with pytest.raises(NotFound):
        await world.lifecycle.claim(request_id, "nobody", commission_percent=Decimal(20))
    with pytest.raises(DomainError, match="twice"):
        await world.lifecycle.offer(await world.new_request(), [(world.expert, 1.0), (world.expert, 0.5)])
    assert await world.lifecycle.state_of(request_id) is State.OFFERED


async def test_concurrent_claims_have_exactly_one_winner(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = World(sessions)
    await world.setup(free=False)
    experts = [world.expert, world.runner_up] + [(await add_expert(sessions, f"c{i}")).id for i in range(4)]
    request_id = await world.new_request()
    await world.lifecycle.offer(request_id, [(expert, 1.0 / (i + 1)) for i, expert in enumerate(experts)])

    results = await asyncio.gather(
        *(world.lifecycle.claim(request_id, expert, commission_percent=Decimal(20)) for expert in experts),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Session)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == len(experts) - 1
    assert all(isinstance(loser, DomainError) for loser in losers), losers
    snapshot = await world.snapshot(request_id)
    check_invariants(snapshot)
    assert snapshot["sessions"][0]["expert_id"] == winners[0].expert_id
