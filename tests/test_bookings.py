"""Bookings on a clock the test moves: hold → confirm → pay → remind → join → meter → settle →
review, and the other roads (late cancel, no-shows, a payment page that lapsed, moving a booking,
an expert who never confirmed), on SQLite and PostgreSQL, with several schedulers racing.

Real parts: the database, the job scheduler, the Cashier with the real stripe library against the
local Stripe server (whose clock follows the test's, like Stripe's test clocks), signed webhooks
into the real endpoint, the room event consumer, the ledger check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.stripe_provider import StripeProvider
from concierge.availability import Unavailable
from concierge.bookings import BookingRefused, Bookings, SlotUnavailable
from concierge.clock import FakeClock
from concierge.config import Settings, load_settings
from concierge.hours import WeeklyHours
from concierge.ledger_check import check_ledger
from concierge.lifecycle import State
from concierge.model import (
    Booking,
    BookingStatus,
    CancellationPolicy,
    Expert,
    LedgerEntry,
    Notice,
    Outcome,
    Payment,
    PaymentKind,
    ScheduledJob,
    Session,
)
from concierge.money_back import MoneyBack
from concierge.payments import Cashier
from concierge.payments_web import CASHIER, stripe_webhook
from concierge.pricing import Pricing, PricingMode
from concierge.reviews import Reviews
from concierge.rooms import RoomEventConsumer
from concierge.scheduler import Scheduler
from concierge.transitions import Lifecycle
from tests.conftest import free_port
from tests.factories import add_expert, add_person
from tests.fakes import stripe_server
from tests.fakes.stripe_server import FakeStripe
from video_gateway.events import RoomEvent

RATE = 150  # EUR cents a minute
START = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Monday 08:00 in Paris
EVERY_DAY = {day: ["08:00-20:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@dataclass
class Desk:
    clock: FakeClock
    fake: FakeStripe
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    cashier: Cashier
    lifecycle: Lifecycle
    bookings: Bookings
    scheduler: Scheduler

    async def expert(self, name: str, **schedule: object) -> Expert:
        expert = await add_expert(
            self.sessions,
            f"ex-{name.lower()}",
            pricing=Pricing(PricingMode.PER_MINUTE, RATE, "EUR"),
            name=name,
        )
        async with self.sessions.begin() as db:
            row = await db.get(Expert, expert.id)
            assert row is not None
            row.hours_json = WeeklyHours.parse(EVERY_DAY).to_json()
            row.published = True
            for field, value in schedule.items():
                setattr(row, field, value)
        return expert

    async def request(self, name: str = "Carla") -> tuple[str, str]:
        customer = await add_person(self.sessions, name)
        request = await self.lifecycle.open_request(customer.id, "my bike brakes squeal", wanted_at=None)
        return customer.id, request.id

    async def book(self, expert: Expert, at: datetime, name: str = "Carla") -> tuple[str, str]:
        customer_id, request_id = await self.request(name)
        booking = await self.bookings.book(customer_id, request_id, expert.id, at, commission=Decimal(20))
        return customer_id, booking.id

    async def run_jobs(self) -> int:
        total = 0
        while ran := await self.scheduler.run_due():
            total += ran
        return total

    async def at(self, moment: datetime) -> int:
        """Move the clock to `moment` and run what came due on the way."""
        self.clock.set(moment)
        return await self.run_jobs()

    async def booking(self, booking_id: str) -> Booking:
        async with self.sessions() as db:
            booking = await db.get(Booking, booking_id)
        assert booking is not None
        return booking

    async def session(self, booking_id: str) -> Session:
        booking = await self.booking(booking_id)
        async with self.sessions() as db:
            session = await db.get(Session, booking.session_id)
        assert session is not None
        return session

    async def notices(self, booking_id: str) -> list[str]:
        booking = await self.booking(booking_id)
        async with self.sessions() as db:
            rows = await db.scalars(
                select(Notice.key).where(Notice.session_id == booking.session_id).order_by(Notice.created_at)
            )
            return [key.split(":", 1)[1] for key in rows]

    async def pay(self, booking_id: str) -> None:
        notices = await self.notices(booking_id)
        async with self.sessions() as db:
            session = await self.session(booking_id)
            hold = await db.scalar(
                select(Payment)
                .where(Payment.session_id == session.id, Payment.kind == PaymentKind.AUTHORISATION)
                .order_by(Payment.created_at.desc())
            )
        assert hold is not None, notices
        assert hold.checkout_url, notices
        assert await self.fake.pay(hold.checkout_url.rsplit("/", 1)[-1]) is not None
        await self.fake.wait_delivered()

    async def call(
        self, booking_id: str, *, seconds: int, who: tuple[str, ...] = ("customer", "expert")
    ) -> None:
        """Parties open the room at the start; with both there, a call of `seconds` is metered."""
        session = await self.session(booking_id)
        consumer = RoomEventConsumer(self.sessions, None, "test")  # type: ignore[arg-type]
        for role in who:
            await consumer.apply(RoomEvent("room-1", session.id, "joined", 0, self.clock.now(), role))
        if len(who) == 2 and seconds:
            await self.lifecycle.go_live(session.id, at=self.clock.now())
            self.clock.advance(timedelta(seconds=seconds + 5))
            await self.lifecycle.end(session.id, seconds)

    async def charged(self, booking_id: str) -> int:
        session = await self.session(booking_id)
        async with self.sessions() as db:
            return int(
                await db.scalar(
                    select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                        LedgerEntry.session_id == session.id,
                        LedgerEntry.kind == "charge",
                        LedgerEntry.account.startswith("payer:"),
                    )
                )
                or 0
            )

    async def ledger_problems(self) -> list[str]:
        return [str(v) for v in await check_ledger(self.sessions)]


@pytest.fixture
async def desk(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Desk]:
    clock = FakeClock(START)
    # The local Stripe's clock follows the test's (Stripe has test clocks for the same purpose).
    monkeypatch.setattr(stripe_server, "_now", lambda: int(clock.now().timestamp()))
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    async with FakeStripe() as fake:
        port = free_port()
        url = f"http://127.0.0.1:{port}/webhooks/stripe"
        secret = fake.add_webhook(url)
        monkeypatch.setenv("CONCIERGE_STRIPE_API_KEY", fake.api_key)
        monkeypatch.setenv("CONCIERGE_STRIPE_WEBHOOK_SECRET", secret)
        monkeypatch.setenv("CONCIERGE_STRIPE_API_BASE", fake.base_url)
        settings = load_settings()
        provider = StripeProvider(
            fake.api_key, [secret], api_base=fake.base_url, network_retries=0, clock=clock.now
        )
        lifecycle = Lifecycle(sessions, clock=clock.now)
        cashier = Cashier(settings, sessions, provider, clock=clock.now)
        bookings = Bookings(settings, sessions, lifecycle, cashier, clock=clock.now)
        scheduler = Scheduler(sessions, clock, owner="test-a")
        bookings.register(scheduler)
        app = web.Application()
        app[CASHIER] = cashier
        app.router.add_post("/webhooks/stripe", stripe_webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Desk(clock, fake, sessions, settings, cashier, lifecycle, bookings, scheduler)
        finally:
            await provider.close()
            await runner.cleanup()
    assert not fake.server_errors


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    """A time on 2026-12-`day`, Paris wall clock (UTC+1 in December)."""
    return datetime(2026, 12, day, hour - 1, minute, tzinfo=UTC)


async def test_two_customers_racing_for_one_time_exactly_one_gets_it(desk: Desk) -> None:
    expert = await desk.expert("Tomás", booking_minutes=60, buffer_after_minutes=15)
    requests = [await desk.request(f"Customer {i}") for i in range(4)]
    at = paris(3, 10)

    async def book(customer_request: tuple[str, str], when: datetime) -> str:
        customer_id, request_id = customer_request
        try:
            booking = await desk.bookings.book(
                customer_id, request_id, expert.id, when, commission=Decimal(20)
            )
        except SlotUnavailable as exc:
            return exc.reason.value
        return booking.status.value

    # Two at the same start, a third overlapping it by 45 minutes, a fourth in its buffer.
    results = await asyncio.gather(
        book(requests[0], at),
        book(requests[1], at),
        book(requests[2], at + timedelta(minutes=15)),
        book(requests[3], at + timedelta(minutes=60)),
    )
    assert results.count("confirmed") == 1, results
    assert results.count("taken") == 3, results
    async with desk.sessions() as db:
        live = await db.scalar(
            select(func.count()).select_from(Booking).where(Booking.status == BookingStatus.CONFIRMED)
        )
        sessions = await db.scalar(select(func.count()).select_from(Session))
    assert live == 1
    assert sessions == 1  # the losers' transactions left nothing behind
    # After its buffer the next hour is free again.
    assert await book(requests[3], at + timedelta(minutes=75)) == "confirmed"


async def test_a_paid_booking_from_hold_to_review(desk: Desk) -> None:
    expert = await desk.expert("Tomás", booking_minutes=30)
    start = paris(8, 10)  # eight days ahead: beyond the card hold window, paid later
    customer_id, booking_id = await desk.book(expert, start)
    assert (await desk.session(booking_id)).state is State.CLAIMED
    assert await desk.notices(booking_id) == []  # no payment asked for yet

    await desk.at(start - timedelta(hours=120))  # the payment lead: now the hold outlives the call
    assert [n.split(":")[0] for n in await desk.notices(booking_id)] == ["booking_pay"]
    assert (await desk.session(booking_id)).state is State.AWAITING_PAYMENT
    await desk.pay(booking_id)
    assert (await desk.session(booking_id)).state is State.READY

    await desk.at(start - timedelta(hours=24, minutes=1))
    assert not any(n.startswith("reminder") for n in await desk.notices(booking_id))
    await desk.at(start - timedelta(hours=24))
    await desk.at(start - timedelta(minutes=10))
    reminders = [n for n in await desk.notices(booking_id) if n.startswith("reminder")]
    assert [r.split(":")[1] for r in reminders] == ["1440", "10"]

    await desk.at(start)
    await desk.call(booking_id, seconds=25 * 60)
    settlement = await desk.cashier.settle((await desk.session(booking_id)).id)
    assert settlement is not None
    assert settlement.charge.amount == 25 * RATE
    await desk.at(start + timedelta(minutes=40))  # the attendance check: kept
    booking = await desk.booking(booking_id)
    assert (booking.status, booking.outcome) == (BookingStatus.DONE, Outcome.KEPT)
    async with desk.sessions() as db:
        row = await db.get(Expert, expert.id)
        assert row is not None
        assert (row.sessions_kept, row.no_shows) == (1, 0)

    session = await desk.session(booking_id)
    reviews = Reviews(desk.sessions, clock=desk.clock.now)
    await reviews.rate(session.id, customer_id, 5)
    assert (await reviews.rate(session.id, expert.person_id, 4)).published
    # Money back: the customer asks, the expert gives half.
    money_back = MoneyBack(desk.sessions, desk.cashier, clock=desk.clock.now)
    asked = await money_back.ask(customer_id, session.id, "the sound kept dropping")
    answered = await money_back.answer(expert.person_id, asked.id, "half")
    assert answered.granted_amount == 25 * RATE // 2
    assert await desk.ledger_problems() == []


@pytest.mark.parametrize(
    "policy", [CancellationPolicy.FLEXIBLE, CancellationPolicy.MODERATE, CancellationPolicy.STRICT]
)
async def test_cancelling_is_free_until_the_policy_limit_then_the_booked_time_is_charged(
    desk: Desk, policy: CancellationPolicy
) -> None:
    limit = {"flexible": 1, "moderate": 24, "strict": 72}[policy.value]
    expert = await desk.expert("Tomás", booking_minutes=30, cancellation_policy=policy)
    start = paris(4, 15)
    early_customer, early = await desk.book(expert, start, "Early")
    late_customer, late = await desk.book(expert, start + timedelta(hours=1), "Late")
    await desk.run_jobs()
    for booking_id in (early, late):
        await desk.pay(booking_id)

    desk.clock.set(start - timedelta(hours=limit, minutes=1))
    free = await desk.bookings.cancel(early_customer, None, early)
    assert (free.outcome, free.charged) == (Outcome.CANCELLED_FREE, False)
    desk.clock.set(start + timedelta(hours=1) - timedelta(hours=limit, minutes=-1))
    charged = await desk.bookings.cancel(late_customer, None, late)
    assert (charged.outcome, charged.charged) == (Outcome.CANCELLED_LATE, True)

    await desk.cashier.settle_due()
    assert await desk.charged(early) == 0
    assert await desk.charged(late) == 30 * RATE
    assert (await desk.session(early)).state is State.CANCELLED
    assert (await desk.session(late)).state is State.SETTLED
    assert await desk.ledger_problems() == []
    with pytest.raises(BookingRefused):
        await desk.bookings.cancel(late_customer, None, late)  # once is enough


async def test_a_customer_no_show_is_charged_an_expert_no_show_is_not(desk: Desk) -> None:
    expert = await desk.expert("Tomás", booking_minutes=45)
    other = await desk.expert("Ines", booking_minutes=45)
    start = paris(2, 11)
    _, missed_by_customer = await desk.book(expert, start, "Absent")
    _, missed_by_expert = await desk.book(other, start, "Present")
    await desk.run_jobs()
    for booking_id in (missed_by_customer, missed_by_expert):
        await desk.pay(booking_id)
    await desk.at(start)
    await desk.call(missed_by_customer, seconds=0, who=("expert",))
    await desk.call(missed_by_expert, seconds=0, who=("customer",))
    await desk.at(start + timedelta(minutes=11))
    await desk.cashier.settle_due()

    no_show = await desk.booking(missed_by_customer)
    assert no_show.outcome is Outcome.CUSTOMER_NO_SHOW
    assert await desk.charged(missed_by_customer) == 45 * RATE
    absent = await desk.booking(missed_by_expert)
    assert absent.outcome is Outcome.EXPERT_NO_SHOW
    assert await desk.charged(missed_by_expert) == 0
    async with desk.sessions() as db:
        rows = {e.id: (e.sessions_kept, e.no_shows) for e in await db.scalars(select(Expert))}
    assert rows[other.id] == (0, 1)
    assert rows[expert.id] == (0, 0)  # the expert came: no mark against them
    assert await desk.ledger_problems() == []


async def test_a_lapsed_payment_page_asks_again_and_an_unpaid_booking_is_called_off(desk: Desk) -> None:
    expert = await desk.expert("Tomás")
    start = paris(3, 9)
    _, never = await desk.book(expert, start, "Never")
    _, again = await desk.book(expert, start + timedelta(hours=2), "Again")
    await desk.run_jobs()
    for booking_id in (again, never):
        session = await desk.session(booking_id)
        async with desk.sessions() as db:
            url = await db.scalar(select(Payment.checkout_url).where(Payment.session_id == session.id))
        assert url is not None
        desk.fake.expire_session(url.rsplit("/", 1)[-1])
        await desk.fake.wait_delivered()
        assert (await desk.session(booking_id)).state is State.CLAIMED  # asked again, not dropped
        assert any(n.startswith("pay_again") for n in await desk.notices(booking_id))

    hand_off = await desk.cashier.hand_off((await desk.session(again)).id)  # the new page
    assert hand_off.checkout_url is not None
    await desk.pay(again)
    assert (await desk.session(again)).state is State.READY

    await desk.at(start - timedelta(minutes=desk.settings.booking_pay_by_minutes))
    unpaid = await desk.booking(never)
    assert (unpaid.status, unpaid.outcome) == (BookingStatus.CANCELLED, Outcome.UNPAID)
    assert (await desk.session(never)).state is State.CANCELLED
    assert (await desk.booking(again)).status is BookingStatus.CONFIRMED
    assert await desk.ledger_problems() == []


async def test_moving_a_booking_moves_its_reminders_until_the_free_limit(desk: Desk) -> None:
    expert = await desk.expert("Tomás", cancellation_policy=CancellationPolicy.MODERATE)
    start = paris(5, 10)
    customer_id, booking_id = await desk.book(expert, start)
    moved_to = paris(6, 16)
    moved = await desk.bookings.reschedule(customer_id, booking_id, moved_to)
    assert moved.starts_at == moved_to
    assert (await desk.session(booking_id)).scheduled_start.replace(tzinfo=UTC) == moved_to  # type: ignore[union-attr]
    # The old time is free again; the new one is not.
    with pytest.raises(SlotUnavailable):
        await desk.book(expert, moved_to, "Rival")
    await desk.book(expert, start, "Rival")
    await desk.at(start - timedelta(minutes=10))
    assert not any(n.startswith("reminder") for n in await desk.notices(booking_id))
    await desk.at(moved_to - timedelta(hours=24))
    assert next(n for n in await desk.notices(booking_id) if n.startswith("reminder")).startswith(
        "reminder:1440"
    )
    desk.clock.set(moved_to - timedelta(hours=23))
    with pytest.raises(BookingRefused) as refused:
        await desk.bookings.reschedule(customer_id, booking_id, paris(7, 10))
    assert refused.value.reason == "too_late"


async def test_an_expert_who_does_not_confirm_in_time_frees_the_time(desk: Desk) -> None:
    expert = await desk.expert("Tomás", auto_confirm=False)
    start = paris(4, 10)
    _, booking_id = await desk.book(expert, start)
    assert (await desk.booking(booking_id)).status is BookingStatus.PENDING
    with pytest.raises(SlotUnavailable) as taken:
        await desk.book(expert, start, "Rival")  # held while the expert decides
    assert taken.value.reason is Unavailable.TAKEN
    await desk.at(START + timedelta(hours=desk.settings.booking_confirm_hours))
    assert (await desk.booking(booking_id)).status is BookingStatus.DECLINED
    assert (await desk.session(booking_id)).state is State.CANCELLED
    assert "booking_declined" in await desk.notices(booking_id)
    await desk.book(expert, start, "Rival")


async def test_an_expert_confirms_and_only_then_the_payment_is_asked(desk: Desk) -> None:
    expert = await desk.expert("Tomás", auto_confirm=False)
    _, booking_id = await desk.book(expert, paris(2, 10))
    async with desk.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Payment)) == 0
    confirmed = await desk.bookings.confirm(expert.id, booking_id)
    assert confirmed.status is BookingStatus.CONFIRMED
    assert (await desk.session(booking_id)).state is State.AWAITING_PAYMENT
    told = await desk.notices(booking_id)
    assert told[0] == "booking_confirmed"
    assert [n.split(":")[0] for n in told[1:]] == ["booking_pay"]
    with pytest.raises(BookingRefused):
        await desk.bookings.decline(expert.id, booking_id)


async def test_several_schedulers_racing_for_due_reminders_send_each_once(desk: Desk) -> None:
    expert = await desk.expert("Tomás", booking_minutes=30)
    start = paris(3, 9)
    bookings = [(await desk.book(expert, start + timedelta(hours=i), f"C{i}"))[1] for i in range(6)]
    await desk.run_jobs()
    for booking_id in bookings:
        await desk.pay(booking_id)
    others = []
    for name in ("test-b", "test-c"):
        scheduler = Scheduler(desk.sessions, desk.clock, owner=name, batch=2)
        desk.bookings.register(scheduler)
        others.append(scheduler)
    desk.clock.set(start + timedelta(hours=6) - timedelta(hours=24))
    await asyncio.gather(*(s.run_due() for s in [desk.scheduler, *others] for _ in range(4)))
    await desk.run_jobs()
    for booking_id in bookings:
        assert [n for n in await desk.notices(booking_id) if n.startswith("reminder")] == [
            f"reminder:1440:{(start + timedelta(hours=bookings.index(booking_id))).isoformat()}"
        ]
    async with desk.sessions() as db:
        failed = await db.scalar(
            select(func.count()).select_from(ScheduledJob).where(ScheduledJob.last_error.is_not(None))
        )
    assert failed == 0


async def test_a_booking_moved_after_its_first_reminder_is_reminded_again_for_the_new_time(
    desk: Desk,
) -> None:
    expert = await desk.expert("Tomás")  # flexible: free to move until an hour before
    start, moved_to = paris(5, 10), paris(6, 16)
    customer_id, booking_id = await desk.book(expert, start)
    await desk.at(start - timedelta(hours=24))
    await desk.bookings.reschedule(customer_id, booking_id, moved_to)
    await desk.at(start - timedelta(minutes=10))  # the old time's last reminder: not sent
    await desk.at(moved_to - timedelta(hours=24))
    reminders = [n for n in await desk.notices(booking_id) if n.startswith("reminder")]
    assert reminders == [f"reminder:1440:{start.isoformat()}", f"reminder:1440:{moved_to.isoformat()}"]
    assert "booking_moved:1" in await desk.notices(booking_id)
