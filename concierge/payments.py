"""The cashier: a claimed session's money from hold to settlement, every movement in the ledger.

Provider calls happen outside database transactions (a network call must not hold a lock) and
carry an idempotency key derived from the session and the step; what they did is then written
in one transaction with the session's state change, its ledger postings and the notice that
tells people. A crash between the call and the commit leaves the session where it was; the next
attempt repeats the call with the same key, the provider replays its first answer, and the
commit happens once (the payments' unique idempotency keys and the state compare-and-set make
a second commit fail rather than double anything).

Webhooks are verified by the provider, then handled in one transaction that also records the
event id, so a replayed or duplicated delivery is a no-op and a crash mid-way is retried by the
provider's redelivery. Events may arrive in any order: each handler acts only on the state it
expects and otherwise does nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import ledger
from billing.errors import BillingError, ProviderError
from billing.invoice import InvoiceProvider
from billing.providers import EventKind, Hold, HoldRequest, PaymentProvider, ProviderEvent
from billing.quotes import (
    DEFAULT_MAX_MINUTES,
    Charge,
    ChargeRules,
    MinuteRounding,
    Quote,
    quote,
    refunded_commission,
)
from concierge.config import Settings
from concierge.errors import DomainError, IllegalTransition, NotFound
from concierge.lifecycle import Event, State
from concierge.model import (
    Business,
    Community,
    Expert,
    HelpRequest,
    LedgerEntry,
    Notice,
    Payment,
    PaymentKind,
    PaymentStatus,
    Person,
    Session,
    WebhookEvent,
    new_id,
    utcnow,
)
from concierge.pricing import PricingMode
from concierge.transitions import Lifecycle

log = structlog.get_logger("concierge.payments")


class PaymentRefused(DomainError):
    """A payment step that cannot happen, with a reason a person can be told (`code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class HandOff:
    state: State
    checkout_url: str | None = None  # where the customer pays, when a hold is still needed
    sponsor: str | None = None  # the business paying instead of the customer
    refused: str | None = None  # PaymentRefused.code when the payment could not be prepared


@dataclass(frozen=True, slots=True)
class Settlement:
    session_id: str
    charge: Charge
    captured: bool
    paid_out: bool


@dataclass(frozen=True, slots=True)
class RefundDone:
    session_id: str
    amount: int
    fee: int
    currency: str


def _key(session_id: str, step: str) -> str:
    return f"{session_id}:{step}"


def _terms(settings: Settings) -> dict[str, Any]:
    return {
        "max_minutes": settings.max_session_minutes,
        "minimum_minutes": settings.minimum_minutes,
        "rounding": settings.minute_rounding.value,
    }


def session_quote(session: Session, terms: dict[str, Any] | None) -> Quote:
    """The quote a session was (or will be) held on; `terms` from its hold, so later configuration
    changes never reprice a session."""
    terms = terms or {}
    rules = ChargeRules(
        minimum_minutes=int(terms.get("minimum_minutes", 1)),
        rounding=MinuteRounding(terms.get("rounding", MinuteRounding.STARTED_MINUTE.value)),
    )
    return quote(
        session.pricing.mode.value,
        session.pricing.amount,
        session.pricing.currency,
        session.commission_percent,
        max_minutes=int(terms.get("max_minutes", DEFAULT_MAX_MINUTES)),
        rules=rules,
    )


class Cashier:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        provider: PaymentProvider,
        *,
        invoices: PaymentProvider | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.provider = provider
        # Sponsored sessions are billed to the business, never to a card.
        self.invoices = invoices or InvoiceProvider()
        self._sessions = sessions
        self._clock = clock
        self.lifecycle = Lifecycle(sessions, clock=clock)

    def _now(self) -> datetime:
        return self._clock().replace(tzinfo=UTC)

    def _provider(self, name: str) -> PaymentProvider:
        if name == self.provider.name:
            return self.provider
        if name == self.invoices.name:
            return self.invoices
        raise BillingError(f"payments were made with {name!r}, which is not configured")

    def quote_terms(self) -> dict[str, Any]:
        return _terms(self.settings)

    # ------------------------------------------------------------------ hold

    async def hand_off(self, session_id: str) -> HandOff:
        """Free sessions are ready at once; paid ones are held (or invoiced) for the quote's maximum."""
        async with self._sessions() as db:
            session = await _get_session(db, session_id)
        if session.pricing.mode is PricingMode.FREE:
            await self.lifecycle.confirm_free(session_id)
            return HandOff(State.READY)
        async with self._sessions() as db:
            existing = await _current_hold(db, session_id)
            customer = await db.get(Person, session.customer_id)
            expert = await db.get(Expert, session.expert_id)
            sponsor = await self._sponsor_for(db, session) if existing is None else None
        assert customer is not None
        assert expert is not None
        attempt = 1
        if existing is not None:
            if not (existing.status is PaymentStatus.CANCELLED and session.state is State.CLAIMED):
                return await self._hand_off_state(session_id, existing)  # a retry: asked for already
            # A booking whose payment page lapsed with time left to pay: a new page, a new key.
            attempt = await _hold_attempts(db_sessions=self._sessions, session_id=session_id) + 1
        terms = self.quote_terms()
        q = session_quote(session, terms)
        if sponsor is not None:
            provider, payer, sponsor_name = (
                self.invoices,
                ledger.payer_account("sponsor", sponsor.id),
                sponsor.name,
            )
        else:
            provider, payer, sponsor_name = self.provider, ledger.payer_account("customer", customer.id), None
        self._check_window(provider, session, q)
        now = self._now()
        base = self.settings.base_url
        request = HoldRequest(
            session_id=session.id,
            amount=q.customer_max,
            currency=q.currency,
            description=f"Concierge session {session.id}",
            success_url=f"{base}/paid/{session.id}",
            cancel_url=f"{base}/paid/{session.id}?cancelled=1",
            expires_at=now + timedelta(minutes=self.settings.payment_minutes),
            locale=customer.locale,
            payout_account=expert.payout_account_id if expert.payouts_enabled else None,
        )
        key = _hold_key(session.id, attempt)
        try:
            hold = await provider.hold(request, key)
        except ProviderError as exc:
            raise PaymentRefused("provider", f"the payment could not be prepared: {exc}") from exc
        payment = Payment(
            session_id=session.id,
            kind=PaymentKind.AUTHORISATION,
            status=PaymentStatus.SUCCEEDED if hold.authorised else PaymentStatus.PENDING,
            provider=provider.name,
            provider_ref=hold.ref,
            checkout_url=hold.url,
            payer=payer,
            amount=q.customer_max,
            fee=q.commission,
            currency=q.currency,
            idempotency_key=key,
            terms=terms,
        )
        try:
            async with self._sessions.begin() as db:
                session = await _get_session(db, session_id)
                db.add(payment)
                await db.flush()
                await self.lifecycle.advance(db, session, Event.REQUEST_PAYMENT)
                if hold.authorised:
                    _post(
                        db,
                        session.id,
                        [
                            ledger.hold(
                                payer, ledger.provider_account(provider.name), q.customer_max, q.currency
                            )
                        ],
                    )
                    await self.lifecycle.advance(
                        db, session, Event.PAYMENT_AUTHORISED, {"provider": provider.name}
                    )
        except IntegrityError:
            async with self._sessions() as db:
                existing = await _payment(db, key)
            if existing is None:
                raise
            return await self._hand_off_state(session_id, existing)
        state = State.READY if hold.authorised else State.AWAITING_PAYMENT
        return HandOff(state, None if hold.authorised else hold.url, sponsor_name)

    async def _hand_off_state(self, session_id: str, payment: Payment) -> HandOff:
        async with self._sessions() as db:
            session = await _get_session(db, session_id)
            sponsor = await _sponsor_name(db, payment.payer)
        url = payment.checkout_url if session.state is State.AWAITING_PAYMENT else None
        return HandOff(session.state, url, sponsor)

    def _check_window(self, provider: PaymentProvider, session: Session, q: Quote) -> None:
        if provider.hold_window is None or session.scheduled_start is None:
            return
        end = session.scheduled_start.replace(tzinfo=UTC) + timedelta(minutes=q.max_minutes or 0)
        if end > self._now() + provider.hold_window:
            days = provider.hold_window.days
            raise PaymentRefused(
                "too_far_ahead", f"a card hold lasts {days} days: book a session that ends within {days} days"
            )

    async def _sponsor_for(self, db: AsyncSession, session: Session) -> Business | None:
        """The business sponsoring requests from the community this one came from, if its monthly
        budget is not used up yet. A session it takes on is its to pay whatever it costs: a call
        is never cut short or handed to the customer's card because the budget ran out during it."""
        community_id = await db.scalar(
            select(HelpRequest.community_id).where(HelpRequest.id == session.request_id)
        )
        if community_id is None:
            return None
        business = await db.scalar(
            select(Business)
            .join(Community, Community.business_id == Business.id)
            .where(Community.id == community_id)
        )
        if business is None or not business.sponsors_sessions:
            return None
        if business.sponsorship_budget_amount is None:
            return business  # no cap
        if business.sponsorship_currency != session.pricing.currency:
            return None  # budgets are not converted between currencies
        spent = await self.sponsor_spent(db, business.id, business.sponsorship_currency)
        return business if spent < business.sponsorship_budget_amount else None

    async def sponsor_spent(self, db: AsyncSession, business_id: str, currency: str) -> int:
        """This month's charges to a sponsor plus the holds not yet settled, in minor units."""
        payer = ledger.payer_account("sponsor", business_id)
        month = self._now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        charged = await db.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.account == payer,
                LedgerEntry.currency == currency,
                LedgerEntry.kind.in_([ledger.PostingKind.CHARGE.value, ledger.PostingKind.REFUND.value]),
                LedgerEntry.created_at >= month,
            )
        )
        held = await db.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.account == f"hold:{payer}", LedgerEntry.currency == currency
            )
        )
        return int(charged or 0) + int(held or 0)

    # ------------------------------------------------------------------ webhooks

    async def on_event(self, event: ProviderEvent, provider: str) -> str:
        """Apply one verified provider event; returns what happened, for the log and the tests."""
        after: list[Callable[[], Any]] = []
        try:
            async with self._sessions.begin() as db:
                db.add(WebhookEvent(event_id=event.event_id, provider=provider, type=event.type))
                await db.flush()
                outcome = await self._apply(db, event, after)
        except IntegrityError:
            return "duplicate"
        for follow_up in after:
            # The event is recorded: a failure here is retried by the settlement sweep, not by Stripe.
            try:
                await follow_up()
            except (ProviderError, IntegrityError) as exc:
                log.warning("follow-up of a provider event failed", id=event.event_id, error=str(exc))
        log.info("provider event", id=event.event_id, type=event.type, outcome=outcome)
        return outcome

    async def _apply(self, db: AsyncSession, event: ProviderEvent, after: list[Callable[[], Any]]) -> str:
        if event.kind is EventKind.ACCOUNT_UPDATED:
            return await self._account_updated(db, event, after)
        if event.kind is EventKind.IGNORED:
            return "ignored"
        hold = await self._hold_for(db, event)
        if hold is None:
            return "unknown session"
        session = await _get_session(db, hold.session_id)
        if event.kind is EventKind.AUTHORISED:
            return await self._authorised(db, session, hold, event, after)
        if event.kind in (EventKind.HOLD_EXPIRED, EventKind.HOLD_CANCELLED):
            return await self._hold_lapsed(db, session, hold, event)
        # Captures and refunds are our own calls, booked when we made them.
        return "noted"

    async def _hold_for(self, db: AsyncSession, event: ProviderEvent) -> Payment | None:
        query = select(Payment).where(Payment.kind == PaymentKind.AUTHORISATION)
        if event.session_id:
            return await db.scalar(
                query.where(Payment.session_id == event.session_id).order_by(Payment.created_at.desc())
            )
        if event.hold_ref:
            return await db.scalar(query.where(Payment.provider_ref == event.hold_ref))
        if event.payment_ref:
            return await db.scalar(query.where(Payment.payment_ref == event.payment_ref))
        return None

    async def _authorised(
        self,
        db: AsyncSession,
        session: Session,
        hold: Payment,
        event: ProviderEvent,
        after: list[Callable[[], Any]],
    ) -> str:
        if event.payment_ref and hold.payment_ref is None:
            hold.payment_ref = event.payment_ref
        if hold.status is not PaymentStatus.PENDING:
            return "already authorised" if hold.status is PaymentStatus.SUCCEEDED else "hold was cancelled"
        if event.amount is not None and event.amount < hold.amount:
            return "amount below the quote"
        if session.state is not State.AWAITING_PAYMENT:
            # Paid after the session expired or was cancelled: give the money back at once.
            hold.status = PaymentStatus.CANCELLED
            provider = self._provider(hold.provider)
            snapshot = Hold(hold.provider_ref or "", True)
            ref, key = event.payment_ref, _key(session.id, "void")
            after.append(lambda: provider.cancel(snapshot, ref, key))
            return "paid too late: hold released"
        hold.status = PaymentStatus.SUCCEEDED
        _post(
            db,
            session.id,
            [ledger.hold(hold.payer, ledger.provider_account(hold.provider), hold.amount, hold.currency)],
        )
        await self.lifecycle.advance(db, session, Event.PAYMENT_AUTHORISED, {"provider": hold.provider})
        _notify(db, session.id, "paid")
        return "authorised"

    async def _hold_lapsed(
        self, db: AsyncSession, session: Session, hold: Payment, event: ProviderEvent
    ) -> str:
        if session.state is State.AWAITING_PAYMENT and hold.status is PaymentStatus.PENDING:
            hold.status = PaymentStatus.CANCELLED
            if self._time_left_to_pay(session):
                await self.lifecycle.advance(db, session, Event.LAPSE, {"reason": "payment page expired"})
                _notify(db, session.id, f"pay_again:{hold.id}")
                return "asked to pay again"
            await self.lifecycle.advance(db, session, Event.EXPIRE, {"reason": "not paid in time"})
            _notify(db, session.id, "payment_expired")
            return "session expired unpaid"
        if session.state is State.READY and hold.status is PaymentStatus.SUCCEEDED:
            # The hold vanished before the call (cancelled at the provider): no call without it.
            hold.status = PaymentStatus.CANCELLED
            _post(
                db,
                session.id,
                [
                    ledger.release(
                        hold.payer, ledger.provider_account(hold.provider), hold.amount, hold.currency
                    )
                ],
            )
            await self.lifecycle.advance(
                db, session, Event.EXPIRE, {"reason": "the payment hold was cancelled"}
            )
            _notify(db, session.id, "payment_expired")
            return "hold cancelled before the call"
        return "nothing to do"

    def _time_left_to_pay(self, session: Session) -> bool:
        """A booking can be paid until shortly before it starts; an instant session cannot wait."""
        if session.scheduled_start is None:
            return False
        deadline = session.scheduled_start.replace(tzinfo=UTC) - timedelta(
            minutes=self.settings.booking_pay_by_minutes
        )
        return self._now() < deadline

    async def _account_updated(
        self, db: AsyncSession, event: ProviderEvent, after: list[Callable[[], Any]]
    ) -> str:
        expert = await db.scalar(select(Expert).where(Expert.payout_account_id == event.account_id))
        if expert is None:
            return "unknown account"
        was = expert.payouts_enabled
        expert.payouts_enabled = event.payouts_enabled
        if event.payouts_enabled and not was:
            expert_id = expert.id
            after.append(lambda: self.pay_pending(expert_id))
            return "payouts enabled"
        return "account noted"

    # ------------------------------------------------------------------ settlement

    async def settle(self, session_id: str) -> Settlement | None:
        """Capture what the metered time costs (commission as the fee), release the rest, book it
        all; None when the session is not waiting for settlement."""
        async with self._sessions() as db:
            session = await _get_session(db, session_id)
            hold = await _current_hold(db, session_id)
            expert = await db.get(Expert, session.expert_id)
        if session.state is not State.ENDED:
            return None
        assert expert is not None
        if hold is None or hold.status is not PaymentStatus.SUCCEEDED:
            # Free, or never held: nothing to capture.
            charge = Charge(0, 0, session.pricing.currency)
            # No receipt for nothing, but both are asked to rate a call that happened.
            await self._commit_settlement(session_id, [], [], charge, notice=session.billed_seconds > 0)
            return Settlement(session_id, charge, captured=False, paid_out=False)
        q = session_quote(session, hold.terms)
        charge = q.charge_for(session.billed_seconds)
        provider = self._provider(hold.provider)
        snapshot = Hold(hold.provider_ref or "", True)
        provider_account = ledger.provider_account(provider.name)
        expert_account = ledger.expert_account(expert.id)
        postings = [ledger.release(hold.payer, provider_account, hold.amount, hold.currency)]
        payments: list[Payment] = []
        captured = paid_out = False
        if charge.amount == 0:
            await provider.cancel(snapshot, hold.payment_ref, _key(session_id, "cancel"))
        else:
            result = await provider.capture(
                snapshot, hold.payment_ref, charge.amount, charge.commission, _key(session_id, "capture")
            )
            captured, paid_out = result.collected, result.paid_out
            postings.append(
                ledger.charge(hold.payer, expert_account, charge.amount, charge.commission, charge.currency)
            )
            if result.collected:
                postings.append(ledger.collect(hold.payer, provider_account, charge.amount, charge.currency))
            if result.paid_out:
                postings.append(
                    ledger.payout(expert_account, provider_account, charge.expert_payout, charge.currency)
                )
            payments.append(
                Payment(
                    session_id=session_id,
                    kind=PaymentKind.CAPTURE,
                    status=PaymentStatus.SUCCEEDED,
                    provider=provider.name,
                    provider_ref=result.ref,
                    payer=hold.payer,
                    amount=charge.amount,
                    fee=charge.commission,
                    currency=charge.currency,
                    idempotency_key=_key(session_id, "capture"),
                )
            )
        await self._commit_settlement(session_id, postings, payments, charge, notice=True, hold=hold.id)
        if captured and not paid_out and charge.expert_payout:
            await self.pay_pending(expert.id)
        return Settlement(session_id, charge, captured, paid_out)

    async def _commit_settlement(
        self,
        session_id: str,
        postings: Sequence[ledger.Posting | None],
        payments: Sequence[Payment],
        charge: Charge,
        *,
        notice: bool,
        hold: str | None = None,
    ) -> None:
        async with self._sessions.begin() as db:
            session = await _get_session(db, session_id)
            for payment in payments:
                db.add(payment)
            if hold is not None and charge.amount == 0:
                await db.execute(
                    update(Payment).where(Payment.id == hold).values(status=PaymentStatus.CANCELLED)
                )
            _post(db, session_id, postings)
            await self.lifecycle.advance(
                db, session, Event.SETTLE, {"charged": charge.amount, "commission": charge.commission}
            )
            if notice and hold is None:
                _notify(db, session_id, "ended")  # free: no receipt, but both are asked to rate
            elif notice:
                _notify(db, session_id, "settled", {"charged": charge.amount, "fee": charge.commission})

    async def settle_due(self, limit: int = 50) -> list[str]:
        """Every ended session not settled yet (the room's end, or a retry after a failure)."""
        async with self._sessions() as db:
            ids = list(
                await db.scalars(
                    select(Session.id)
                    .where(Session.state == State.ENDED)
                    .order_by(Session.ended_at)
                    .limit(limit)
                )
            )
        settled = []
        for session_id in ids:
            try:
                if await self.settle(session_id) is not None:
                    settled.append(session_id)
            except (IllegalTransition, IntegrityError):
                pass  # another process settled it in between
            except ProviderError as exc:
                log.warning("settlement failed", session=session_id, error=str(exc), retryable=exc.retryable)
        await self.release_abandoned()
        await self.pay_all_pending()
        return settled

    async def release_abandoned(self, limit: int = 50) -> list[str]:
        """Holds of sessions that were called off after payment (nobody joined the room, a hang-up
        before the call started, a cancel): released at the provider and in the books; payment pages
        of sessions called off before payment are closed so they cannot be paid later."""
        async with self._sessions() as db:
            holds = list(
                await db.scalars(
                    select(Payment)
                    .join(Session, Session.id == Payment.session_id)
                    .where(
                        Payment.kind == PaymentKind.AUTHORISATION,
                        Payment.status.in_([PaymentStatus.SUCCEEDED, PaymentStatus.PENDING]),
                        Session.state.in_([State.CANCELLED, State.EXPIRED]),
                    )
                    .limit(limit)
                )
            )
        released = []
        for hold in holds:
            provider = self._provider(hold.provider)
            try:
                await provider.cancel(
                    Hold(hold.provider_ref or "", True), hold.payment_ref, _key(hold.session_id, "cancel")
                )
            except ProviderError as exc:
                log.warning("hold release failed", session=hold.session_id, error=str(exc))
                continue
            async with self._sessions.begin() as db:
                result = await db.execute(
                    update(Payment)
                    .where(Payment.id == hold.id, Payment.status == hold.status)
                    .values(status=PaymentStatus.CANCELLED)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another process released it
                if hold.status is PaymentStatus.PENDING:
                    continue  # never held: nothing was booked
                posting = ledger.release(
                    hold.payer, ledger.provider_account(provider.name), hold.amount, hold.currency
                )
                _post(db, hold.session_id, [posting])
            released.append(hold.session_id)
        return released

    async def pay_all_pending(self) -> int:
        """Transfers owed to every expert whose payouts are enabled (a retry after a failure)."""
        if self.provider.name == self.invoices.name:
            return 0
        async with self._sessions() as db:
            owed = set(
                await db.scalars(
                    select(LedgerEntry.account)
                    .where(LedgerEntry.account.startswith("expert:"))
                    .group_by(LedgerEntry.account)
                    .having(func.sum(LedgerEntry.amount) < 0)
                )
            )
            enabled = set(
                await db.scalars(
                    select(Expert.id).where(
                        Expert.payouts_enabled.is_(True),
                        Expert.id.in_([a.removeprefix("expert:") for a in owed]),
                    )
                )
            )
        made = 0
        for expert_id in sorted(enabled):
            try:
                made += await self.pay_pending(expert_id)
            except ProviderError as exc:
                log.warning("payout failed", expert=expert_id, error=str(exc))
        return made

    # ------------------------------------------------------------------ payouts

    async def payout_link(self, expert_id: str, email: str | None = None) -> str | None:
        """The provider's onboarding page for an expert (created on first use); None when payouts
        need no onboarding (invoices) or are already enabled."""
        if self.provider.name == self.invoices.name:
            return None
        async with self._sessions() as db:
            expert = await db.get(Expert, expert_id)
        if expert is None:
            raise NotFound("expert", expert_id)
        if expert.payouts_enabled:
            return None
        account = expert.payout_account_id
        if account is None:
            account = await self.provider.create_payout_account(expert_id, email, _key(expert_id, "account"))
            async with self._sessions.begin() as db:
                await db.execute(
                    update(Expert)
                    .where(Expert.id == expert_id, Expert.payout_account_id.is_(None))
                    .values(payout_account_id=account)
                )
                account = await db.scalar(select(Expert.payout_account_id).where(Expert.id == expert_id))
            assert account is not None
        base = self.settings.base_url
        # Onboarding links expire within minutes; the refresh address makes a new one, signed so that
        # nobody can ask for a link into someone else's account.
        again = f"{base}/payouts/again/{self.payout_token(expert_id)}"
        return await self.provider.onboarding_link(account, f"{base}/payouts/done", again)

    def payout_token(self, expert_id: str) -> str:
        key = hashlib.sha256(b"payouts:" + self.settings.signing_key).digest()
        signature = hmac.new(key, expert_id.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{expert_id}.{signature}"

    def expert_of_payout_token(self, token: str) -> str | None:
        expert_id, _, _ = token.rpartition(".")
        if not expert_id or not hmac.compare_digest(token, self.payout_token(expert_id)):
            return None
        return expert_id

    async def pay_pending(self, expert_id: str) -> int:
        """Transfer every settled share still owed to an expert whose payouts are enabled; the
        number of transfers made."""
        async with self._sessions() as db:
            expert = await db.get(Expert, expert_id)
            if expert is None or not expert.payouts_enabled or expert.payout_account_id is None:
                return 0
            account = ledger.expert_account(expert_id)
            owed = list(
                await db.execute(
                    select(LedgerEntry.session_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
                    .where(LedgerEntry.account == account, LedgerEntry.session_id.is_not(None))
                    .group_by(LedgerEntry.session_id, LedgerEntry.currency)
                    .having(func.sum(LedgerEntry.amount) < 0)
                )
            )
            collected = set(
                await db.scalars(
                    select(Payment.session_id).where(
                        Payment.kind == PaymentKind.CAPTURE, Payment.provider == self.provider.name
                    )
                )
            )
        made = 0
        for session_id, currency, total in owed:
            balance = int(total)  # PostgreSQL sums BIGINTs as NUMERIC
            if session_id not in collected:
                continue  # invoiced: paid when the invoice is settled, outside
            key = _key(session_id, "payout")
            ref = await self.provider.transfer(expert.payout_account_id, -balance, currency, session_id, key)
            try:
                async with self._sessions.begin() as db:
                    db.add(
                        Payment(
                            session_id=session_id,
                            kind=PaymentKind.PAYOUT,
                            status=PaymentStatus.SUCCEEDED,
                            provider=self.provider.name,
                            provider_ref=ref,
                            payer=account,
                            amount=-balance,
                            currency=currency,
                            idempotency_key=key,
                        )
                    )
                    await db.flush()
                    _post(
                        db,
                        session_id,
                        [
                            ledger.payout(
                                account, ledger.provider_account(self.provider.name), -balance, currency
                            )
                        ],
                    )
                    _notify(db, session_id, "paid_out", {"amount": -balance})
                made += 1
            except IntegrityError:
                continue
        return made

    # ------------------------------------------------------------------ refunds

    async def refund(self, session_id: str, amount: int | None = None, reason: str = "") -> RefundDone:
        """Money back within the refund window, whole or in part; the commission is refunded in the
        same proportion and the expert's share reversed."""
        async with self._sessions() as db:
            session = await _get_session(db, session_id)
            capture = await _payment(db, _key(session_id, "capture"))
            refunds = list(
                await db.scalars(
                    select(Payment).where(
                        Payment.session_id == session_id, Payment.kind == PaymentKind.REFUND
                    )
                )
            )
            expert = await db.get(Expert, session.expert_id)
        assert expert is not None
        if session.state not in (State.SETTLED, State.REFUNDED) or capture is None:
            raise PaymentRefused("nothing_charged", "only a charged, settled session can be refunded")
        assert session.ended_at is not None
        deadline = session.ended_at.replace(tzinfo=UTC) + timedelta(hours=self.settings.refund_window_hours)
        if self._now() > deadline:
            raise PaymentRefused(
                "too_late", f"money back can be asked for within {self.settings.refund_window_hours} hours"
            )
        refunded = sum(r.amount for r in refunds)
        fees_refunded = sum(r.fee for r in refunds)
        remaining = capture.amount - refunded
        amount = remaining if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= remaining:
            raise PaymentRefused("amount", f"a refund is between 1 and the {remaining} not yet refunded")
        charge = Charge(capture.amount, capture.fee, capture.currency)
        fee = refunded_commission(charge, refunded + amount) - fees_refunded
        key = _key(session_id, f"refund:{len(refunds) + 1}")
        provider = self._provider(capture.provider)
        result = await provider.refund(capture.provider_ref or "", amount, fee, key)
        provider_account = ledger.provider_account(provider.name)
        expert_account = ledger.expert_account(expert.id)
        postings = [ledger.refund(capture.payer, expert_account, amount, fee, capture.currency)]
        if capture.provider != self.invoices.name:
            postings.append(ledger.refund_collect(capture.payer, provider_account, amount, capture.currency))
        if result.payout_reversed:
            postings.append(
                ledger.payout_reversal(expert_account, provider_account, amount - fee, capture.currency)
            )
        async with self._sessions.begin() as db:
            session = await _get_session(db, session_id)
            db.add(
                Payment(
                    session_id=session_id,
                    kind=PaymentKind.REFUND,
                    status=PaymentStatus.SUCCEEDED,
                    provider=provider.name,
                    provider_ref=result.ref,
                    payer=capture.payer,
                    amount=amount,
                    fee=fee,
                    currency=capture.currency,
                    idempotency_key=key,
                )
            )
            await db.flush()
            _post(db, session_id, postings)
            if session.state is State.SETTLED:
                await self.lifecycle.advance(db, session, Event.REFUND, {"amount": amount, "reason": reason})
            _notify(db, session_id, f"refund:{len(refunds) + 1}", {"amount": amount, "fee": fee})
        return RefundDone(session_id, amount, fee, capture.currency)

    # ------------------------------------------------------------------ notices

    async def take_notices(self, limit: int = 50) -> list[Notice]:
        """Notices nobody has sent yet, each handed to exactly one caller across processes."""
        async with self._sessions() as db:
            pending = list(
                await db.scalars(
                    select(Notice).where(Notice.sent_at.is_(None)).order_by(Notice.created_at).limit(limit)
                )
            )
        taken = []
        for notice in pending:
            async with self._sessions.begin() as db:
                result = await db.execute(
                    update(Notice)
                    .where(Notice.key == notice.key, Notice.sent_at.is_(None))
                    .values(sent_at=self._now())
                    .execution_options(synchronize_session=False)
                )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                taken.append(notice)
        return taken


async def _get_session(db: AsyncSession, session_id: str) -> Session:
    session = await db.get(Session, session_id)
    if session is None:
        raise NotFound("session", session_id)
    return session


def _hold_key(session_id: str, attempt: int) -> str:
    return _key(session_id, "hold" if attempt == 1 else f"hold:{attempt}")


async def _current_hold(db: AsyncSession, session_id: str) -> Payment | None:
    """The session's latest authorisation (a booking may need more than one)."""
    return await db.scalar(
        select(Payment)
        .where(Payment.session_id == session_id, Payment.kind == PaymentKind.AUTHORISATION)
        .order_by(Payment.created_at.desc())
        .limit(1)
    )


async def _hold_attempts(*, db_sessions: async_sessionmaker[AsyncSession], session_id: str) -> int:
    async with db_sessions() as db:
        count = await db.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.session_id == session_id, Payment.kind == PaymentKind.AUTHORISATION)
        )
    return int(count or 0)


async def _payment(db: AsyncSession, key: str) -> Payment | None:
    return await db.scalar(select(Payment).where(Payment.idempotency_key == key))


async def _sponsor_name(db: AsyncSession, payer: str) -> str | None:
    prefix = "payer:sponsor:"
    if not payer.startswith(prefix):
        return None
    return await db.scalar(select(Business.name).where(Business.id == payer.removeprefix(prefix)))


def _post(db: AsyncSession, session_id: str | None, postings: Sequence[ledger.Posting | None]) -> None:
    for posting in postings:
        if posting is None:
            continue
        transaction = new_id("txn")
        for leg in posting.legs:
            db.add(
                LedgerEntry(
                    transaction_id=transaction,
                    session_id=session_id,
                    kind=posting.kind.value,
                    account=leg.account,
                    amount=leg.amount,
                    currency=leg.currency,
                )
            )


def _notify(db: AsyncSession, session_id: str, kind: str, detail: dict[str, Any] | None = None) -> None:
    db.add(Notice(key=f"{session_id}:{kind}", session_id=session_id, kind=kind.split(":")[0], detail=detail))
