"""`concierge ledger check`: the books, verified against the sessions they are about.

Each violation names the transaction or session and what is wrong; an empty list is a clean
ledger. Checked: every transaction balances per currency; the whole ledger does; every
authorisation hold of a finished session is released; a settled session's charge equals the
metered seconds priced on the terms it was held on, its commission and the expert's share add
up to it, nothing is captured above the hold or twice, and refunds never exceed the capture.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import ledger
from billing.quotes import commission_of
from concierge.lifecycle import State
from concierge.model import LedgerEntry, Payment, PaymentKind, PaymentStatus, Session
from concierge.payments import session_quote

_FINISHED = {State.SETTLED, State.REFUNDED, State.CANCELLED, State.EXPIRED}


@dataclass(frozen=True, slots=True)
class Violation:
    subject: str  # "transaction txn_…", "session ses_…", "ledger"
    problem: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


async def check_ledger(sessions: async_sessionmaker[AsyncSession]) -> list[Violation]:
    async with sessions() as db:
        entries = list(await db.scalars(select(LedgerEntry)))
        payments = list(await db.scalars(select(Payment)))
        session_rows = {s.id: s for s in await db.scalars(select(Session))}
    violations: list[Violation] = []
    by_transaction: dict[str, list[ledger.Leg]] = defaultdict(list)
    by_session: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        by_transaction[entry.transaction_id].append(ledger.Leg(entry.account, entry.amount, entry.currency))
        if entry.session_id is not None:
            by_session[entry.session_id].append(entry)
    for transaction, legs in sorted(by_transaction.items()):
        off = ledger.imbalances(legs)
        if off:
            violations.append(Violation(f"transaction {transaction}", f"does not balance: {off}"))
    total = ledger.imbalances(ledger.Leg(e.account, e.amount, e.currency) for e in entries)
    if total:
        violations.append(Violation("ledger", f"accounts do not sum to zero: {total}"))
    payments_of: dict[str, list[Payment]] = defaultdict(list)
    for payment in payments:
        payments_of[payment.session_id].append(payment)
    for session_id, session in sorted(session_rows.items()):
        violations += _check_session(session, payments_of.get(session_id, []), by_session.get(session_id, []))
    return violations


def _check_session(session: Session, payments: list[Payment], entries: list[LedgerEntry]) -> list[Violation]:
    subject = f"session {session.id}"
    found: list[Violation] = []
    holds = [p for p in payments if p.kind is PaymentKind.AUTHORISATION]
    captures = [p for p in payments if p.kind is PaymentKind.CAPTURE]
    refunds = [p for p in payments if p.kind is PaymentKind.REFUND]
    if len(captures) > 1:
        found.append(Violation(subject, f"captured {len(captures)} times"))
    if session.state in _FINISHED:
        held = ledger.balances(
            ledger.Leg(e.account, e.amount, e.currency) for e in entries if e.account.startswith("hold:")
        )
        open_holds = {account: amount for (account, _), amount in held.items() if amount}
        if open_holds:
            found.append(Violation(subject, f"hold not released: {open_holds}"))
    if session.state in {State.SETTLED, State.REFUNDED}:
        hold = next((p for p in holds if p.status is not PaymentStatus.PENDING), None)
        metered = session_quote(session, hold.terms if hold else None).charge_for(session.billed_seconds)
        charged = captures[0].amount if captures else 0
        if hold is not None and charged != metered.amount:
            found.append(
                Violation(
                    subject, f"charged {charged} for {session.billed_seconds} s, which cost {metered.amount}"
                )
            )
        if hold is not None and charged > hold.amount:
            found.append(Violation(subject, f"captured {charged} above the hold of {hold.amount}"))
        if captures:
            capture = captures[0]
            expected_fee = commission_of(capture.amount, session.commission_percent)
            if capture.fee != expected_fee:
                found.append(Violation(subject, f"commission {capture.fee}, expected {expected_fee}"))
            charge_legs = [e for e in entries if e.kind == ledger.PostingKind.CHARGE.value]
            paid = sum(e.amount for e in charge_legs if e.account.startswith("payer:"))
            fee = -sum(e.amount for e in charge_legs if e.account == ledger.PLATFORM_FEES)
            expert = -sum(e.amount for e in charge_legs if e.account.startswith("expert:"))
            if (paid, fee, expert) != (capture.amount, capture.fee, capture.amount - capture.fee):
                found.append(
                    Violation(
                        subject,
                        f"charge booked as {paid} = fee {fee} + expert {expert}; "
                        f"captured {capture.amount} with fee {capture.fee}",
                    )
                )
        refunded = sum(r.amount for r in refunds)
        if refunded > charged:
            found.append(Violation(subject, f"refunded {refunded} of a {charged} charge"))
    elif captures:
        found.append(Violation(subject, f"captured while {session.state.value}"))
    return found
