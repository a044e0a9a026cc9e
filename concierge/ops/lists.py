"""The console's searchable, paginated lists, one `ListView` each, kept in a `ListRegistry`.

Adding a list is one more `ListView` registered in `default_lists` (or by the module that owns
the noun): a name for the URL (/ops/lists/<name>), a label, column headers, and a function that
reads one page of rows matching a search text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from concierge.articles import article_stats
from concierge.model import (
    Business,
    Community,
    Expert,
    HelpRequest,
    MoneyBackRequest,
    Operator,
    Payment,
    Person,
    RecordingAccess,
    Report,
    Room,
    Session,
)
from concierge.money import Money, format_money
from concierge.ops.html import Cell, link, when

PAGE_SIZE = 50
MAX_SEARCH_CHARS = 100

Rows = tuple[int, list[Sequence[Cell]]]  # (rows matching in all, this page's rows)
Reader = Callable[[AsyncSession, str, int, int], Awaitable[Rows]]


@dataclass(frozen=True, slots=True)
class ListView:
    name: str
    label: str
    headers: Sequence[str]
    read: Reader  # (db, search text or "", offset, limit) → Rows
    hint: str = ""  # what the search looks in


class ListRegistry:
    def __init__(self) -> None:
        self._views: dict[str, ListView] = {}

    def add(self, view: ListView) -> None:
        if view.name in self._views:
            raise ValueError(f"a list named {view.name!r} is registered already")
        self._views[view.name] = view

    def get(self, name: str) -> ListView | None:
        return self._views.get(name)

    def menu(self) -> list[tuple[str, str]]:
        return [(view.name, view.label) for view in self._views.values()]


def contains(column: ColumnElement[Any] | InstrumentedAttribute[Any], text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, the same on SQLite and PostgreSQL; LIKE wildcards typed
    in the search are matched literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


async def page_of(db: AsyncSession, query: Any, offset: int, limit: int) -> tuple[int, list[Any]]:
    """(rows matching in all, the rows of this page) of a SELECT of any shape."""
    total = int(await db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    return total, list(await db.execute(query.offset(offset).limit(limit)))


def money(amount: int, currency: str) -> str:
    return format_money(Money(amount, currency))


def session_link(session_id: str | None) -> Cell:
    return None if session_id is None else link(f"/ops/sessions/{session_id}", session_id)


async def read_sessions(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    query = (
        select(Session, Person.display_name, HelpRequest.text)
        .join(Person, Person.id == Session.customer_id)
        .join(HelpRequest, HelpRequest.id == Session.request_id)
        .order_by(Session.created_at.desc(), Session.id)
    )
    if search:
        query = query.where(
            or_(
                contains(Session.id, search),
                contains(Session.expert_id, search),
                contains(Person.display_name, search),
                contains(HelpRequest.text, search),
            )
        )
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (
            session_link(s.id),
            s.state.value,
            name,
            s.expert_id,
            text[:80],
            when(s.created_at),
            s.billed_seconds,
            "free" if s.pricing.amount == 0 else money(s.pricing.amount, s.pricing.currency),
        )
        for s, name, text in rows
    ]


async def read_payments(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    query = select(Payment).order_by(Payment.created_at.desc(), Payment.id)
    if search:
        query = query.where(
            or_(
                contains(Payment.id, search),
                contains(Payment.session_id, search),
                contains(Payment.provider_ref, search),
                contains(Payment.payer, search),
            )
        )
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (
            p.id,
            session_link(p.session_id),
            p.kind.value,
            p.status.value,
            money(p.amount, p.currency),
            money(p.fee, p.currency),
            p.provider,
            p.payer,
            when(p.created_at),
        )
        for (p,) in rows
    ]


async def read_disputes(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    query = select(MoneyBackRequest).order_by(MoneyBackRequest.created_at.desc(), MoneyBackRequest.id)
    if search:
        query = query.where(
            or_(
                contains(MoneyBackRequest.id, search),
                contains(MoneyBackRequest.session_id, search),
                contains(MoneyBackRequest.status, search),
                contains(MoneyBackRequest.reason, search),
            )
        )
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (
            m.id,
            session_link(m.session_id),
            m.status.value,
            money(m.amount, m.currency),
            None if m.granted_amount is None else money(m.granted_amount, m.currency),
            m.reason[:120],
            when(m.created_at),
            m.decided_by,
        )
        for (m,) in rows
    ]


async def read_reports(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    query = select(Report).order_by(Report.created_at.desc(), Report.id)
    if search:
        query = query.where(
            or_(
                contains(Report.id, search),
                contains(Report.session_id, search),
                contains(Report.reported_id, search),
                contains(Report.status, search),
                contains(Report.reason, search),
            )
        )
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (
            r.id,
            session_link(r.session_id),
            r.status.value,
            r.reporter_id,
            r.reported_id,
            r.reason[:160],
            when(r.created_at),
            r.note or "",
        )
        for (r,) in rows
    ]


async def read_articles(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    """Self-help articles by how often they were offered and whether they solved the problem."""
    stats = [
        s
        for s in await article_stats(db)
        if not search or search.lower() in f"{s.article_id} {s.business_id or ''}".lower()
    ]
    rows: list[Sequence[Cell]] = [
        (
            s.article_id,
            s.business_id or "shared",
            s.shown,
            s.solved,
            s.still_want,
            "" if s.solved_rate is None else f"{s.solved_rate:.0%}",
            when(s.last_shown) if s.last_shown else "",
        )
        for s in stats[offset : offset + limit]
    ]
    return len(stats), rows


async def read_recordings(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    accesses = (
        select(func.count(RecordingAccess.id))
        .where(RecordingAccess.session_id == Room.session_id)
        .scalar_subquery()
    )
    query = (
        select(Room, accesses)
        .where(Room.recording.is_not(None), Room.session_id.is_not(None))
        .order_by(Room.created_at.desc(), Room.id)
    )
    if search:
        query = query.where(or_(contains(Room.session_id, search), contains(Room.id, search)))
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (
            session_link(r.session_id),
            r.customer_name,
            r.expert_name,
            when(r.created_at),
            when(r.ended_at),
            link(f"/ops/recordings/{r.session_id}", "download"),
            opened,
        )
        for r, opened in rows
    ]


async def read_accesses(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    query = (
        select(RecordingAccess, Operator.name)
        .join(Operator, Operator.id == RecordingAccess.operator_id)
        .order_by(RecordingAccess.at.desc(), RecordingAccess.id.desc())
    )
    if search:
        query = query.where(
            or_(
                contains(Operator.name, search),
                contains(RecordingAccess.session_id, search),
                contains(RecordingAccess.ip, search),
            )
        )
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (when(a.at), name, session_link(a.session_id), a.ip, a.user_agent[:120]) for a, name in rows
    ]


async def read_businesses(db: AsyncSession, search: str, offset: int, limit: int) -> Rows:
    communities = (
        select(func.count(Community.id)).where(Community.business_id == Business.id).scalar_subquery()
    )
    experts = select(func.count(Expert.id)).where(Expert.business_id == Business.id).scalar_subquery()
    query = select(Business, communities, experts).order_by(Business.name, Business.id)
    if search:
        query = query.where(or_(contains(Business.id, search), contains(Business.name, search)))
    total, rows = await page_of(db, query, offset, limit)
    return total, [
        (
            b.id,
            b.name,
            b.scope.value,
            "default" if b.commission_percent is None else f"{b.commission_percent} %",
            "yes" if b.sponsors_sessions else "no",
            None
            if b.sponsorship_budget_amount is None or b.sponsorship_currency is None
            else money(b.sponsorship_budget_amount, b.sponsorship_currency),
            n_communities,
            n_experts,
            when(b.created_at),
        )
        for b, n_communities, n_experts in rows
    ]


def default_lists() -> ListRegistry:
    registry = ListRegistry()
    for view in (
        ListView(
            "sessions",
            "Sessions",
            ("Session", "State", "Customer", "Expert", "Request", "Created", "Billed s", "Price"),
            read_sessions,
            "id, expert, customer name, request text",
        ),
        ListView(
            "payments",
            "Payments",
            ("Payment", "Session", "Kind", "Status", "Amount", "Fee", "Provider", "Payer", "Created"),
            read_payments,
            "id, session, provider reference, payer",
        ),
        ListView(
            "disputes",
            "Disputes",
            ("Request", "Session", "Status", "Asked", "Granted", "Reason", "Created", "Decided by"),
            read_disputes,
            "id, session, status (escalated…), reason",
        ),
        ListView(
            "reports",
            "Reports",
            ("Report", "Session", "Status", "By", "About", "Reason", "Created", "Operator's note"),
            read_reports,
            "id, session, reported person, status (open…), reason",
        ),
        ListView(
            "articles",
            "Self-help articles",
            ("Article", "Library", "Offered", "Solved it", "Still wanted an expert", "Solved rate", "Last"),
            read_articles,
            "article id, business",
        ),
        ListView(
            "recordings",
            "Recordings",
            ("Session", "Customer", "Expert", "Room opened", "Ended", "File", "Times opened"),
            read_recordings,
            "session or room id",
        ),
        ListView(
            "recording-access",
            "Recording access log",
            ("At", "Operator", "Session", "Address", "User agent"),
            read_accesses,
            "operator, session, address",
        ),
        ListView(
            "businesses",
            "Businesses",
            (
                "Business",
                "Name",
                "Scope",
                "Commission",
                "Sponsors",
                "Budget",
                "Communities",
                "Experts",
                "Created",
            ),
            read_businesses,
            "id or name",
        ),
    ):
        registry.add(view)
    return registry
