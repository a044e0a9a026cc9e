"""Payments end to end: the cashier with the real `stripe` library against a local Stripe server,
webhooks signed by that server and received by the app's own endpoint over HTTP, a real database.

The customer pays on the fake's hosted Checkout page; Stripe's events arrive at /webhooks/stripe;
the room's end is the lifecycle's `end`; settlement captures through the API. After every
scenario `check_ledger` must find nothing wrong.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.stripe_provider import StripeProvider
from concierge.cli import main
from concierge.config import Settings, load_settings
from concierge.ledger_check import check_ledger
from concierge.lifecycle import State
from concierge.model import (
    Business,
    Channel,
    Community,
    Expert,
    LedgerEntry,
    Notice,
    Session,
    WebhookEvent,
    utcnow,
)
from concierge.payments import Cashier, PaymentRefused, session_quote
from concierge.payments_web import CASHIER, payouts_again, stripe_webhook
from concierge.pricing import Pricing, PricingMode
from concierge.rooms import RoomEventConsumer
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person
from tests.fakes.stripe_server import FakeStripe, HostedPageError, sign_payload
from video_gateway.events import RoomEvent, RoomEventStream
from video_gateway.meter import EndReason

RATE = 150  # €1.50 a minute
HOLD = RATE * 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class World:
    fake: FakeStripe
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    cashier: Cashier
    webhook_url: str
    secret: str
    lifecycle: Lifecycle

    async def restart(self) -> Cashier:
        """A new process: a new provider client and cashier over the same database and Stripe.
        (The webhook endpoint stays with the first one, like another process behind the same URL.)"""
        if self.cashier is not self.app[CASHIER]:
            await self.cashier.provider.close()
        self.cashier = Cashier(self.settings, self.sessions, provider(self.fake, self.secret))
        return self.cashier

    app: web.Application = None  # type: ignore[assignment]

    async def claimed(
        self, expert_id: str | None = None, *, pricing: Pricing | None = None, community_id: str | None = None
    ) -> str:
        customer = await add_person(self.sessions, "Carla")
        expert = await add_expert(
            self.sessions,
            expert_id or f"ex-{customer.id[-8:]}",
            pricing=pricing or Pricing(PricingMode.PER_MINUTE, RATE, "EUR"),
            name="Tomás",
        )
        request = await self.lifecycle.open_request(
            customer.id, "my bike brakes squeal", community_id=community_id
        )
        await self.lifecycle.offer(request.id, [(expert.id, 1.0)])
        session = await self.lifecycle.claim(request.id, expert.id, commission_percent=Decimal(20))
        return session.id

    async def session(self, session_id: str) -> Session:
        async with self.sessions() as db:
            session = await db.get(Session, session_id)
        assert session is not None
        return session

    async def call(self, session_id: str, seconds: int) -> None:
        """The room went live `seconds + 5` ago and ended now with `seconds` billed."""
        await self.lifecycle.go_live(session_id, at=utcnow() - timedelta(seconds=seconds + 5))
        await self.lifecycle.end(session_id, seconds)

    async def paid(self, session_id: str) -> str:
        hand_off = await self.cashier.hand_off(session_id)
        assert hand_off.state is State.AWAITING_PAYMENT
        assert hand_off.checkout_url is not None
        checkout = hand_off.checkout_url.rsplit("/", 1)[-1]
        intent = await self.fake.pay(checkout)
        assert intent is not None
        await self.fake.wait_delivered()
        return intent

    async def check(self) -> list[str]:
        return [str(v) for v in await check_ledger(self.sessions)]

    async def ledger_size(self) -> int:
        async with self.sessions() as db:
            return int(await db.scalar(select(func.count()).select_from(LedgerEntry)) or 0)

    async def notices(self, session_id: str) -> list[str]:
        async with self.sessions() as db:
            return sorted(await db.scalars(select(Notice.kind).where(Notice.session_id == session_id)))


def provider(fake: FakeStripe, secret: str) -> StripeProvider:
    return StripeProvider(
        fake.api_key, [secret, "whsec_connect_secret"], api_base=fake.base_url, network_retries=0
    )


@pytest.fixture
async def world(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    async with FakeStripe() as fake:
        port = _free_port()
        url = f"http://127.0.0.1:{port}/webhooks/stripe"
        secret = fake.add_webhook(url)
        fake.add_webhook(url, "whsec_connect_secret", connect=True)
        monkeypatch.setenv("CONCIERGE_STRIPE_API_KEY", fake.api_key)
        monkeypatch.setenv("CONCIERGE_STRIPE_WEBHOOK_SECRET", f"{secret} whsec_connect_secret")
        monkeypatch.setenv("CONCIERGE_STRIPE_API_BASE", fake.base_url)
        settings_ = load_settings()
        cashier = Cashier(settings_, sessions, provider(fake, secret))
        app = web.Application()
        app[CASHIER] = cashier
        app.router.add_post("/webhooks/stripe", stripe_webhook)
        app.router.add_get("/payouts/again/{token}", payouts_again)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        world = World(fake, sessions, settings_, cashier, url, secret, Lifecycle(sessions))
        world.app = app
        try:
            yield world
        finally:
            if world.cashier is not cashier:
                await world.cashier.provider.close()
            await cashier.provider.close()
            await runner.cleanup()
    assert not fake.server_errors


async def test_a_per_minute_session_is_held_captured_for_its_minutes_paid_out_and_refunded(
    world: World,
) -> None:
    session_id = await world.claimed()
    hand_off = await world.cashier.hand_off(session_id)
    assert hand_off.state is State.AWAITING_PAYMENT
    checkout = world.fake.checkout_sessions[hand_off.checkout_url.rsplit("/", 1)[-1]]  # type: ignore[union-attr]
    assert (checkout["amount_total"], checkout["currency"]) == (HOLD, "eur")
    assert await world.cashier.hand_off(session_id) == hand_off  # asked twice: the same page
    assert len(world.fake.checkout_sessions) == 1

    intent = await world.fake.pay(checkout["id"])
    await world.fake.wait_delivered()
    assert (await world.session(session_id)).state is State.READY
    assert await world.notices(session_id) == ["paid"]
    assert world.fake.payment_intents[intent]["status"] == "requires_capture"

    await world.call(session_id, 125)  # 2 min 5 s: three started minutes
    settled = await world.cashier.settle(session_id)
    assert settled is not None
    assert (settled.charge.amount, settled.charge.commission) == (450, 90)
    pi = world.fake.payment_intents[intent]
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 450)
    assert (await world.session(session_id)).state is State.SETTLED
    assert await world.cashier.settle(session_id) is None  # settled once
    assert len(world.fake.calls_to(r"/capture$", "POST")) == 1

    # The expert had no payout account: the platform holds their 360 until onboarding is done.
    expert_id = (await world.session(session_id)).expert_id
    link = await world.cashier.payout_link(expert_id)
    assert link is not None
    assert "/connect/onboard/" in link
    async with world.sessions() as db:
        account = await db.scalar(select(Expert.payout_account_id).where(Expert.id == expert_id))
    assert account is not None
    assert world.fake.transfers == {}
    await world.fake.complete_onboarding(account)
    await world.fake.wait_delivered()
    transfers = list(world.fake.transfers.values())
    assert [(t["amount"], t["destination"]) for t in transfers] == [(360, account)]
    assert await world.cashier.payout_link(expert_id) is None  # onboarded
    assert await world.check() == []

    refund = await world.cashier.refund(session_id, 200, "the brakes still squeal")
    assert (refund.amount, refund.fee) == (200, 40)
    assert (await world.session(session_id)).state is State.REFUNDED
    with pytest.raises(PaymentRefused, match="between 1 and the 250"):
        await world.cashier.refund(session_id, 251)
    rest = await world.cashier.refund(session_id)
    assert (rest.amount, rest.fee) == (250, 50)  # the commission comes back whole: 40 + 50 = 90
    assert sum(r["amount"] for r in world.fake.refunds.values()) == 450
    assert await world.check() == []
    assert sorted(await world.notices(session_id)) == ["paid", "paid_out", "refund", "refund", "settled"]


async def test_an_onboarded_expert_is_paid_with_the_capture_and_a_refund_takes_it_back(world: World) -> None:
    session_id = await world.claimed()
    expert_id = (await world.session(session_id)).expert_id
    link = await world.cashier.payout_link(expert_id)
    assert link is not None
    account = link.split("/connect/onboard/")[1].split("?")[0]

    # An expired onboarding link sends the expert to our refresh address: a fresh link, same account.
    base = world.webhook_url.removesuffix("/webhooks/stripe")
    token = world.cashier.payout_token(expert_id)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/payouts/again/{token}", allow_redirects=False) as again:
            assert again.status == 302
            assert f"/connect/onboard/{account}" in again.headers["Location"]
        async with http.get(f"{base}/payouts/again/{token[:-1]}x", allow_redirects=False) as forged:
            assert forged.status == 403
        other = world.cashier.payout_token("someone-else").replace("someone-else", expert_id)
        async with http.get(f"{base}/payouts/again/{other}", allow_redirects=False) as swapped:
            assert swapped.status == 403
    await world.fake.complete_onboarding(account)
    await world.fake.wait_delivered()
    intent = await world.paid(session_id)
    assert world.fake.payment_intents[intent]["transfer_data"]["destination"] == account

    await world.call(session_id, 600)
    settled = await world.cashier.settle(session_id)
    assert settled is not None
    assert settled.paid_out
    assert world.fake.balance[account]["eur"] == 1500 - 300  # ten minutes less the commission
    assert world.fake.payment_intents[intent]["application_fee_amount"] == 300
    await world.cashier.refund(session_id)
    assert world.fake.balance[account]["eur"] == 0  # the transfer reversed in full
    assert await world.check() == []
    async with world.sessions() as db:
        owed = await db.scalar(
            select(func.sum(LedgerEntry.amount)).where(LedgerEntry.account == f"expert:{expert_id}")
        )
    assert owed == 0


async def test_a_call_that_never_connected_releases_the_whole_hold(world: World) -> None:
    session_id = await world.claimed()
    intent = await world.paid(session_id)
    await world.call(session_id, 0)
    settled = await world.cashier.settle(session_id)
    assert settled is not None
    assert settled.charge.amount == 0
    assert world.fake.payment_intents[intent]["status"] == "canceled"
    assert world.fake.calls_to(r"/capture$", "POST") == []
    assert await world.check() == []


async def test_an_unpaid_checkout_expires_the_session_and_a_late_payment_is_impossible(world: World) -> None:
    session_id = await world.claimed()
    hand_off = await world.cashier.hand_off(session_id)
    checkout = hand_off.checkout_url.rsplit("/", 1)[-1]  # type: ignore[union-attr]
    world.fake.expire_session(checkout)
    await world.fake.wait_delivered()
    assert (await world.session(session_id)).state is State.EXPIRED
    assert await world.notices(session_id) == ["payment_expired"]
    assert await world.check() == []


async def test_a_scheduled_session_beyond_the_hold_window_is_refused_at_booking(world: World) -> None:
    session_id = await world.claimed()
    async with world.sessions.begin() as db:
        session = await db.get(Session, session_id)
        assert session is not None
        session.scheduled_start = utcnow() + timedelta(days=7)  # plus 60 minutes: past the 7 days
    with pytest.raises(PaymentRefused) as refused:
        await world.cashier.hand_off(session_id)
    assert refused.value.code == "too_far_ahead"
    assert world.fake.checkout_sessions == {}
    assert (await world.session(session_id)).state is State.CLAIMED


async def test_a_capture_whose_answer_was_lost_is_retried_without_capturing_twice(world: World) -> None:
    session_id = await world.claimed()
    intent = await world.paid(session_id)
    await world.call(session_id, 61)
    world.fake.fail_after(r"/capture$")
    assert await world.cashier.settle_due() == []  # Stripe captured, but we never heard
    assert (await world.session(session_id)).state is State.ENDED
    await world.restart()  # and the process restarted before trying again
    assert await world.cashier.settle_due() == [session_id]
    captures = world.fake.calls_to(r"/capture$", "POST")
    assert [c.replayed for c in captures] == [False, True]  # the retry was a replay
    assert world.fake.payment_intents[intent]["amount_received"] == 300
    assert await world.check() == []


async def _post(world: World, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    async with (
        aiohttp.ClientSession() as http,
        http.post(world.webhook_url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def _webhook_rows(world: World) -> int:
    async with world.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


async def test_forged_stale_malformed_and_replayed_webhooks_change_nothing(world: World) -> None:
    session_id = await world.claimed()
    world.fake.hold_webhooks()
    hand_off = await world.cashier.hand_off(session_id)
    await world.fake.pay(hand_off.checkout_url.rsplit("/", 1)[-1])  # type: ignore[union-attr]
    completed = world.fake.events_of("checkout.session.completed")[0]
    payload = json.dumps(completed)
    now = int(utcnow().timestamp())
    before = await _webhook_rows(world)

    assert (await _post(world, payload.encode(), None))[0] == 400  # unsigned
    forged = sign_payload(payload, "whsec_not_ours", now)
    assert (await _post(world, payload.encode(), forged))[0] == 400
    altered = payload.replace(session_id, "ses_someone_else")
    assert (await _post(world, altered.encode(), sign_payload(payload, world.secret, now)))[0] == 400
    stale = await world.fake.deliver_stale(completed["id"], age_seconds=301)
    assert {d.status for d in stale} == {400}
    garbage = b"{not json"
    assert (await _post(world, garbage, sign_payload(garbage.decode(), world.secret, now)))[0] == 400
    huge = b"{" + b" " * (300 * 1024) + b"}"
    assert (await _post(world, huge, sign_payload(huge.decode(), world.secret, now)))[0] == 413
    assert await _webhook_rows(world) == before
    assert (await world.session(session_id)).state is State.AWAITING_PAYMENT

    unknown = json.dumps({"id": "evt_unknown_1", "type": "customer.created", "data": {"object": {}}})
    status, answer = await _post(world, unknown.encode(), sign_payload(unknown, world.secret, now))
    assert (status, answer["outcome"]) == (200, "ignored")

    await world.fake.release_webhooks()
    assert (await world.session(session_id)).state is State.READY
    entries = await world.ledger_size()
    replays = await world.fake.redeliver(completed["id"])
    assert {d.status for d in replays} == {200}
    status, answer = await _post(world, payload.encode(), sign_payload(payload, world.secret, now))
    assert (status, answer["outcome"]) == (200, "duplicate")
    assert await world.ledger_size() == entries
    assert await world.notices(session_id) == ["paid"]


def room_events(live: RoomEvent, ended: RoomEvent, rng: random.Random) -> list[RoomEvent]:
    """Live, pauses and resumes, the end, then copies of any of them, some arriving late."""
    paused = RoomEvent(live.room_id, live.session_id, "paused", 1, live.at + timedelta(seconds=1))
    resumed = RoomEvent(live.room_id, live.session_id, "resumed", 1, live.at + timedelta(seconds=2))
    events = [live, paused, resumed, ended]
    events += [rng.choice(events) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.3:
        rng.shuffle(events)
    return events


operations = st.lists(
    st.sampled_from(["redeliver", "restart", "lose_capture_answer", "settle", "settle_twice"]), max_size=6
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.sampled_from(["as_emitted", "reversed", "shuffled"]),
    seconds=st.integers(0, 75 * 60),
    ops=operations,
    seed=st.integers(0, 1000),
)
async def test_any_order_of_webhooks_retries_and_restarts_settles_once_for_the_metered_time(
    world: World, order: str, seconds: int, ops: list[str], seed: int
) -> None:
    world.fake.clear_faults()
    session_id = await world.claimed()
    world.fake.hold_webhooks()
    hand_off = await world.cashier.hand_off(session_id)
    intent = await world.fake.pay(hand_off.checkout_url.rsplit("/", 1)[-1])  # type: ignore[union-attr]
    await world.fake.release_webhooks(order, seed=seed)
    assert (await world.session(session_id)).state is State.READY
    billed = min(seconds, 60 * 60)  # the room stops the call at the authorised maximum
    # The gateway's events as the core's consumer receives them: duplicated, a late `live` after the end.
    consumer = RoomEventConsumer(world.sessions, RoomEventStream(aioredis.Redis()), consumer="test")
    start = utcnow() - timedelta(seconds=billed + 5)
    room = f"room-{session_id}"
    live = RoomEvent(room, session_id, "live", 0, start)
    ended = RoomEvent(room, session_id, "ended", billed, utcnow(), EndReason.HANGUP.value)
    for event in room_events(live, ended, rng=random.Random(seed)):
        await consumer.apply(event)
    called_off = (await world.session(session_id)).state is State.CANCELLED  # the end came before the start
    for op in ops:
        if op == "redeliver":
            for event in world.fake.events[-3:]:
                await world.fake.redeliver(event["id"])
        elif op == "restart":
            await world.restart()
        elif op == "lose_capture_answer":
            world.fake.fail_after(r"/(capture|cancel)$")
        elif op == "settle":
            await world.cashier.settle_due()
        else:
            await asyncio.gather(world.cashier.settle_due(), world.cashier.settle_due())
    world.fake.clear_faults()
    await world.cashier.settle_due()
    await world.fake.wait_delivered()
    session = await world.session(session_id)
    assert session.state is (State.CANCELLED if called_off else State.SETTLED)
    metered = 0 if called_off else billed
    expected = session_quote(session, world.cashier.quote_terms()).charge_for(metered)
    pi = world.fake.payment_intents[intent]  # type: ignore[index]
    captures = [
        e for e in world.fake.events_of("payment_intent.succeeded") if e["data"]["object"]["id"] == intent
    ]
    if expected.amount:
        assert (pi["status"], pi["amount_received"]) == ("succeeded", expected.amount)
        assert len(captures) == 1  # captured once, whatever was retried
    else:
        assert pi["status"] == "canceled"
        assert captures == []
    assert pi["amount_received"] <= HOLD
    assert await world.check() == []


async def test_a_sponsoring_business_pays_within_its_monthly_budget_then_customers_pay(
    world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with world.sessions.begin() as db:
        business = Business(
            name="Home Help Ltd",
            sponsors_sessions=True,
            # Used up by the first session's hour-long hold: sessions it has started are its to
            # pay, a new one is not taken on while the holds and charges reach the budget.
            sponsorship_budget_amount=HOLD,
            sponsorship_currency="EUR",
        )
        db.add(business)
        await db.flush()
        community = Community(business_id=business.id, channel=Channel.TELEGRAM, external_id="-100123")
        db.add(community)
    first = await world.claimed(community_id=community.id)
    hand_off = await world.cashier.hand_off(first)
    assert (hand_off.state, hand_off.sponsor, hand_off.checkout_url) == (State.READY, "Home Help Ltd", None)
    assert world.fake.checkout_sessions == {}  # nothing asked of the customer's card

    second = await world.claimed(community_id=community.id)
    hand_off = await world.cashier.hand_off(second)  # the budget is taken by the first session's hold
    assert (hand_off.state, hand_off.sponsor) == (State.AWAITING_PAYMENT, None)

    await world.call(first, 30 * 60)
    await world.cashier.settle(first)
    async with world.sessions() as db:
        owed = await db.scalar(
            select(func.sum(LedgerEntry.amount)).where(LedgerEntry.account == f"payer:sponsor:{business.id}")
        )
        spent = await world.cashier.sponsor_spent(db, business.id, "EUR")
    assert owed == 30 * RATE  # a receivable: the business is invoiced for the half hour
    assert spent == 30 * RATE  # the hold is released, the charge counts against this month's budget
    third = await world.claimed(community_id=community.id)
    assert (await world.cashier.hand_off(third)).sponsor == "Home Help Ltd"  # 4500 spent < 9000
    assert await world.check() == []

    # What the operator invoices at the end of the month, from the command line.
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["ledger", "receivables", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"payer": f"payer:sponsor:{business.id}", "name": "Home Help Ltd", "amount": 4500, "currency": "EUR"}
    ]
    result = await asyncio.to_thread(CliRunner().invoke, main, ["ledger", "check"])
    assert (result.exit_code, "ledger balanced" in result.output) == (0, True)


async def test_a_paid_room_nobody_joined_gives_the_hold_back(world: World) -> None:
    session_id = await world.claimed()
    intent = await world.paid(session_id)
    consumer = RoomEventConsumer(world.sessions, RoomEventStream(aioredis.Redis()), consumer="test")
    never = RoomEvent(f"room-{session_id}", session_id, "ended", 0, utcnow(), EndReason.EXPIRED.value)
    await consumer.apply(never)
    assert (await world.session(session_id)).state is State.EXPIRED
    assert world.fake.payment_intents[intent]["status"] == "requires_capture"  # still held, for now
    await world.cashier.settle_due()
    assert world.fake.payment_intents[intent]["status"] == "canceled"
    assert await world.cashier.release_abandoned() == []  # once
    assert await world.check() == []


async def test_a_session_called_off_before_payment_closes_its_payment_page(world: World) -> None:
    session_id = await world.claimed()
    hand_off = await world.cashier.hand_off(session_id)
    checkout = hand_off.checkout_url.rsplit("/", 1)[-1]  # type: ignore[union-attr]
    assert await world.fake.pay(checkout, card="4000000000000002") is None  # declined; may try again
    request_id = (await world.session(session_id)).request_id
    await world.lifecycle.cancel(request_id, reason="the customer cancelled")
    await world.cashier.settle_due()
    assert world.fake.checkout_sessions[checkout]["status"] == "expired"
    with pytest.raises(HostedPageError):
        await world.fake.pay(checkout)  # too late to pay for a session that is off
    await world.fake.wait_delivered()
    assert (await world.session(session_id)).state is State.CANCELLED
    assert await world.check() == []


async def test_yen_have_no_minor_units_all_the_way_to_stripe(world: World) -> None:
    session_id = await world.claimed(pricing=Pricing(PricingMode.PER_MINUTE, 80, "JPY"))
    intent = await world.paid(session_id)
    assert (world.fake.payment_intents[intent]["amount"], world.fake.payment_intents[intent]["currency"]) == (
        80 * 60,
        "jpy",
    )
    await world.call(session_id, 150)  # three started minutes: ¥240, ¥48 commission
    settled = await world.cashier.settle(session_id)
    assert settled is not None
    assert (settled.charge.amount, settled.charge.commission, settled.charge.currency) == (240, 48, "JPY")
    assert world.fake.payment_intents[intent]["amount_received"] == 240
    assert await world.check() == []
