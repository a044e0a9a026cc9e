"""The lifecycle, persisted: one method per transition, one database transaction each.

Each method reads the current state, asks `lifecycle.next_state` for the target, and writes it
with a compare-and-set (`UPDATE … WHERE state = <what we read>`) plus an audit row. If another
process moved the state in between, the update matches no row and the method raises
IllegalTransition with the transaction rolled back: nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from concierge.database import write, write_statement, writes_in_one_statement
from concierge.errors import DomainError, IllegalTransition, NotFound
from concierge.lifecycle import Event, State, next_state
from concierge.model import (
    Expert,
    HelpRequest,
    LifecycleEvent,
    Offer,
    OfferStatus,
    Person,
    Session,
    utcnow,
)
from concierge.money import Money
from concierge.pricing import PricingMode

_REQUEST_COLUMNS = tuple(HelpRequest.__mapper__.column_attrs)
_INSERT_REQUEST = insert(HelpRequest)
_ADOPT_LOCALE = update(Person).where(Person.id == bindparam("person")).values(locale=bindparam("language"))
# Both in one statement where the database allows it (PostgreSQL), built once: built for each
# request, the statement cost more CPU than the round trips it saves. Its parameters are renamed
# so that none is taken for a column of the UPDATE's SET.
_INSERT_ADOPTING = (
    insert(HelpRequest)
    .values({column.key: bindparam(f"new_{column.key}") for column in _REQUEST_COLUMNS})
    .add_cte(
        update(Person)
        .where(Person.id == bindparam("adopter"))
        .values(locale=bindparam("adopted_locale"))
        .cte("adopted")
    )
)


class Lifecycle:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def open_request(
        self,
        customer_id: str,
        text: str,
        *,
        language: str | None = None,
        category: str | None = None,
        wanted_at: datetime | None = None,
        budget: Money | None = None,
        community_id: str | None = None,
        customer_locale: str | None = None,
    ) -> HelpRequest:
        """A new request; `customer_locale`, when given, becomes the customer's language in the
        same transaction (the language they wrote in)."""
        if not text.strip():
            raise DomainError("a help request needs some text")
        now = self._clock()
        request = HelpRequest(
            customer_id=customer_id,
            text=text,
            language=language,
            category=category,
            wanted_at=wanted_at,
            community_id=community_id,
            status=State.OPEN,
            created_at=now,
            updated_at=now,
        )
        request.budget = budget
        row = {column.key: getattr(request, column.key) for column in _REQUEST_COLUMNS}

        # Plain SQL: every request a customer sends passes here, and the ORM's unit of work
        # cost more than the insert itself.
        if writes_in_one_statement(self._sessions):
            # One statement, the language adopted in its WITH clause: no transaction around it.
            if customer_locale is None:
                await write_statement(self._sessions, _INSERT_REQUEST, row)
            else:
                adopting = {f"new_{key}": value for key, value in row.items()}
                adopting.update(adopter=customer_id, adopted_locale=customer_locale)
                await write_statement(self._sessions, _INSERT_ADOPTING, adopting)
            return request

        def insert_request(db: Connection) -> None:
            db.execute(_INSERT_REQUEST, [row])
            if customer_locale is not None:
                db.execute(_ADOPT_LOCALE, {"person": customer_id, "language": customer_locale})

        await write(self._sessions, insert_request)
        return request

    async def state_of(self, request_id: str) -> State:
        async with self._sessions() as db:
            request = await db.get(HelpRequest, request_id)
            if request is None:
                raise NotFound("request", request_id)
            session_state = await db.scalar(select(Session.state).where(Session.request_id == request_id))
            return session_state if session_state is not None else request.status

    async def offer(self, request_id: str, candidates: Sequence[tuple[str, float]]) -> list[Offer]:
        """Offer the request to experts, best first: `candidates` is (expert id, score)."""
        if not candidates:
            raise DomainError("an offer needs at least one expert")
        if len({expert_id for expert_id, _ in candidates}) != len(candidates):
            raise DomainError("an expert appears twice in one offer")
        async with self._sessions.begin() as db:
            return await self.offer_in(db, request_id, candidates)

    async def offer_in(
        self, db: AsyncSession, request_id: str, candidates: Sequence[tuple[str, float]]
    ) -> list[Offer]:
        """`offer` inside the caller's transaction (a booking offers and claims in one)."""
        await self._advance_request(db, request_id, Event.OFFER)
        offers = self._offers(request_id, candidates, first_rank=1)
        db.add_all(offers)
        await db.flush()
        return offers

    def _offers(
        self, request_id: str, candidates: Sequence[tuple[str, float]], first_rank: int
    ) -> list[Offer]:
        now = self._clock()
        return [
            Offer(request_id=request_id, expert_id=expert_id, rank=rank, score=score, created_at=now)
            for rank, (expert_id, score) in enumerate(candidates, start=first_rank)
        ]

    async def offer_more(self, request_id: str, candidates: Sequence[tuple[str, float]]) -> list[Offer]:
        """A further round for a request still offered: nobody took the earlier offers."""
        if not candidates:
            raise DomainError("an offer needs at least one expert")
        async with self._sessions.begin() as db:
            current = await db.scalar(select(HelpRequest.status).where(HelpRequest.id == request_id))
            if current is None:
                raise NotFound("request", request_id)
            if current is not State.OFFERED:
                raise IllegalTransition(f"request {request_id}", current.value, Event.OFFER.value)
            earlier = list(await db.scalars(select(Offer).where(Offer.request_id == request_id)))
            offered = {offer.expert_id for offer in earlier}
            if any(expert_id in offered for expert_id, _ in candidates):
                raise DomainError("an expert was already offered this request")
            first = max((offer.rank for offer in earlier), default=0) + 1
            offers = self._offers(request_id, candidates, first_rank=first)
            db.add_all(offers)
        return offers

    async def time_out_offers(self, request_id: str) -> list[str]:
        """Close the request's unanswered offers; the experts whose offer ran out."""
        async with self._sessions.begin() as db:
            pending = list(
                await db.scalars(
                    select(Offer.expert_id).where(
                        Offer.request_id == request_id, Offer.status == OfferStatus.PENDING
                    )
                )
            )
            await db.execute(
                update(Offer)
                .where(Offer.request_id == request_id, Offer.status == OfferStatus.PENDING)
                .values(status=OfferStatus.TIMED_OUT, answered_at=self._clock())
                .execution_options(synchronize_session=False)
            )
        return pending

    async def claim(
        self,
        request_id: str,
        expert_id: str,
        *,
        commission_percent: Decimal,
        scheduled_start: datetime | None = None,
        scheduled_end: datetime | None = None,
        recorded: bool = False,
    ) -> Session:
        """The expert accepted: the request becomes a session priced as the listing is now."""
        async with self._sessions.begin() as db:
            return await self.claim_in(
                db,
                request_id,
                expert_id,
                commission_percent=commission_percent,
                scheduled_start=scheduled_start,
                scheduled_end=scheduled_end,
                recorded=recorded,
            )

    async def claim_in(
        self,
        db: AsyncSession,
        request_id: str,
        expert_id: str,
        *,
        commission_percent: Decimal,
        scheduled_start: datetime | None = None,
        scheduled_end: datetime | None = None,
        recorded: bool = False,
    ) -> Session:
        """`claim` inside the caller's transaction."""
        request = await db.get(HelpRequest, request_id)
        expert = await db.get(Expert, expert_id)
        if request is None:
            raise NotFound("request", request_id)
        if expert is None:
            raise NotFound("expert", expert_id)
        if expert.person_id == request.customer_id:
            raise DomainError("an expert cannot take their own request")
        offer = await db.scalar(
            select(Offer).where(Offer.request_id == request_id, Offer.expert_id == expert_id)
        )
        if offer is None or offer.status is not OfferStatus.PENDING:
            raise DomainError(f"request {request_id} is not offered to expert {expert_id}")
        now = self._clock()
        session = Session(
            request_id=request_id,
            customer_id=request.customer_id,
            expert_id=expert_id,
            pricing=expert.pricing,
            commission_percent=commission_percent,
            scheduled_start=scheduled_start,
            scheduled_end=scheduled_end,
            state=State.CLAIMED,
            recorded=recorded,
            created_at=now,
            updated_at=now,
        )
        await self._advance_request(db, request_id, Event.CLAIM, session_id=session.id)
        db.add(session)
        await db.execute(
            update(Offer)
            .where(
                Offer.request_id == request_id,
                Offer.status == OfferStatus.PENDING,
                Offer.id != offer.id,
            )
            .values(status=OfferStatus.TAKEN, answered_at=now)
            .execution_options(synchronize_session=False)
        )
        offer.status = OfferStatus.ACCEPTED
        offer.answered_at = now
        return session

    async def request_payment(self, session_id: str) -> None:
        async with self._sessions.begin() as db:
            session = await self._session(db, session_id)
            if session.pricing.mode is PricingMode.FREE:
                raise DomainError("a free session needs no payment: confirm it instead")
            await self._advance_session(db, session, Event.REQUEST_PAYMENT)

    async def payment_authorised(self, session_id: str) -> None:
        async with self._sessions.begin() as db:
            await self._advance_session(db, await self._session(db, session_id), Event.PAYMENT_AUTHORISED)

    async def confirm_free(self, session_id: str) -> None:
        async with self._sessions.begin() as db:
            session = await self._session(db, session_id)
            if session.pricing.mode is not PricingMode.FREE:
                raise DomainError("a paid session becomes ready only once payment is authorised")
            await self._advance_session(db, session, Event.CONFIRM_FREE)

    async def go_live(self, session_id: str, room_id: str | None = None, at: datetime | None = None) -> None:
        """`at`: when the room went live, if the news arrives late (room events are queued)."""
        async with self._sessions.begin() as db:
            session = await self._session(db, session_id)
            changes: dict[str, Any] = {"started_at": min(at, self._clock()) if at else self._clock()}
            if room_id is not None:
                changes["room_id"] = room_id
            await self._advance_session(db, session, Event.GO_LIVE, **changes)

    async def end(self, session_id: str, billed_seconds: int) -> None:
        if not isinstance(billed_seconds, int) or isinstance(billed_seconds, bool):
            raise DomainError("billed seconds must be a whole number")
        if billed_seconds < 0:
            raise DomainError("billed seconds cannot be negative")
        async with self._sessions.begin() as db:
            session = await self._session(db, session_id)
            now = self._clock()
            if session.started_at is not None:
                # Rounded up: the meter bills to the nearest second.
                connected = math.ceil((now - session.started_at).total_seconds())
                if billed_seconds > connected:
                    raise DomainError(
                        f"billed {billed_seconds} s exceeds the {connected} s since the room went live"
                    )
            await self._advance_session(db, session, Event.END, ended_at=now, billed_seconds=billed_seconds)

    async def settle(self, session_id: str) -> None:
        async with self._sessions.begin() as db:
            await self._advance_session(db, await self._session(db, session_id), Event.SETTLE)

    async def refund(self, session_id: str) -> None:
        async with self._sessions.begin() as db:
            await self._advance_session(db, await self._session(db, session_id), Event.REFUND)

    async def cancel(self, request_id: str, reason: str = "") -> None:
        await self._end_early(request_id, Event.CANCEL, reason)

    async def expire(self, request_id: str, reason: str = "") -> None:
        await self._end_early(request_id, Event.EXPIRE, reason)

    async def _end_early(self, request_id: str, event: Event, reason: str) -> None:
        detail = {"reason": reason} if reason else None
        now = self._clock()

        # A request that never got a session (no suitable expert, nobody answered) ends the way
        # it was opened: plain SQL through `write`, which on SQLite joins the inserts of the
        # requests arriving meanwhile. Through an ORM session it held this process's write lock
        # for ~100 ms under load, and every request's insert waited behind it.
        def end_request(db: Connection) -> bool:
            if db.scalar(select(Session.id).where(Session.request_id == request_id)) is not None:
                return False
            _advance_request_now(db, request_id, event, detail, now)
            # Closed before the experts could answer: not a lapse of theirs, so not counted as a
            # timed-out offer against their responsiveness.
            db.execute(
                update(Offer)
                .where(Offer.request_id == request_id, Offer.status == OfferStatus.PENDING)
                .values(status=OfferStatus.TAKEN, answered_at=now)
            )
            return True

        if await write(self._sessions, end_request):
            return
        async with self._sessions.begin() as db:
            session = await db.scalar(select(Session).where(Session.request_id == request_id))
            if session is None:
                await self._advance_request(db, request_id, event, detail=detail)
                await db.execute(
                    update(Offer)
                    .where(Offer.request_id == request_id, Offer.status == OfferStatus.PENDING)
                    .values(status=OfferStatus.TAKEN, answered_at=self._clock())
                )
            else:
                await self._advance_session(db, session, event, detail=detail)

    async def advance(
        self,
        db: AsyncSession,
        session: Session,
        event: Event,
        detail: dict[str, Any] | None = None,
        **changes: Any,
    ) -> State:
        """One transition inside the caller's transaction, so money postings commit with it or not at all."""
        target = await self._advance_session(db, session, event, detail, **changes)
        # The UPDATE bypassed the identity map: keep the loaded row in step for a next transition.
        set_committed_value(session, "state", target)
        return target

    async def _session(self, db: AsyncSession, session_id: str) -> Session:
        session = await db.get(Session, session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    async def _advance_request(
        self,
        db: AsyncSession,
        request_id: str,
        event: Event,
        detail: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> State:
        current = await db.scalar(select(HelpRequest.status).where(HelpRequest.id == request_id))
        if current is None:
            raise NotFound("request", request_id)
        if current is State.CLAIMED:  # the session carries the lifecycle from here on
            raise IllegalTransition(f"request {request_id}", "claimed", event.value)
        target = next_state(current, event, f"request {request_id}")
        now = self._clock()
        result = await db.execute(
            update(HelpRequest)
            .where(HelpRequest.id == request_id, HelpRequest.status == current)
            .values(status=target, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise IllegalTransition(f"request {request_id}", "changed concurrently", event.value)
        db.add(
            LifecycleEvent(
                request_id=request_id,
                session_id=session_id,
                event=event.value,
                from_state=current,
                to_state=target,
                at=now,
                detail=detail,
            )
        )
        return target

    async def _advance_session(
        self,
        db: AsyncSession,
        session: Session,
        event: Event,
        detail: dict[str, Any] | None = None,
        **changes: Any,
    ) -> State:
        current = session.state
        target = next_state(current, event, f"session {session.id}")
        now = self._clock()
        result = await db.execute(
            update(Session)
            .where(Session.id == session.id, Session.state == current)
            .values(state=target, updated_at=now, **changes)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise IllegalTransition(f"session {session.id}", "changed concurrently", event.value)
        db.add(
            LifecycleEvent(
                request_id=session.request_id,
                session_id=session.id,
                event=event.value,
                from_state=current,
                to_state=target,
                at=now,
                detail=detail,
            )
        )
        return target


def _advance_request_now(
    db: Connection,
    request_id: str,
    event: Event,
    detail: dict[str, Any] | None,
    now: datetime,
) -> State:
    """`Lifecycle._advance_request` on a plain connection, for a request without a session."""
    current = db.scalar(select(HelpRequest.status).where(HelpRequest.id == request_id))
    if current is None:
        raise NotFound("request", request_id)
    if current is State.CLAIMED:  # the session carries the lifecycle from here on
        raise IllegalTransition(f"request {request_id}", "claimed", event.value)
    target = next_state(current, event, f"request {request_id}")
    result = db.execute(
        update(HelpRequest)
        .where(HelpRequest.id == request_id, HelpRequest.status == current)
        .values(status=target, updated_at=now)
    )
    if result.rowcount != 1:
        raise IllegalTransition(f"request {request_id}", "changed concurrently", event.value)
    db.execute(
        insert(LifecycleEvent).values(
            request_id=request_id,
            event=event.value,
            from_state=current,
            to_state=target,
            at=now,
            detail=detail,
        )
    )
    return target
