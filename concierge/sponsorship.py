"""A sponsoring business's monthly budget as its admins and customers see it: spend so far
(charges plus open holds, as the Cashier counts it), what is left, and the alerts at 80 %
and when it is used up, each sent once per business and month.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import NotFound
from concierge.model import Business, BusinessAlert, Channel, Community, utcnow
from concierge.payments import Cashier

ALERT_PERCENT = 80
ALERT_KINDS = ("budget_80", "budget_spent")


@dataclass(frozen=True, slots=True)
class Budget:
    business_id: str
    business: str
    sponsors: bool
    amount: int | None  # None: no cap (or no sponsorship)
    currency: str | None
    spent: int

    @property
    def remaining(self) -> int | None:
        return None if self.amount is None else max(0, self.amount - self.spent)

    @property
    def exhausted(self) -> bool:
        return self.sponsors and self.amount is not None and self.spent >= self.amount

    @property
    def alert_due(self) -> str | None:
        """The alert this spend calls for, the stronger first."""
        if not self.sponsors or self.amount is None:
            return None
        if self.spent >= self.amount:
            return "budget_spent"
        if self.spent * 100 >= self.amount * ALERT_PERCENT:
            return "budget_80"
        return None


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    kind: str  # one of ALERT_KINDS
    budget: Budget


def month_label(now: datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


class Sponsorship:
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

    async def budget(self, business_id: str) -> Budget:
        async with self._sessions() as db:
            business = await db.get(Business, business_id)
            if business is None:
                raise NotFound("business", business_id)
            return await self._budget(db, business)

    async def _budget(self, db: AsyncSession, business: Business) -> Budget:
        currency = business.sponsorship_currency
        spent = 0 if currency is None else await self._cashier.sponsor_spent(db, business.id, currency)
        return Budget(
            business.id,
            business.name,
            business.sponsors_sessions,
            business.sponsorship_budget_amount,
            currency,
            spent,
        )

    async def exhausted_in(self, channel: Channel, external_id: str) -> Budget | None:
        """The budget of the business sponsoring this community, if it is used up this month."""
        async with self._sessions() as db:
            business = await db.scalar(
                select(Business)
                .join(Community, Community.business_id == Business.id)
                .where(
                    Community.channel == channel,
                    Community.external_id == external_id,
                    Business.sponsors_sessions.is_(True),
                    Business.sponsorship_budget_amount.is_not(None),
                )
            )
            if business is None:
                return None
            budget = await self._budget(db, business)
        return budget if budget.exhausted else None

    async def due_alerts(self) -> list[BudgetAlert]:
        """Budgets that crossed 80 % or ran out since the last look, each claimed by one process
        (a row per business, month and kind: a second claim fails on the primary key)."""
        month = month_label(self._clock())
        async with self._sessions() as db:
            # A business told this month that its budget ran out has nothing more to be told.
            told_spent = (
                select(BusinessAlert.kind)
                .where(
                    BusinessAlert.business_id == Business.id,
                    BusinessAlert.month == month,
                    BusinessAlert.kind == "budget_spent",
                )
                .exists()
            )
            sponsoring = list(
                await db.scalars(
                    select(Business).where(
                        Business.sponsors_sessions.is_(True),
                        Business.sponsorship_budget_amount.is_not(None),
                        ~told_spent,
                    )
                )
            )
            sent = {
                (row[0], row[1])
                for row in await db.execute(
                    select(BusinessAlert.business_id, BusinessAlert.kind).where(BusinessAlert.month == month)
                )
            }
            budgets = [await self._budget(db, business) for business in sponsoring]
        alerts = []
        for budget in budgets:
            kind = budget.alert_due
            if kind is None or (budget.business_id, kind) in sent:
                continue
            if await self._claim(budget.business_id, month, kind):
                alerts.append(BudgetAlert(kind, budget))
            if kind == "budget_spent":  # ran out at once: no 80 % alert after that
                await self._claim(budget.business_id, month, "budget_80")
        return alerts

    async def _claim(self, business_id: str, month: str, kind: str) -> bool:
        try:
            async with self._sessions.begin() as db:
                db.add(BusinessAlert(business_id=business_id, month=month, kind=kind))
        except IntegrityError:
            return False
        return True
