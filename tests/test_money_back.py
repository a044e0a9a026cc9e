"""Money back: the customer asks, the expert answers, the operators decide escalations; every refund
goes through the cashier and the ledger stays balanced."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.invoice import InvoiceProvider
from concierge.cli import main
from concierge.config import load_settings
from concierge.ledger_check import check_ledger
from concierge.lifecycle import State
from concierge.model import MoneyBackStatus, Notice, Payment, PaymentKind, Session, utcnow
from concierge.money_back import MoneyBack, MoneyBackRefused
from concierge.payments import Cashier
from concierge.pricing import Pricing, PricingMode
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


class Desk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.clock = Clock()
        self.cashier = Cashier(load_settings(), sessions, InvoiceProvider(), clock=self.clock)
        self.desk = MoneyBack(sessions, self.cashier, clock=self.clock)
        self.lifecycle = Lifecycle(sessions)

    async def settled(self, minutes: int = 10, *, free: bool = False) -> tuple[str, str, str]:
        """(session, customer person, expert person) of a settled call of `minutes` at €1.50."""
        customer = await add_person(self.sessions, "Carla")
        pricing = Pricing(PricingMode.FREE, 0, "EUR") if free else Pricing(PricingMode.PER_MINUTE, 150, "EUR")
        expert = await add_expert(self.sessions, f"ex-{customer.id[-8:]}", name="Tomás", pricing=pricing)
        request = await self.lifecycle.open_request(customer.id, "my bike brakes squeal")
        await self.lifecycle.offer(request.id, [(expert.id, 1.0)])
        session = await self.lifecycle.claim(request.id, expert.id, commission_percent=Decimal(20))
        assert (await self.cashier.hand_off(session.id)).state is State.READY
        await self.lifecycle.go_live(session.id, at=utcnow() - timedelta(minutes=minutes, seconds=5))
        await self.lifecycle.end(session.id, minutes * 60)
        assert await self.cashier.settle(session.id) is not None
        return session.id, customer.id, expert.person_id

    async def refunded(self, session_id: str) -> list[int]:
        async with self.sessions() as db:
            return list(
                await db.scalars(
                    select(Payment.amount).where(
                        Payment.session_id == session_id, Payment.kind == PaymentKind.REFUND
                    )
                )
            )


@pytest.fixture
def desk(sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    return Desk(sessions)


async def test_the_expert_refunds_half_and_the_books_stay_balanced(desk: Desk) -> None:
    session_id, customer, expert = await desk.settled(minutes=10)  # €15.00
    asked = await desk.desk.ask(customer, session_id, "The brakes squeal again.")
    assert (asked.amount, asked.status) == (1500, MoneyBackStatus.OPEN)
    with pytest.raises(MoneyBackRefused, match="already_asked"):
        await desk.desk.ask(customer, session_id, "Really.")
    with pytest.raises(MoneyBackRefused, match="not_yours"):
        await desk.desk.answer(customer, asked.id, "all")  # the customer cannot grant it to themself
    granted = await desk.desk.answer(expert, asked.id, "half")
    assert (granted.status, granted.granted_amount) == (MoneyBackStatus.GRANTED, 750)
    assert await desk.refunded(session_id) == [750]
    with pytest.raises(MoneyBackRefused, match="already_decided"):
        await desk.desk.answer(expert, asked.id, "all")
    async with desk.sessions() as db:
        assert (await db.get(Session, session_id)).state is State.REFUNDED  # type: ignore[union-attr]
    assert await check_ledger(desk.sessions) == []


async def test_two_answers_racing_refund_once(desk: Desk) -> None:
    session_id, customer, expert = await desk.settled()
    asked = await desk.desk.ask(customer, session_id, "It did not help.")
    results = await asyncio.gather(
        desk.desk.answer(expert, asked.id, "all"),
        desk.desk.answer(expert, asked.id, "half"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["MoneyBackRefused", "MoneyBackView"]
    assert len(await desk.refunded(session_id)) == 1
    assert await check_ledger(desk.sessions) == []


async def test_a_declined_request_escalated_is_decided_by_the_operators_from_the_command_line(
    desk: Desk, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    refused_id, customer, expert = await desk.settled()
    asked = await desk.desk.ask(customer, refused_id, "He was late.")
    with pytest.raises(MoneyBackRefused, match="already_decided"):
        await desk.desk.decide(asked.id, 0, "not escalated yet")
    assert (await desk.desk.answer(expert, asked.id, "decline")).status is MoneyBackStatus.DECLINED
    assert (await desk.desk.escalate(customer, asked.id)).status is MoneyBackStatus.ESCALATED

    granted_id, other_customer, other_expert = await desk.settled(minutes=4)
    other = await desk.desk.ask(other_customer, granted_id, "The call kept dropping.")
    await desk.desk.answer(other_expert, other.id, "decline")
    await desk.desk.escalate(other_customer, other.id)

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args))
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(cli, "moneyback", "list", "--status", "escalated", "--json")
    assert code == 0, out
    assert [line["id"] for line in json.loads(out)] == [asked.id, other.id]
    code, out = await asyncio.to_thread(cli, "moneyback", "show", other.id)
    facts = json.loads(out)
    assert (facts["session"]["billed_seconds"], facts["reason"]) == (240, "The call kept dropping.")
    assert {"go_live", "end", "settle"} <= {e["event"] for e in facts["events"]}

    code, out = await asyncio.to_thread(cli, "moneyback", "decide", asked.id, "--refuse", "--note", "on time")
    assert (code, json.loads(out)["status"]) == (0, "refused")
    code, out = await asyncio.to_thread(
        cli, "moneyback", "decide", other.id, "--amount", "300", "--note", "drops"
    )
    assert (code, json.loads(out)["granted"]) == (0, 300), out
    code, out = await asyncio.to_thread(cli, "moneyback", "decide", other.id, "--refuse", "--note", "again")
    assert code == 1
    assert "already_decided" in out
    assert await desk.refunded(refused_id) == []
    assert await desk.refunded(granted_id) == [300]
    async with desk.sessions() as db:
        kinds = set(await db.scalars(select(Notice.kind).where(Notice.session_id == refused_id)))
    assert "moneyback_refused" in kinds
    assert await check_ledger(desk.sessions) == []


async def test_money_back_is_asked_in_time_for_a_charged_session_only(desk: Desk) -> None:
    session_id, customer, _ = await desk.settled()
    free_id, free_customer, _ = await desk.settled(free=True)
    with pytest.raises(MoneyBackRefused, match="nothing_to_refund"):
        await desk.desk.ask(free_customer, free_id, "It was free but bad.")
    with pytest.raises(MoneyBackRefused, match="reason_length"):
        await desk.desk.ask(customer, session_id, "   ")
    desk.clock.now += timedelta(hours=72, minutes=1)
    with pytest.raises(MoneyBackRefused, match="too_late"):
        await desk.desk.ask(customer, session_id, "I only just noticed.")
