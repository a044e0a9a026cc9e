"""Businesses through the real channels: a Discord guild whose requests reach only the business's
roster (or its roster first), and a sponsored paid session whose budget runs out while it goes on
(the session finishes, the business pays it, its admin is told once, the next customer is told)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from concierge.business_admins import BusinessAdmins
from concierge.businesses import create_business, create_widget_key
from concierge.lifecycle import State
from concierge.model import Business, BusinessAdmin, Expert, LedgerEntry, Offer, RosterScope, Session
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import WebUser, app_sessions, button, dispatcher_of, link_button, refresh_matcher
from tests.test_businesses import admin_of, reply
from tests.test_channels_e2e import GUILD, GUILD_CHANNEL, REQUEST, channels, dc_button
from tests.test_paid_flow import ENGLISH, JOIN, RATE, call, per_minute_expert, service
from tests.test_web_chat import networking_experts

__all__ = ["channels"]  # the fixture, shared with test_channels_e2e


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_roster_only_guild_reaches_only_its_roster_and_roster_first_falls_through(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    client, _, discord_server = channels
    shop = await create_business(app_sessions(client), "Home Help Ltd", scope=RosterScope.ROSTER_ONLY)
    owner = discord_server.user(6100, "Owner")
    discord_server.add_member(GUILD, owner, manage_guild=True)
    done = await discord_server.slash(
        owner, "setup", {"code": shop.setup_code}, guild_id=GUILD, channel_id=GUILD_CHANNEL
    )
    assert "Home Help Ltd" in (await discord_server.response_to(done))["data"]["content"]
    market, roster = await networking_experts(client, "net-market", "net-shop")
    async with app_sessions(client).begin() as db:
        expert = await db.get(Expert, "net-shop")
        assert expert is not None
        expert.business_id = shop.id
    await refresh_matcher(client, ["net-shop"])

    customer = discord_server.user(6001, "Kai", locale="en-GB")
    discord_server.add_member(GUILD, customer)
    asked = await discord_server.slash(
        customer, "ask", {"text": REQUEST}, guild_id=GUILD, channel_id=GUILD_CHANNEL
    )
    assert "date of birth" in (await discord_server.response_to(asked))["data"]["content"]
    await discord_server.dm(customer, "1990-01-01")
    cards = await discord_server.wait_for(lambda m: "I found 1 expert" in m.get("content", ""))
    assert cards["content"].startswith("Home Help Ltd\n")  # answered under the business's name
    assert "Expert 2" in cards["content"]
    assert "Expert 1" not in cards["content"]
    await discord_server.press(customer, cards, dc_button(cards, "Whoever answers first"))
    await roster.wait_text("New request")
    await asyncio.sleep(0.5)  # time for a wrong notification to arrive, if one were sent
    assert not any("New request" in m["text"] for m in market.messages)
    async with app_sessions(client)() as db:
        asked_experts = set(await db.scalars(select(Offer.expert_id)))
    assert asked_experts == {"net-shop"}

    # The admin opens the requests to the marketplace after its own experts, from the chat.
    admin = await admin_of(client, shop.id)
    menu = await admin.wait_text("Requests from its communities go")
    await reply(admin, "to its own experts first, then to everyone", press=button(menu, "Own experts first"))
    second = discord_server.user(6002, "Lu", locale="en-GB")
    discord_server.add_member(GUILD, second)
    asked = await discord_server.slash(
        second, "ask", {"text": REQUEST}, guild_id=GUILD, channel_id=GUILD_CHANNEL
    )
    await discord_server.response_to(asked)
    await discord_server.dm(second, "1991-02-02")
    cards = await discord_server.wait_for(lambda m: "I found 2 experts" in m.get("content", ""))
    assert cards["content"].index("Expert 2") < cards["content"].index("Expert 1")  # its own first

    # The server owner becomes an admin by DM, then uses the admins' slash commands there.
    admin_code = await BusinessAdmins(app_sessions(client)).admin_code(shop.id)
    await discord_server.dm(owner, f"/setup {admin_code}")
    await discord_server.wait_for(lambda m: "You are now an admin of Home Help Ltd" in m.get("content", ""))
    budget = await discord_server.slash(owner, "budget")
    answer = (await discord_server.response_to(budget))["data"]["content"]
    assert "Home Help Ltd does not pay for sessions" in answer
    report = await discord_server.slash(owner, "report", {"month": "2026-02"})
    assert "report for 2026-02" in (await discord_server.response_to(report))["data"]["content"]


async def test_a_sponsored_session_outlasting_its_budget_is_paid_by_the_business_and_the_next_customer_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    async with service(monkeypatch, tmp_path, database_url, use_embedder, detector, None) as client:
        sessions = app_sessions(client)
        shop = await create_business(sessions, "Home Help Ltd")
        key = await create_widget_key(sessions, shop.id)
        admin = await admin_of(client, shop.id)
        await reply(admin, "per month", press="biz_set:budget")
        await reply(admin, "on, up to €100.00 a month", send="100 EUR")
        expert = await per_minute_expert(client)

        customer = WebUser(client, key=key)
        await customer.connect()
        await customer.wait_welcome()
        await customer.say(ENGLISH[1])
        await customer.wait_text("2001-04-30")
        await customer.say("30/04/2001")
        cards = await customer.wait_text("Home network and Wi-Fi troubleshooting")
        assert not any("pay for the session yourself" in m["text"] for m in customer.messages)
        await customer.press(button(cards, "Ask 1."))
        offer = await expert.wait_text("New request")
        await expert.press(button(offer, "Accept"))
        accepted = await customer.wait_text("Tomás accepted your request")
        assert "This session is paid by Home Help Ltd." in accepted["text"]
        won = await expert.wait_text("You accepted")

        # The session's hold (an hour at most, €90) is 90 % of the budget: the admin is told once.
        await admin.wait_text("80 % is used", timeout=20)
        # The admin lowers the budget below what the session has taken: it is used up.
        await reply(admin, "per month", press="biz_set:budget")
        await reply(admin, "on, up to €1.00 a month", send="1 EUR")
        alert = await admin.wait_text("is used up this month", timeout=20)
        assert "€1.00" in alert["text"]

        # While the session goes on, the next customer from the widget is told before any claim.
        other = WebUser(client, key=key)
        await other.connect()
        await other.wait_welcome()
        await other.say(ENGLISH[1])
        await other.wait_text("2001-04-30")
        await other.say("01/02/1990")
        told = await other.wait_text("you pay for the session yourself")
        assert "Home Help Ltd has used up this month's budget" in told["text"]

        # The session finishes (it costs more than the €1.00 budget) and the business pays all of it.
        await call(client, [link_button(accepted, JOIN), link_button(won, JOIN)], 3)
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            async with sessions() as db:
                session = await db.scalar(select(Session).where(Session.expert_id == "tomas"))
            assert session is not None
            if session.state is State.SETTLED or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert session.state is State.SETTLED
        async with sessions() as db:
            owed = await db.scalar(
                select(func.sum(LedgerEntry.amount)).where(LedgerEntry.account == f"payer:sponsor:{shop.id}")
            )
            charged_customer = await db.scalar(
                select(func.count(LedgerEntry.id)).where(LedgerEntry.account.startswith("payer:customer:"))
            )
        assert owed == RATE  # one started minute, above the €1.00 budget
        assert charged_customer == 0

        spending = await reply(admin, "Spent €1.50 of €1.00", send="/budget")
        assert "€0.00 left" in spending["text"]
        await asyncio.sleep(6)  # more ticks: no alert twice
        assert sum("80 % is used" in m["text"] for m in admin.messages) == 1
        assert sum("is used up this month" in m["text"] for m in admin.messages) == 1
        for user in (admin, customer, other, expert):
            await user.close()


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_telegram_admin_joins_in_private_and_gets_last_months_report_once(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    client, telegram, _ = channels
    sessions = app_sessions(client)
    shop = await create_business(sessions, "Home Help Ltd")
    admin_code = await BusinessAdmins(sessions).admin_code(shop.id)
    async with sessions.begin() as db:  # the business existed last month
        business = await db.get(Business, shop.id)
        assert business is not None
        business.created_at = datetime.now(UTC) - timedelta(days=40)
    group = telegram.group(-1001234567890, "Neighbours")
    ada = telegram.user(4002, "Ada", language_code="fr")
    telegram.set_admin(group["id"], ada["id"])
    await telegram.add_member(group, telegram.bot_user, by=ada)

    # An admin code said in the group makes nobody an admin (others read the group).
    await telegram.send_text(ada, f"/setup {admin_code}", chat=group)
    await telegram.wait_for(lambda m: m["chat"]["id"] == group["id"] and "setup" in m["text"])
    async with sessions() as db:
        assert list(await db.scalars(select(BusinessAdmin.person_id))) == []

    await telegram.send_text(ada, f"/setup {admin_code}")
    await telegram.wait_for(
        lambda m: m["chat"]["id"] == 4002 and "administrateur de Home Help Ltd" in m["text"]
    )
    await dispatcher_of(client).tick(serve_line=True)
    now = datetime.now(UTC)
    last = f"{now.year - 1}-12" if now.month == 1 else f"{now.year}-{now.month - 1:02d}"
    report = await telegram.wait_for(lambda m: m["chat"]["id"] == 4002 and f"rapport de {last}" in m["text"])
    assert "Séances : 0" in report["text"]
    url = report["reply_markup"]["inline_keyboard"][0][0]["url"]
    assert url.endswith(f"/report?month={last}")
    await dispatcher_of(client).tick(serve_line=True)
    await asyncio.sleep(0.5)
    reports = [m for m in telegram.messages_to(4002) if "rapport de" in m["text"]]
    assert len(reports) == 1
