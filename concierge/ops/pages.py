"""The console's pages: live view, lists, a session's whole story, charts, and deciding an
escalated money-back request."""

from __future__ import annotations

import html
from datetime import UTC, date, datetime

from aiohttp import web
from sqlalchemy import func, select

from concierge.appkeys import REDIS, SESSIONS
from concierge.errors import NotFound
from concierge.model import MoneyBackRequest, MoneyBackStatus, RecordingAccess
from concierge.money_back import MoneyBack, MoneyBackRefused
from concierge.ops.charts import Series, bar_chart
from concierge.ops.guard import login_of, operator_of
from concierge.ops.html import Markup, definition_list, esc, hidden_csrf, link, page, query_url, table, when
from concierge.ops.keys import LISTS
from concierge.ops.lists import MAX_SEARCH_CHARS, PAGE_SIZE, money, session_link
from concierge.ops.queries import live_facts, session_facts
from concierge.ops.stats import chart_facts
from concierge.payments_web import CASHIER
from concierge.waiting_line import OfferClock, WaitingLine

RANGES = (7, 30, 90, 365)
MAX_PAGE = 100_000


def console_page(request: web.Request, title: str, body: Markup, status: int = 200) -> web.Response:
    return page(
        title,
        body,
        operator=operator_of(request).name,
        csrf=login_of(request).csrf_token,
        lists=request.config_dict[LISTS].menu(),
        status=status,
    )


def bad_input(request: web.Request, text: str, status: int = 400) -> web.Response:
    return console_page(request, "Cannot show that", Markup(f'<p class="error">{esc(text)}</p>'), status)


def _cards(pairs: list[tuple[str, int]]) -> Markup:
    return Markup(
        '<div class="cards">'
        + "".join(f'<div class="card"><strong>{esc(v)}</strong>{esc(k)}</div>' for k, v in pairs)
        + "</div>"
    )


async def live(request: web.Request) -> web.Response:
    redis = request.config_dict[REDIS]
    async with request.config_dict[SESSIONS]() as db:
        facts = await live_facts(db)
    cards = _cards(
        [
            ("experts online", facts.experts_online_count),
            ("customers in the waiting line", await WaitingLine(redis).length()),
            ("requests waiting for experts' answers", await OfferClock(redis).running()),
            ("sessions live now", facts.sessions_by_state.get("live", 0)),
        ]
    )
    body = Markup(
        cards
        + "<h2>Requests and sessions by state now</h2>"
        + table(
            ("State", "Requests", "Sessions"),
            [
                (state, facts.requests_by_state.get(state, 0), facts.sessions_by_state.get(state, 0))
                for state in ("open", "offered", "claimed", "awaiting_payment", "ready", "live")
            ],
        )
        + "<h2>Live sessions</h2>"
        + table(
            ("Session", "Customer", "Expert", "Since"),
            [(session_link(s.id), c, e, when(s.started_at)) for s, c, e in facts.live_sessions],
        )
        + "<h2>Experts online</h2>"
        + table(("Listing", "Name", "Headline"), facts.experts_online)
    )
    return console_page(request, "Live", body)


async def list_page(request: web.Request) -> web.Response:
    view = request.config_dict[LISTS].get(request.match_info["name"])
    if view is None:
        return bad_input(request, "There is no such list.", 404)
    search = request.query.get("q", "").strip()
    if len(search) > MAX_SEARCH_CHARS:
        return bad_input(request, f"A search is at most {MAX_SEARCH_CHARS} characters.")
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        return bad_input(request, "The page number must be a whole number.")
    if not 1 <= number <= MAX_PAGE:
        return bad_input(request, f"The page number is between 1 and {MAX_PAGE}.")
    async with request.config_dict[SESSIONS]() as db:
        total, rows = await view.read(db, search, (number - 1) * PAGE_SIZE, PAGE_SIZE)
    path = f"/ops/lists/{view.name}"
    pager = []
    if number > 1:
        pager.append(link(query_url(path, q=search, page=number - 1), "← newer"))
    if number * PAGE_SIZE < total:
        pager.append(link(query_url(path, q=search, page=number + 1), "older →"))
    body = Markup(
        f'<form method="get" action="{path}" role="search"><label>Search ({esc(view.hint)}) '
        f'<input name="q" value="{html.escape(search)}" maxlength="{MAX_SEARCH_CHARS}"></label> '
        '<button type="submit">Search</button></form>'
        f"<p>{total} found · page {number}</p>"
        + table(view.headers, rows)
        + f'<p class="pager">{"".join(pager)}</p>'
    )
    return console_page(request, view.label, body)


async def session_page(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    async with request.config_dict[SESSIONS]() as db:
        try:
            facts = await session_facts(db, session_id)
        except NotFound:
            return bad_input(request, "There is no such session.", 404)
        opened = int(
            await db.scalar(
                select(func.count(RecordingAccess.id)).where(RecordingAccess.session_id == session_id)
            )
            or 0
        )
    s = facts.session
    price = (
        "free"
        if s.pricing.amount == 0
        else f"{money(s.pricing.amount, s.pricing.currency)} {s.pricing.mode.value}"
    )
    parts = [
        definition_list(
            [
                ("Session", s.id),
                ("State", s.state.value),
                ("Customer", f"{facts.customer.display_name} ({facts.customer.id})"),
                ("Expert", f"{facts.expert_person.display_name} ({facts.expert.id})"),
                ("Request", facts.request.text),
                ("Price", price),
                ("Commission", f"{s.commission_percent} %"),
                ("Created", when(s.created_at)),
                ("Started", when(s.started_at)),
                ("Ended", when(s.ended_at)),
                ("Billed seconds", s.billed_seconds),
                ("Recorded", "yes" if s.recorded else "no"),
            ]
        ),
        Markup("<h2>Lifecycle</h2>"),
        table(
            ("At", "Event", "From", "To", "Detail"),
            [
                (when(e.at), e.event, e.from_state.value, e.to_state.value, str(e.detail or ""))
                for e in facts.events
            ],
        ),
        Markup("<h2>Room</h2>"),
    ]
    room = facts.room
    if room is None:
        parts.append(Markup("<p>No room was opened.</p>"))
    else:
        recording: Markup | str = "none"
        if room.recording:
            recording = Markup(f"{link(f'/ops/recordings/{s.id}', 'download')} (opened {opened} times)")
        parts.append(
            definition_list(
                [
                    ("Room", room.id),
                    ("Mode", room.mode.value),
                    ("State", room.state.value),
                    ("Billed seconds", room.billed_seconds),
                    ("End reason", room.end_reason.value if room.end_reason else ""),
                    ("Ended", when(room.ended_at)),
                    ("Recording", recording),
                ]
            )
        )
    parts += [
        Markup("<h2>Payments</h2>"),
        table(
            ("Payment", "Kind", "Status", "Amount", "Fee", "Provider", "Created"),
            [
                (
                    p.id,
                    p.kind.value,
                    p.status.value,
                    money(p.amount, p.currency),
                    money(p.fee, p.currency),
                    p.provider,
                    when(p.created_at),
                )
                for p in facts.payments
            ],
        ),
        Markup("<h2>Ledger entries</h2>"),
        table(
            ("Transaction", "Kind", "Account", "Amount", "At"),
            [
                (e.transaction_id, e.kind, e.account, money(e.amount, e.currency), when(e.created_at))
                for e in facts.ledger
            ],
        ),
        Markup("<h2>Reviews</h2>"),
        table(
            ("By", "Stars", "Text", "Published", "Hidden"),
            [
                (
                    "customer" if r.author_id == s.customer_id else "expert",
                    r.stars,
                    r.text,
                    when(r.published_at),
                    "yes" if r.hidden else "no",
                )
                for r in facts.reviews
            ],
        ),
        Markup("<h2>Money back</h2>"),
        _money_back(request, facts.money_back),
    ]
    return console_page(request, f"Session {s.id}", Markup("".join(parts)))


def _money_back(request: web.Request, mbr: MoneyBackRequest | None) -> Markup:
    if mbr is None:
        return Markup("<p>None asked.</p>")
    shown = definition_list(
        [
            ("Request", mbr.id),
            ("Status", mbr.status.value),
            ("Reason", mbr.reason),
            ("Refundable when asked", money(mbr.amount, mbr.currency)),
            ("Granted", "" if mbr.granted_amount is None else money(mbr.granted_amount, mbr.currency)),
            ("Decided by", mbr.decided_by),
            ("Operators' note", mbr.note),
        ]
    )
    if mbr.status is not MoneyBackStatus.ESCALATED:
        return shown
    csrf = hidden_csrf(login_of(request).csrf_token)
    return Markup(
        shown
        + f'<h3>Decide</h3><form method="post" action="/ops/disputes/{html.escape(mbr.id)}/decide">{csrf}'
        f"<label>Refund (minor units, at most {mbr.amount}; empty = all) "
        f'<input name="amount" inputmode="numeric" pattern="[0-9]*"></label> '
        '<label>Note <input name="note" required maxlength="500"></label> '
        '<button type="submit" name="decision" value="grant">Refund</button> '
        '<button type="submit" name="decision" value="refuse">Refuse</button></form>'
    )


async def decide(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    decision, note, amount_text = form.get("decision"), form.get("note"), form.get("amount", "")
    if decision not in ("grant", "refuse") or not isinstance(note, str) or not isinstance(amount_text, str):
        return bad_input(request, "Choose refund or refuse.")
    note = note.strip()
    if not note or len(note) > 500:
        return bad_input(request, "Write a note of 1 to 500 characters: the customer is told the decision.")
    amount: int | None = None
    if decision == "refuse":
        amount = 0
    elif amount_text.strip():
        if not amount_text.strip().isdigit() or len(amount_text.strip()) > 15 or int(amount_text) == 0:
            return bad_input(request, "The refund is a positive whole number of minor units (cents).")
        amount = int(amount_text)
    desk = MoneyBack(request.config_dict[SESSIONS], request.config_dict[CASHIER])
    try:
        view = await desk.view(request.match_info["request_id"])
        await desk.decide(view.id, amount, f"{note} ({operator_of(request).name})")
    except NotFound:
        return bad_input(request, "There is no such money-back request.", 404)
    except MoneyBackRefused as exc:
        return bad_input(request, f"Not decided: {exc.reason.replace('_', ' ')}.", 409)
    raise web.HTTPSeeOther(f"/ops/sessions/{view.session_id}")


def _parse_range(request: web.Request) -> tuple[date, int] | str:
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        return "The range is a number of days."
    if days not in RANGES:
        return f"Pick a range of {', '.join(map(str, RANGES))} days."
    today = datetime.now(UTC).date()
    until_text = request.query.get("until", "")
    try:
        until = date.fromisoformat(until_text) if until_text else today
    except ValueError:
        return "The last day is a date such as 2026-11-24."
    if not date(2000, 1, 1) <= until <= today:
        return "The last day is between 2000-01-01 and today."
    return until, days


def _duration(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


async def charts(request: web.Request) -> web.Response:
    parsed = _parse_range(request)
    if isinstance(parsed, str):
        return bad_input(request, parsed)
    until, days = parsed
    async with request.config_dict[SESSIONS]() as db:
        facts = await chart_facts(db, until, days)
    labels = [day.strftime("%m-%d") for day in facts.days]
    options = "".join(
        f'<option value="{n}"{" selected" if n == days else ""}>last {n} days</option>' for n in RANGES
    )
    figures = [
        bar_chart("Sessions per day", labels, [Series("sessions", facts.sessions)]),
        bar_chart("Minutes per day", labels, [Series("billed minutes", facts.minutes)], decimals=1),
    ]
    for currency in sorted(set(facts.revenue) | set(facts.commission)):
        zero = [0] * days
        figures.append(
            bar_chart(
                f"Revenue and commission per day ({currency}, minor units)",
                labels,
                [
                    Series("revenue", facts.revenue.get(currency, zero)),
                    Series("commission", facts.commission.get(currency, zero)),
                ],
            )
        )
    rate = [None if r is None else round(100 * r, 1) for r in facts.match_rate]
    figures += [
        bar_chart("Match rate per day (%)", labels, [Series("requests matched %", rate)], decimals=1),
        bar_chart(
            "Time to accept, median (s)",
            labels,
            [Series("first offer → accepted", [_duration(v) for v in facts.accept_median_s])],
            decimals=1,
        ),
        bar_chart(
            "Wait for an expert (s)",
            labels,
            [
                Series("median", [_duration(v) for v in facts.wait_median_s]),
                Series("90th percentile", [_duration(v) for v in facts.wait_p90_s]),
            ],
            decimals=1,
        ),
        bar_chart(
            "Ratings customers gave", ["1★", "2★", "3★", "4★", "5★"], [Series("reviews", facts.ratings)]
        ),
    ]
    total_requests = sum(facts.requests)
    summary = _cards(
        [
            ("sessions", sum(facts.sessions)),
            ("billed minutes", round(sum(facts.minutes))),
            ("requests", total_requests),
            ("requests matched", sum(facts.matched)),
        ]
    )
    selector = Markup(
        f'<form method="get" action="/ops/charts"><label>Range <select name="days">{options}</select>'
        f'</label> <label>ending <input type="date" name="until" value="{until.isoformat()}"></label> '
        '<button type="submit">Show</button></form>'
    )
    body = Markup(
        selector
        + f"<p>{facts.days[0].isoformat()} to {facts.days[-1].isoformat()}, UTC days. Revenue is what payers "
        "were charged net of refunds; commission the platform's fees net of refunded fees. Wait for an "
        "expert runs from the request to an expert's acceptance, waiting line included.</p>"
        + summary
        + "".join(figures)
    )
    return console_page(request, "Charts", body)
