"""A business's monthly report (sessions, minutes, spend, ratings, top experts) for its admins:
as a chat message, as a page behind a signed link, and sent by itself on the first of a month.

A link `/business/<token>/report?month=YYYY-MM` names one business and the reader's language,
signed with the secret key: it can be opened without logging in, and not altered to show
another business's figures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import ledger
from concierge.errors import DomainError, NotFound
from concierge.model import (
    Business,
    BusinessAdmin,
    BusinessAlert,
    Community,
    Expert,
    HelpRequest,
    LedgerEntry,
    Person,
    Review,
    Session,
    utcnow,
)
from knowledge.i18n import LANGUAGES, Catalogues, money

TOP_EXPERTS = 3
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def parse_month(text: str) -> tuple[int, int]:
    """ "2026-11" → (2026, 11); anything else is refused."""
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2999:
        raise DomainError("a month is written YYYY-MM, for example 2026-11")
    return int(match[1]), int(match[2])


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def previous_month(now: datetime) -> tuple[int, int]:
    return (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)


class ReportLinks:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = hashlib.sha256(b"business-report:" + key).digest()
        self._base = base_url

    def url(self, business_id: str, language: str, year: int, month: int) -> str:
        return (
            f"{self._base}/business/{self.token(business_id, language)}/report?month={year:04d}-{month:02d}"
        )

    def token(self, business_id: str, language: str) -> str:
        body = f"{business_id}.{language}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str) -> tuple[str, str] | None:
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 200:
            return None
        business_id, language, signature = parts
        if language not in LANGUAGES:
            return None
        if not hmac.compare_digest(signature, self._sign(f"{business_id}.{language}")):
            return None
        return business_id, language

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    business_id: str
    business: str
    year: int
    month: int
    sessions: int
    minutes: int
    spend: int
    currency: str | None
    rating: float | None
    rating_count: int
    top_experts: tuple[tuple[str, int], ...]  # (name, sessions), most first

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, slots=True)
class ReportDue:
    report: MonthlyReport
    admin_ids: tuple[str, ...]


async def monthly_report(db: AsyncSession, business_id: str, year: int, month: int) -> MonthlyReport:
    business = await db.get(Business, business_id)
    if business is None:
        raise NotFound("business", business_id)
    start, end = month_bounds(year, month)
    in_month = (
        select(Session.id, Session.expert_id, Session.billed_seconds, Session.customer_id)
        .join(HelpRequest, HelpRequest.id == Session.request_id)
        .join(Community, Community.id == HelpRequest.community_id)
        .where(Community.business_id == business_id, Session.started_at >= start, Session.started_at < end)
        .subquery()
    )
    count, seconds = (
        await db.execute(
            select(func.count(in_month.c.id), func.coalesce(func.sum(in_month.c.billed_seconds), 0))
        )
    ).one()
    stars, rated = (
        await db.execute(
            select(func.avg(Review.stars), func.count(Review.id))
            .join(in_month, in_month.c.id == Review.session_id)
            .where(Review.author_id == in_month.c.customer_id, Review.hidden.is_(False))
        )
    ).one()
    top = await db.execute(
        select(Person.display_name, func.count(in_month.c.id).label("n"))
        .join(Expert, Expert.id == in_month.c.expert_id)
        .join(Person, Person.id == Expert.person_id)
        .group_by(Expert.id, Person.display_name)
        .order_by(func.count(in_month.c.id).desc(), Person.display_name)
        .limit(TOP_EXPERTS)
    )
    currency = business.sponsorship_currency
    spend = 0
    if currency is not None:
        spend = int(
            await db.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.account == ledger.payer_account("sponsor", business_id),
                    LedgerEntry.currency == currency,
                    LedgerEntry.kind.in_([ledger.PostingKind.CHARGE.value, ledger.PostingKind.REFUND.value]),
                    LedgerEntry.created_at >= start,
                    LedgerEntry.created_at < end,
                )
            )
            or 0
        )
    return MonthlyReport(
        business_id=business.id,
        business=business.name,
        year=year,
        month=month,
        sessions=int(count or 0),
        minutes=(int(seconds or 0) + 59) // 60,
        spend=spend,
        currency=currency,
        rating=None if not rated else float(stars),
        rating_count=int(rated or 0),
        top_experts=tuple((row[0] or "—", int(row[1])) for row in top),
    )


class BusinessReports:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        links: ReportLinks,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self.links = links
        self._clock = clock

    async def report(self, business_id: str, year: int, month: int) -> MonthlyReport:
        async with self._sessions() as db:
            return await monthly_report(db, business_id, year, month)

    async def due(self) -> list[ReportDue]:
        """Last month's report for every business with admins that has not had it yet, each claimed
        by one process (its alert row), from the first of the month on."""
        now = self._clock()
        year, month = previous_month(now)
        label = f"{year:04d}-{month:02d}"
        this_month, _ = month_bounds(now.year, now.month)
        async with self._sessions() as db:
            waiting = list(
                await db.scalars(
                    select(Business.id)
                    .where(
                        Business.created_at < this_month,
                        select(BusinessAdmin.person_id)
                        .where(BusinessAdmin.business_id == Business.id)
                        .exists(),
                        ~select(BusinessAlert.kind)
                        .where(
                            BusinessAlert.business_id == Business.id,
                            BusinessAlert.month == label,
                            BusinessAlert.kind == "report",
                        )
                        .exists(),
                    )
                    .limit(50)
                )
            )
        due = []
        for business_id in waiting:
            try:
                async with self._sessions.begin() as db:
                    db.add(BusinessAlert(business_id=business_id, month=label, kind="report"))
            except IntegrityError:
                continue  # another process sends this one
            async with self._sessions() as db:
                report = await monthly_report(db, business_id, year, month)
                admins = await db.scalars(
                    select(BusinessAdmin.person_id).where(BusinessAdmin.business_id == business_id)
                )
                due.append(ReportDue(report, tuple(admins)))
        return due


def render_report(report: MonthlyReport, language: str, t: Catalogues) -> str:
    rows = report_rows(report, language, t)
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    title = t.text("business.report.title", language, business=report.business, month=report.label)
    experts = "".join(
        f"<li>{html.escape(name)} — {html.escape(t.text('business.report.sessions_of', language, count=n))}"
        "</li>"
        for name, n in report.top_experts
    )
    top = t.text("business.report.top", language)
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1><table>{body}</table>"
        f"<h2>{html.escape(top)}</h2><ol>{experts}</ol></main></body></html>"
    )


def report_rows(report: MonthlyReport, language: str, t: Catalogues) -> list[tuple[str, str]]:
    """The report's figures, labelled in the reader's language (the chat message and the page)."""
    rating = "—" if report.rating is None else f"{report.rating:.1f} ★"
    spend = "—" if report.currency is None else money(report.spend, report.currency, language)
    return [
        (t.text("business.report.sessions", language), str(report.sessions)),
        (t.text("business.report.minutes", language), str(report.minutes)),
        (t.text("business.report.spend", language), spend),
        (t.text("business.report.rating", language), f"{rating} ({report.rating_count})"),
    ]


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}"
    "main{max-width:34rem;margin:2rem auto;background:#fff;padding:1.5rem;border-radius:12px}"
    "h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.1rem}"
    "table{width:100%;border-collapse:collapse}th,td{padding:.45rem 0;border-bottom:1px solid #eee;"
    "text-align:left}td{text-align:right}"
)
