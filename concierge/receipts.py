"""Receipts (for the customer) and payout statements (for the expert) as pages behind signed links.

A link `/receipts/<token>` names one session, one role and the reader's language, signed with
the secret key, so it can be sent in a chat and opened without logging in, and cannot be
altered to show someone else's session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.quotes import Charge
from concierge.errors import NotFound
from concierge.model import (
    Business,
    Expert,
    HelpRequest,
    LedgerEntry,
    Payment,
    PaymentKind,
    PaymentStatus,
    Person,
    Session,
)
from knowledge.i18n import LANGUAGES, Catalogues, moment, money

ROLES = ("customer", "expert")


class ReceiptLinks:
    """Signed links to one party's page about a session: a receipt, or (another `purpose`, so
    one kind of token never opens the other) a calendar file."""

    def __init__(
        self, key: bytes, base_url: str, *, purpose: str = "receipt", path: str = "/receipts"
    ) -> None:
        self._key = hashlib.sha256(purpose.encode() + b":" + key).digest()
        self._base = base_url + path

    def url(self, session_id: str, role: str, language: str) -> str:
        return f"{self._base}/{self.token(session_id, role, language)}"

    def token(self, session_id: str, role: str, language: str) -> str:
        body = f"{session_id}.{role}.{language}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str) -> tuple[str, str, str] | None:
        parts = token.split(".")
        if len(parts) != 4 or len(token) > 200:
            return None
        session_id, role, language, signature = parts
        if role not in ROLES or language not in LANGUAGES:
            return None
        if not hmac.compare_digest(signature, self._sign(f"{session_id}.{role}.{language}")):
            return None
        return session_id, role, language

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    session_id: str
    customer: str
    expert: str
    request: str
    time_zone: str
    started_at: datetime | None
    ended_at: datetime | None
    billed_seconds: int
    held: int
    charge: Charge
    refunded: int
    refunded_fee: int
    owed: int  # the expert's share not transferred yet (invoiced, or payouts not set up)
    sponsor: str | None
    provider: str


async def receipt_facts(
    sessions: async_sessionmaker[AsyncSession], session_id: str, role: str
) -> ReceiptFacts:
    async with sessions() as db:
        session = await db.get(Session, session_id)
        if session is None:
            raise NotFound("session", session_id)
        customer = await db.get(Person, session.customer_id)
        expert_row = await db.get(Expert, session.expert_id)
        expert = await db.get(Person, expert_row.person_id) if expert_row else None
        text = await db.scalar(select(HelpRequest.text).where(HelpRequest.id == session.request_id))
        payments = list(await db.scalars(select(Payment).where(Payment.session_id == session_id)))
        hold = next((p for p in payments if p.kind is PaymentKind.AUTHORISATION), None)
        sponsor = None
        if hold is not None and hold.payer.startswith("payer:sponsor:"):
            sponsor = await db.scalar(
                select(Business.name).where(Business.id == hold.payer.removeprefix("payer:sponsor:"))
            )
        # What the platform still owes the expert for this session (a credit balance).
        owed = -int(
            await db.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.session_id == session_id, LedgerEntry.account.startswith("expert:")
                )
            )
            or 0
        )
    assert customer is not None
    assert expert is not None
    capture = next((p for p in payments if p.kind is PaymentKind.CAPTURE), None)
    refunds = [p for p in payments if p.kind is PaymentKind.REFUND]
    currency = session.pricing.currency
    charge = Charge(capture.amount, capture.fee, currency) if capture else Charge(0, 0, currency)
    reader = customer if role == "customer" else expert
    return ReceiptFacts(
        session_id=session.id,
        customer=customer.display_name,
        expert=expert.display_name,
        request=text or "",
        time_zone=reader.time_zone,
        started_at=session.started_at,
        ended_at=session.ended_at,
        billed_seconds=session.billed_seconds,
        held=hold.amount if hold is not None and hold.status is not PaymentStatus.PENDING else 0,
        charge=charge,
        refunded=sum(r.amount for r in refunds),
        refunded_fee=sum(r.fee for r in refunds),
        owed=owed,
        sponsor=sponsor,
        provider=hold.provider if hold else "none",
    )


def render_receipt(facts: ReceiptFacts, role: str, language: str, t: Catalogues) -> str:
    def m(amount: int) -> str:
        return money(amount, facts.charge.currency, language)

    minutes, seconds = divmod(facts.billed_seconds, 60)
    rows: list[tuple[str, str]] = [
        (t.text("receipt.session", language), facts.session_id),
        # Web visitors may give no name.
        (t.text("receipt.customer", language), facts.customer or "—"),
        (t.text("receipt.expert", language), facts.expert or "—"),
    ]
    if facts.started_at is not None:
        rows.append(
            (t.text("receipt.started", language), moment(facts.started_at, language, facts.time_zone))
        )
    rows.append((t.text("receipt.duration", language), f"{minutes}:{seconds:02d}"))
    if role == "customer":
        title = t.text("receipt.title", language)
        if facts.held:
            rows.append((t.text("receipt.held", language), m(facts.held)))
        rows.append((t.text("receipt.charged", language), m(facts.charge.amount)))
        if facts.refunded:
            rows.append((t.text("receipt.refunded", language), m(facts.refunded)))
        rows.append((t.text("receipt.total", language), m(facts.charge.amount - facts.refunded)))
        if facts.sponsor:
            rows.append((t.text("receipt.paid_by", language), facts.sponsor))
    else:
        title = t.text("receipt.statement_title", language)
        payout = facts.charge.expert_payout - (facts.refunded - facts.refunded_fee)
        rows += [
            (t.text("receipt.charged", language), m(facts.charge.amount)),
            (t.text("receipt.commission", language), m(facts.charge.commission - facts.refunded_fee)),
        ]
        if facts.refunded:
            rows.append((t.text("receipt.refunded", language), m(facts.refunded)))
        rows.append((t.text("receipt.payout", language), m(payout)))
        if facts.owed > 0:
            rows.append((t.text("receipt.payout_pending", language), m(facts.owed)))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>"
        f'<p class="request">{html.escape(facts.request)}</p><table>{body}</table>'
        f'<p class="note">{html.escape(t.text("receipt.note", language))}</p></main></body></html>'
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}"
    "main{max-width:34rem;margin:2rem auto;background:#fff;padding:1.5rem;border-radius:12px}"
    "h1{font-size:1.4rem;margin:0 0 .5rem}.request{color:#555}"
    "table{width:100%;border-collapse:collapse}th,td{padding:.45rem 0;border-bottom:1px solid #eee;"
    "text-align:left}td{text-align:right}.note{font-size:.85rem;color:#777}"
)
