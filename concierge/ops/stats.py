"""The numbers behind the console's charts, per UTC day over a range of days.

Grouped by day in Python rather than in SQL: date functions differ between SQLite and PostgreSQL,
and a range of a year of sessions is small enough to read. Definitions (also shown on the page):
- sessions and minutes: sessions that went live that day, and the minutes billed for them;
- revenue: what payers were charged, net of refunds; commission: the platform's fees, net of
  refunded fees; both from the ledger, per currency, on the day of the posting;
- match rate: requests made that day that got a session (an expert accepted) / all requests;
- time to accept: first offer sent → an expert accepted, median;
- wait for an expert: request made → an expert accepted (the customer's whole wait, in the
  waiting line included), median and 90th percentile;
- ratings: the stars customers gave experts in reviews written in the range.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import PLATFORM_FEES, PostingKind
from concierge.model import HelpRequest, LedgerEntry, LifecycleEvent, Review, Session


@dataclass(slots=True)
class ChartFacts:
    days: list[date]
    sessions: list[int]
    minutes: list[float]
    revenue: dict[str, list[int]] = field(default_factory=dict)  # currency → minor units per day
    commission: dict[str, list[int]] = field(default_factory=dict)
    requests: list[int] = field(default_factory=list)
    matched: list[int] = field(default_factory=list)
    accept_median_s: list[float | None] = field(default_factory=list)
    wait_median_s: list[float | None] = field(default_factory=list)
    wait_p90_s: list[float | None] = field(default_factory=list)
    ratings: list[int] = field(default_factory=lambda: [0] * 5)  # 1 to 5 stars

    @property
    def match_rate(self) -> list[float | None]:
        return [m / r if r else None for m, r in zip(self.matched, self.requests, strict=True)]


def day_range(last: date, days: int) -> list[date]:
    return [last - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


async def chart_facts(db: AsyncSession, last: date, days: int) -> ChartFacts:
    span = day_range(last, days)
    since = datetime.combine(span[0], time.min, UTC)
    until = datetime.combine(last + timedelta(days=1), time.min, UTC)
    position = {day: index for index, day in enumerate(span)}
    facts = ChartFacts(span, [0] * days, [0.0] * days, requests=[0] * days, matched=[0] * days)

    for started, billed in await db.execute(
        select(Session.started_at, Session.billed_seconds).where(
            Session.started_at >= since, Session.started_at < until
        )
    ):
        assert started is not None  # by the WHERE clause
        index = position[started.date()]
        facts.sessions[index] += 1
        facts.minutes[index] += billed / 60
    facts.minutes = [round(m, 1) for m in facts.minutes]

    for account, amount, currency, at in await db.execute(
        select(LedgerEntry.account, LedgerEntry.amount, LedgerEntry.currency, LedgerEntry.created_at).where(
            LedgerEntry.kind.in_([PostingKind.CHARGE.value, PostingKind.REFUND.value]),
            LedgerEntry.created_at >= since,
            LedgerEntry.created_at < until,
        )
    ):
        index = position[at.date()]
        if account.startswith("payer:"):
            facts.revenue.setdefault(currency, [0] * days)[index] += amount
        elif account == PLATFORM_FEES:
            facts.commission.setdefault(currency, [0] * days)[index] -= amount

    made: dict[str, datetime] = {}
    for request_id, created in await db.execute(
        select(HelpRequest.id, HelpRequest.created_at).where(
            HelpRequest.created_at >= since, HelpRequest.created_at < until
        )
    ):
        made[request_id] = created
        facts.requests[position[created.date()]] += 1
    first_offer: dict[str, datetime] = {}
    claimed: dict[str, datetime] = {}
    if made:
        for request_id, event, at in await db.execute(
            select(LifecycleEvent.request_id, LifecycleEvent.event, LifecycleEvent.at)
            .join(HelpRequest, HelpRequest.id == LifecycleEvent.request_id)
            .where(
                HelpRequest.created_at >= since,
                HelpRequest.created_at < until,
                LifecycleEvent.event.in_(["offer", "claim"]),
            )
            .order_by(LifecycleEvent.id)
        ):
            if event == "offer":
                first_offer.setdefault(request_id, at)
            else:
                claimed.setdefault(request_id, at)
    accepts: dict[int, list[float]] = defaultdict(list)
    waits: dict[int, list[float]] = defaultdict(list)
    for request_id, at in claimed.items():
        index = position[made[request_id].date()]
        facts.matched[index] += 1
        waits[index].append((at - made[request_id]).total_seconds())
        if request_id in first_offer:
            accepts[index].append((at - first_offer[request_id]).total_seconds())
    facts.accept_median_s = [statistics.median(accepts[i]) if accepts[i] else None for i in range(days)]
    facts.wait_median_s = [statistics.median(waits[i]) if waits[i] else None for i in range(days)]
    facts.wait_p90_s = [_p90(waits[i]) for i in range(days)]

    for (stars,) in await db.execute(
        select(Review.stars)
        .join(Session, Session.id == Review.session_id)
        .where(Review.author_id == Session.customer_id, Review.created_at >= since, Review.created_at < until)
    ):
        facts.ratings[stars - 1] += 1
    return facts
