"""Storage on SQLite and PostgreSQL: migrations, every entity, constraints, types."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Integer, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from concierge import migrate
from concierge.lifecycle import State
from concierge.model import (
    Base,
    Business,
    Channel,
    ChannelIdentity,
    Community,
    Expert,
    HelpRequest,
    InviteCode,
    LedgerEntry,
    Offer,
    Payment,
    PaymentKind,
    Person,
    Review,
    Session,
)
from concierge.money import Money
from concierge.pricing import Pricing, PricingMode
from tests.factories import add_expert, add_person


async def test_migrations_create_exactly_the_model(engine: AsyncEngine) -> None:
    assert await migrate.current_revision(engine) == migrate.head_revision()
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    assert diff == []


async def test_downgrade_to_nothing_and_back(engine: AsyncEngine) -> None:
    await migrate.downgrade(engine, "base")
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_money_columns_are_integers_with_a_currency(engine: AsyncEngine) -> None:
    def columns(sync: object) -> dict[str, dict[str, object]]:
        inspector = inspect(sync)
        return {
            f"{table}.{column['name']}": column
            for table in inspector.get_table_names()
            for column in inspector.get_columns(table)
        }

    async with engine.connect() as connection:
        found = await connection.run_sync(columns)
    for amount, currency in [
        ("experts.price_amount", "experts.price_currency"),
        ("sessions.price_amount", "sessions.price_currency"),
        ("payments.amount", "payments.currency"),
        ("ledger_entries.amount", "ledger_entries.currency"),
        ("help_requests.budget_amount", "help_requests.budget_currency"),
        ("businesses.sponsorship_budget_amount", "businesses.sponsorship_currency"),
    ]:
        assert isinstance(found[amount]["type"], Integer), amount
        assert currency in found


async def test_people_and_their_channel_identities(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = Person(display_name="李雷", locale="zh", time_zone="Asia/Shanghai", birth_date=date(2010, 5, 1))
    async with sessions.begin() as db:
        db.add(person)
        db.add(ChannelIdentity(channel=Channel.TELEGRAM, external_id="4242", person_id=person.id))
    async with sessions() as db:
        loaded = await db.get(Person, person.id)
        assert loaded is not None
        assert loaded.display_name == "李雷"
        assert loaded.age_on(date(2026, 4, 30)) == 15
        assert loaded.age_on(date(2026, 5, 1)) == 16
        assert loaded.created_at.tzinfo is not None

    other = await add_person(sessions, "Someone else")
    with pytest.raises(IntegrityError):
        async with sessions.begin() as db:
            db.add(ChannelIdentity(channel=Channel.TELEGRAM, external_id="4242", person_id=other.id))
    # The same external id on another channel is another identity.
    async with sessions.begin() as db:
        db.add(ChannelIdentity(channel=Channel.DISCORD, external_id="4242", person_id=other.id))


async def test_expert_listing_round_trips(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_expert(sessions, "yuki-01", pricing=Pricing(PricingMode.PER_SESSION, 3000, "JPY"))
    async with sessions() as db:
        expert = await db.get(Expert, "yuki-01")
        assert expert is not None
        assert expert.pricing == Pricing(PricingMode.PER_SESSION, 3000, "JPY")
        assert expert.pricing.price == Money(3000, "JPY")
        assert expert.hours.to_json() == {"mon": ["09:00-17:00"]}
        assert expert.languages == ["fr", "en"]
        assert expert.rating_mean is None
    async with sessions.begin() as db:
        expert = await db.get(Expert, "yuki-01")
        assert expert is not None
        expert.pricing = Pricing(PricingMode.FREE, 0, "JPY")
        expert.rating_count, expert.rating_total = 2, 9
    async with sessions() as db:
        expert = await db.get(Expert, "yuki-01")
        assert expert is not None
        assert expert.pricing.mode is PricingMode.FREE
        assert expert.rating_mean == 4.5


async def test_ratings_must_be_possible_sums_of_stars(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_expert(sessions, "e1")
    with pytest.raises(IntegrityError):
        async with sessions.begin() as db:
            expert = await db.get(Expert, "e1")
            assert expert is not None
            expert.rating_count, expert.rating_total = 2, 11


async def test_business_community_and_invite(sessions: async_sessionmaker[AsyncSession]) -> None:
    business = Business(
        name="Bike Co-op",
        commission_percent=Decimal("12.50"),
        sponsors_sessions=True,
        sponsorship_budget_amount=50_000,
        sponsorship_currency="EUR",
    )
    async with sessions.begin() as db:
        db.add(business)
        await db.flush()
        db.add(Community(business_id=business.id, channel=Channel.DISCORD, external_id="guild-1"))
        db.add(InviteCode(code="ABCDE12345", business_id=business.id, uses_left=3))
    async with sessions() as db:
        loaded = await db.get(Business, business.id)
        assert loaded is not None
        assert loaded.commission_percent == Decimal("12.50")
        invite = await db.get(InviteCode, "ABCDE12345")
        assert invite is not None
        assert invite.uses_left == 3
    with pytest.raises(IntegrityError):  # a budget without a currency means nothing
        async with sessions.begin() as db:
            db.add(Business(name="Broken", sponsorship_budget_amount=100))


async def test_request_offer_session_payment_ledger_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer = await add_person(sessions, "Customer")
    expert = await add_expert(sessions, "net-fr")
    now = datetime.now(UTC)
    request = HelpRequest(customer_id=customer.id, text="Mon wifi ne marche plus", language="fr")
    request.budget = Money(2000, "EUR")
    async with sessions.begin() as db:
        db.add(request)
        await db.flush()
        db.add(Offer(request_id=request.id, expert_id=expert.id, rank=1, score=0.91))
        session = Session(
            request_id=request.id,
            customer_id=customer.id,
            expert_id=expert.id,
            pricing=expert.pricing,
            commission_percent=Decimal(20),
            state=State.ENDED,
            started_at=now - timedelta(minutes=10),
            ended_at=now,
            billed_seconds=600,
        )
        db.add(session)
        await db.flush()
        db.add(
            Payment(
                session_id=session.id,
                kind=PaymentKind.CAPTURE,
                provider="stripe",
                amount=1500,
                currency="EUR",
                idempotency_key=f"{session.id}:capture",
            )
        )
        db.add_all(
            [
                LedgerEntry(
                    transaction_id="txn_1",
                    session_id=session.id,
                    account="customer",
                    amount=1500,
                    currency="EUR",
                ),
                LedgerEntry(
                    transaction_id="txn_1",
                    session_id=session.id,
                    account="expert",
                    amount=-1200,
                    currency="EUR",
                ),
                LedgerEntry(
                    transaction_id="txn_1",
                    session_id=session.id,
                    account="platform",
                    amount=-300,
                    currency="EUR",
                ),
            ]
        )
        db.add(Review(session_id=session.id, author_id=customer.id, subject_id=expert.person_id, stars=5))
    async with sessions() as db:
        loaded = await db.get(HelpRequest, request.id)
        assert loaded is not None
        assert loaded.budget == Money(2000, "EUR")
        assert loaded.status is State.OPEN
        entries = (
            await db.scalars(select(LedgerEntry.amount).where(LedgerEntry.transaction_id == "txn_1"))
        ).all()
        assert sum(entries) == 0
        stored = await db.get(Session, session.id)
        assert stored is not None
        assert stored.ended_at == now.replace(microsecond=stored.ended_at.microsecond)
        assert stored.ended_at.tzinfo is not None

    # The same idempotency key can never be used for a second money movement.
    with pytest.raises(IntegrityError):
        async with sessions.begin() as db:
            db.add(
                Payment(
                    session_id=session.id,
                    kind=PaymentKind.CAPTURE,
                    provider="stripe",
                    amount=1500,
                    currency="EUR",
                    idempotency_key=f"{session.id}:capture",
                )
            )


@pytest.mark.parametrize(
    "bad_row",
    [
        lambda ids: Review(
            session_id=ids["session"], author_id=ids["customer"], subject_id=ids["expert_person"], stars=6
        ),
        lambda ids: Review(
            session_id=ids["session"], author_id=ids["customer"], subject_id=ids["customer"], stars=3
        ),
        lambda ids: LedgerEntry(transaction_id="t", account="x", amount=0, currency="EUR"),
        lambda ids: Payment(
            session_id=ids["session"],
            kind=PaymentKind.REFUND,
            provider="stripe",
            amount=-1,
            currency="EUR",
            idempotency_key="k",
        ),
        lambda ids: HelpRequest(customer_id=ids["customer"], text="x", budget_amount=100),
        lambda ids: HelpRequest(customer_id="per_missing", text="x"),
    ],
    ids=[
        "six-stars",
        "self-review",
        "zero-ledger-leg",
        "negative-payment",
        "budget-no-currency",
        "dangling-customer",
    ],
)
async def test_constraints_refuse_impossible_rows(
    sessions: async_sessionmaker[AsyncSession], bad_row: object
) -> None:
    customer = await add_person(sessions, "C")
    expert = await add_expert(sessions, "x1")
    async with sessions.begin() as db:
        request = HelpRequest(customer_id=customer.id, text="help")
        db.add(request)
        await db.flush()
        session = Session(
            request_id=request.id,
            customer_id=customer.id,
            expert_id=expert.id,
            pricing=expert.pricing,
            commission_percent=Decimal(20),
        )
        db.add(session)
    ids = {"session": session.id, "customer": customer.id, "expert_person": expert.person_id}
    with pytest.raises(IntegrityError):
        async with sessions.begin() as db:
            db.add(bad_row(ids))  # type: ignore[operator]


async def test_negative_billed_seconds_and_time_travel_are_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customer = await add_person(sessions, "C")
    expert = await add_expert(sessions, "x2")
    now = datetime.now(UTC)
    for values in ({"billed_seconds": -1}, {"started_at": now, "ended_at": now - timedelta(seconds=1)}):
        with pytest.raises(IntegrityError):
            async with sessions.begin() as db:
                request = HelpRequest(customer_id=customer.id, text="help")
                db.add(request)
                await db.flush()
                db.add(
                    Session(
                        request_id=request.id,
                        customer_id=customer.id,
                        expert_id=expert.id,
                        pricing=expert.pricing,
                        commission_percent=Decimal(20),
                        **values,
                    )
                )


async def test_naive_datetimes_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    customer = await add_person(sessions, "C")
    with pytest.raises(Exception, match="naive datetime"):
        async with sessions.begin() as db:
            db.add(HelpRequest(customer_id=customer.id, text="x", wanted_at=datetime(2026, 1, 1, 15)))
