"""Money-back requests: asked by the customer within the refund window, answered by the expert
(all, half, or no), escalated to the operators when the expert says no; refunds go through the
cashier, so the ledger stays balanced and both are told through the usual refund notice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.contact_flags import hide
from concierge.errors import NotFound, Refused
from concierge.lifecycle import State
from concierge.model import (
    Expert,
    MoneyBackRequest,
    MoneyBackStatus,
    Notice,
    Payment,
    PaymentKind,
    Person,
    Session,
    new_id,
    utcnow,
)
from concierge.payments import Cashier
from concierge.session_facts import session_facts

MAX_REASON_CHARS = 1000


class MoneyBackRefused(Refused):
    """A request or answer that cannot be taken; `reason` names a message for people."""


@dataclass(frozen=True, slots=True)
class MoneyBackView:
    id: str
    session_id: str
    customer_id: str
    expert_person_id: str
    reason: str
    amount: int
    currency: str
    status: MoneyBackStatus
    granted_amount: int | None


class MoneyBack:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cashier: Cashier,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._cashier = cashier
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock().replace(tzinfo=UTC)

    async def ask(self, customer_id: str, session_id: str, reason: str) -> MoneyBackView:
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON_CHARS:
            raise MoneyBackRefused("reason_length")
        async with self._sessions() as db:
            session = await db.get(Session, session_id)
            if session is None:
                raise NotFound("session", session_id)
            if session.customer_id != customer_id:
                raise MoneyBackRefused("not_yours")
            refundable = await _refundable(db, session_id)
            locale = await db.scalar(select(Person.locale).where(Person.id == customer_id)) or "en"
        if session.state not in (State.SETTLED, State.REFUNDED) or refundable is None or refundable[0] <= 0:
            raise MoneyBackRefused("nothing_to_refund")
        assert session.ended_at is not None
        window = timedelta(hours=self._cashier.settings.refund_window_hours)
        if self._now() > session.ended_at.replace(tzinfo=UTC) + window:
            raise MoneyBackRefused("too_late")
        request = MoneyBackRequest(
            id=new_id("mbr"),
            session_id=session_id,
            customer_id=customer_id,
            reason=reason,
            amount=refundable[0],
            currency=refundable[1],
            created_at=self._now(),
        )
        try:
            async with self._sessions.begin() as db:
                # The expert reads the reason: no way around the platform in it.
                request.reason = hide(db, customer_id, "moneyback", request.id, reason, locale)
                db.add(request)
        except IntegrityError:
            raise MoneyBackRefused("already_asked") from None
        return await self.view(request.id)

    async def answer(self, expert_person_id: str, request_id: str, decision: str) -> MoneyBackView:
        """The expert's answer: "all", "half" (rounded down to a minor unit) or "decline"."""
        request = await self.view(request_id)
        if request.expert_person_id != expert_person_id:
            raise MoneyBackRefused("not_yours")
        if decision not in ("all", "half", "decline"):
            raise MoneyBackRefused("decision")
        if decision == "decline":
            await self._close(request_id, MoneyBackStatus.OPEN, MoneyBackStatus.DECLINED, "expert")
            return await self.view(request_id)
        amount = request.amount if decision == "all" else max(request.amount // 2, 1)
        return await self._grant(request, MoneyBackStatus.OPEN, amount, "expert")

    async def escalate(self, customer_id: str, request_id: str) -> MoneyBackView:
        request = await self.view(request_id)
        if request.customer_id != customer_id:
            raise MoneyBackRefused("not_yours")
        await self._close(request_id, MoneyBackStatus.DECLINED, MoneyBackStatus.ESCALATED, None)
        return await self.view(request_id)

    async def decide(self, request_id: str, amount: int | None, note: str) -> MoneyBackView:
        """The operators' decision on an escalated request: refund `amount` (all when None), or
        refuse with amount 0."""
        request = await self.view(request_id)
        if amount == 0:
            await self._close(
                request_id, MoneyBackStatus.ESCALATED, MoneyBackStatus.REFUSED, "operator", note
            )
            async with self._sessions.begin() as db:
                db.add(
                    Notice(
                        key=f"{request.session_id}:moneyback_refused",
                        session_id=request.session_id,
                        kind="moneyback_refused",
                        detail={"note": note[:500]},
                    )
                )
            return await self.view(request_id)
        return await self._grant(
            request, MoneyBackStatus.ESCALATED, amount or request.amount, "operator", note
        )

    async def _grant(
        self, request: MoneyBackView, expected: MoneyBackStatus, amount: int, by: str, note: str | None = None
    ) -> MoneyBackView:
        if request.status is not expected:
            raise MoneyBackRefused("already_decided")
        if not 0 < amount <= request.amount:
            raise MoneyBackRefused("amount")
        # Claim the decision first, so two answers racing cannot both refund.
        await self._close(request.id, expected, MoneyBackStatus.GRANTED, by, note, granted=amount)
        try:
            await self._cashier.refund(request.session_id, amount, f"money back ({by})")
        except Exception:
            await self._close(request.id, MoneyBackStatus.GRANTED, expected, None, None, granted=None)
            raise
        return await self.view(request.id)

    async def _close(
        self,
        request_id: str,
        expected: MoneyBackStatus,
        status: MoneyBackStatus,
        by: str | None,
        note: str | None = None,
        *,
        granted: int | None = None,
    ) -> None:
        decided = status in (MoneyBackStatus.GRANTED, MoneyBackStatus.DECLINED, MoneyBackStatus.REFUSED)
        async with self._sessions.begin() as db:
            result = await db.execute(
                update(MoneyBackRequest)
                .where(MoneyBackRequest.id == request_id, MoneyBackRequest.status == expected)
                .values(
                    status=status,
                    decided_by=by,
                    note=note[:500] if note else None,
                    granted_amount=granted,
                    decided_at=self._now() if decided else None,
                )
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise MoneyBackRefused("already_decided")

    async def view(self, request_id: str) -> MoneyBackView:
        async with self._sessions() as db:
            row = await db.get(MoneyBackRequest, request_id)
            if row is None:
                raise NotFound("money-back request", request_id)
            expert_person = await db.scalar(
                select(Expert.person_id)
                .join(Session, Session.expert_id == Expert.id)
                .where(Session.id == row.session_id)
            )
        assert expert_person is not None
        return MoneyBackView(
            row.id,
            row.session_id,
            row.customer_id,
            expert_person,
            row.reason,
            row.amount,
            row.currency,
            row.status,
            row.granted_amount,
        )

    async def listed(self, status: MoneyBackStatus | None = None) -> list[MoneyBackView]:
        async with self._sessions() as db:
            query = select(MoneyBackRequest.id).order_by(MoneyBackRequest.created_at)
            if status is not None:
                query = query.where(MoneyBackRequest.status == status)
            ids = list(await db.scalars(query))
        return [await self.view(request_id) for request_id in ids]

    async def facts(self, request_id: str) -> dict[str, Any]:
        """What the operators see to decide: the session's times, billed seconds, its lifecycle
        and connection events, the recording if there is one, and the money."""
        request = await self.view(request_id)
        async with self._sessions() as db:
            facts = await session_facts(db, request.session_id)
        return {
            "request": request.id,
            "status": request.status.value,
            "reason": request.reason,
            "refundable": request.amount,
            "currency": request.currency,
            **facts,
        }


async def _refundable(db: AsyncSession, session_id: str) -> tuple[int, str] | None:
    payments = list(await db.scalars(select(Payment).where(Payment.session_id == session_id)))
    capture = next((p for p in payments if p.kind is PaymentKind.CAPTURE), None)
    if capture is None:
        return None
    refunded = sum(p.amount for p in payments if p.kind is PaymentKind.REFUND)
    return capture.amount - refunded, capture.currency
