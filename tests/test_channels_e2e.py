"""Whole conversations through the real python-telegram-bot and discord.py clients, against the
local Telegram Bot API and Discord servers in tests/fakes, with the web widget alongside.

The customer asks in one channel, experts are notified in others, two of them press Accept at
the same moment, exactly one wins, and the customer gets the quote.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from concierge.businesses import create_business
from concierge.model import Channel, Community
from concierge.pricing import Pricing, PricingMode
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import WebUser, add_listed_expert, app_sessions, button, refresh_matcher, running_service

pytestmark = pytest.mark.parametrize("engine_name", ["sqlite"])

GUILD, GUILD_CHANNEL = 700000000000000001, 700000000000000002
REQUEST = "Can someone help? My wifi router keeps dropping the connection to my laptop"


def tg_button(message: dict[str, Any], label: str) -> str:
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for b in row:
            if label in b["text"]:
                return str(b["callback_data"])
    raise AssertionError(f"no button {label!r} in {message.get('reply_markup')}")


def dc_button(message: dict[str, Any], label: str) -> str:
    for row in message.get("components") or []:
        for b in row.get("components", []):
            if label in b.get("label", ""):
                return str(b["custom_id"])
    raise AssertionError(f"no button {label!r} in {message.get('components')}")


@pytest.fixture
async def channels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> AsyncIterator[tuple[Any, FakeTelegram, FakeDiscord]]:
    async with FakeTelegram() as telegram, FakeDiscord() as discord_server:
        discord_server.guild(GUILD, "Home Help", owner_id=1, channel_id=GUILD_CHANNEL)
        with discord_server.point_client():
            async with running_service(
                monkeypatch,
                tmp_path,
                database_url,
                use_embedder,
                detector,
                telegram_token=telegram.token,
                telegram_api_url=telegram.base_url,
                discord_token=discord_server.token,
                discord_api_url=discord_server.rest_base,
            ) as client:
                yield client, telegram, discord_server


async def networking_expert(
    client: Any, expert_id: str, name: str, channel: Channel, user_id: str, **kw: Any
) -> None:
    await add_listed_expert(
        app_sessions(client),
        expert_id,
        name=name,
        headline=f"Wi-Fi and home network help from {name}",
        skills=["wifi", "router", "laptop networking"],
        categories=["computers"],
        languages=["en"],
        channel=channel,
        user_id=user_id,
        **kw,
    )
    await refresh_matcher(client, [expert_id])


async def test_telegram_customer_discord_and_web_experts_race_one_wins(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    client, telegram, discord_server = channels
    expert_on_discord = discord_server.user(5001, "Dana")
    await networking_expert(client, "net-dana", "Dana", Channel.DISCORD, "5001")
    web_expert = WebUser(client)
    await web_expert.connect()
    await web_expert.wait_welcome()
    assert web_expert.visitor is not None
    await networking_expert(client, "net-wes", "Wes", Channel.WEB, web_expert.visitor)

    customer = telegram.user(1001, "Carla", language_code="en")
    await telegram.send_text(customer, REQUEST)
    await telegram.wait_for(lambda m: m["chat"]["id"] == 1001 and "date of birth" in m["text"])
    await telegram.send_text(customer, "1990-01-01")
    cards = await telegram.wait_for(lambda m: m["chat"]["id"] == 1001 and "I found 2 experts" in m["text"])
    assert "available now" in cards["text"]
    await telegram.press(customer, cards, tg_button(cards, "Whoever answers first"))
    await telegram.wait_for(lambda m: m["message_id"] == cards["message_id"] and "I have asked" in m["text"])

    dm = await discord_server.wait_for(lambda m: "New request" in m.get("content", ""))
    assert REQUEST in dm["content"]
    web_offer = await web_expert.wait_text("New request")
    await asyncio.gather(
        discord_server.press(expert_on_discord, dm, dc_button(dm, "Accept")),
        web_expert.press(button(web_offer, "Accept")),
    )
    quote = await telegram.wait_for(
        lambda m: m["chat"]["id"] == 1001 and "accepted your request" in m["text"]
    )
    assert "This session is free." in quote["text"]
    discord_after = await discord_server.wait_for(
        lambda m: m["id"] == dm["id"] and "New request" not in m.get("content", "")
    )
    web_after = await web_expert.wait_for(
        lambda m: m["ref"] == web_offer["ref"] and "New request" not in m["text"]
    )
    outcomes = [discord_after["content"], web_after["text"]]
    assert sum("You accepted" in text for text in outcomes) == 1, outcomes
    assert sum("Another expert accepted" in text for text in outcomes) == 1, outcomes
    winner = "Dana" if "You accepted" in outcomes[0] else "Wes"
    assert f"{winner} accepted your request" in quote["text"]


async def test_discord_customer_asks_in_a_server_and_a_telegram_expert_accepts_a_paid_session(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    client, telegram, discord_server = channels
    expert = telegram.user(3003, "Tomás", language_code="es")
    await telegram.send_text(expert, "/help")  # the expert has talked to the bot before
    await networking_expert(
        client,
        "net-tomas",
        "Tomás",
        Channel.TELEGRAM,
        "3003",
        pricing=Pricing(PricingMode.PER_MINUTE, 150, "EUR"),
        locale="es",
    )
    customer = discord_server.user(6001, "Kai", locale="en-GB")
    discord_server.add_member(GUILD, customer)

    interaction = await discord_server.slash(
        customer, "ask", {"text": REQUEST}, guild_id=GUILD, channel_id=GUILD_CHANNEL
    )
    first = await discord_server.response_to(interaction)
    assert "date of birth" in first["data"]["content"]
    assert first["data"]["flags"] & 64  # ephemeral inside the server
    await discord_server.dm(customer, "1990-01-01")
    cards = await discord_server.wait_for(lambda m: "I found 1 expert" in m.get("content", ""))
    assert "€1.50 per minute" in cards["content"]
    await discord_server.press(customer, cards, dc_button(cards, "Ask 1."))

    offer = await telegram.wait_for(lambda m: m["chat"]["id"] == 3003 and "Nueva solicitud" in m["text"])
    assert REQUEST in offer["text"]
    assert "1,50" in offer["text"]  # the price in the expert's own language format
    await telegram.press(expert, offer, tg_button(offer, "Aceptar"))
    accepted = await discord_server.wait_for(lambda m: "accepted your request" in m.get("content", ""))
    assert "€1.50 per minute, at most 60 minutes (€90.00)" in accepted["content"]
    won = await telegram.wait_for(lambda m: m["message_id"] == offer["message_id"] and m["edits"] >= 1)
    assert "72,00" in won["text"]  # payout after 20 % commission, in Spanish format


async def test_groups_and_servers_are_linked_by_their_admins_only(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    client, telegram, discord_server = channels
    business = await create_business(app_sessions(client), "Home Help Ltd")
    group = telegram.group(-1001234567890, "Neighbours")
    member, admin = telegram.user(4001, "Mo"), telegram.user(4002, "Ada")
    telegram.set_admin(group["id"], admin["id"])
    await telegram.add_member(group, telegram.bot_user, by=admin)  # a business adds the bot
    hello = await telegram.wait_for(lambda m: m["chat"]["id"] == group["id"] and "/setup CODE" in m["text"])
    assert f"@{telegram.bot_username}" in hello["text"]

    await telegram.send_text(member, f"/setup {business.setup_code}", chat=group)
    await telegram.wait_for(lambda m: m["chat"]["id"] == group["id"] and "administrators" in m["text"])
    await telegram.send_text(admin, f"/setup {business.setup_code}", chat=group)
    await telegram.wait_for(lambda m: m["chat"]["id"] == group["id"] and "Home Help Ltd" in m["text"])

    # A question in the group moves to a private chat that remembers the group.
    await telegram.send_text(member, f"@{telegram.bot_username} my printer will not print", chat=group)
    moved = await telegram.wait_for(lambda m: m["chat"]["id"] == group["id"] and "private" in m["text"])
    link = moved["reply_markup"]["inline_keyboard"][0][0]["url"]
    payload = link.split("start=")[1]
    await telegram.send_text(member, f"/start {payload}")
    await telegram.wait_for(lambda m: m["chat"]["id"] == member["id"] and "date of birth" in m["text"])

    # A business adds the bot to its (French) server: it says hello there, in French.
    discord_server.guild(7700, "Voisins", owner_id=6099, channel_id=7701, locale="fr")
    greeting = await discord_server.wait_for(lambda m: m["channel_id"] == "7701")
    assert "/setup CODE" in greeting["content"]
    assert "Bonjour" in greeting["content"]

    server_admin = discord_server.user(6100, "Owner")
    plain = discord_server.user(6101, "Guest")
    discord_server.add_member(GUILD, server_admin, manage_guild=True)
    discord_server.add_member(GUILD, plain)
    refused = await discord_server.slash(
        plain,
        "setup",
        {"code": business.setup_code},
        guild_id=GUILD,
        channel_id=GUILD_CHANNEL,
        ignore_default_permissions=True,
    )
    assert "administrators" in (await discord_server.response_to(refused))["data"]["content"]
    done = await discord_server.slash(
        server_admin, "setup", {"code": business.setup_code}, guild_id=GUILD, channel_id=GUILD_CHANNEL
    )
    assert "Home Help Ltd" in (await discord_server.response_to(done))["data"]["content"]

    from sqlalchemy import select

    async with app_sessions(client)() as db:
        linked = {(c.channel, c.external_id) for c in await db.scalars(select(Community))}
    assert linked == {(Channel.TELEGRAM, str(group["id"])), (Channel.DISCORD, str(GUILD))}


async def test_unsupported_messages_and_unknown_commands_on_both_chat_apps(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    _, telegram, discord_server = channels
    someone = telegram.user(8001, "Sam")
    await telegram.send_sticker(someone)
    await telegram.wait_for(lambda m: m["chat"]["id"] == 8001 and "only read text" in m["text"])
    await telegram.send_text(someone, "/teleport now")
    await telegram.wait_for(lambda m: m["chat"]["id"] == 8001 and "I don't know /teleport" in m["text"])
    guest = discord_server.user(8101, "Lee")
    await discord_server.dm(guest, "/teleport")
    await discord_server.wait_for(lambda m: "I don't know /teleport" in m.get("content", ""))


async def test_telegram_webhook_mode_checks_the_secret_and_serves_updates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    from tests.conftest import free_port

    port = free_port()
    secret = "s3cret_token-for-tests"
    async with (
        FakeTelegram() as telegram,
        running_service(
            monkeypatch,
            tmp_path,
            database_url,
            use_embedder,
            detector,
            port=port,
            public_url=f"http://127.0.0.1:{port}",
            telegram_token=telegram.token,
            telegram_api_url=telegram.base_url,
            telegram_mode="webhook",
            telegram_webhook_secret=secret,
        ) as client,
    ):
        hook = telegram.calls_to("setWebhook")[-1]
        assert hook["url"] == f"http://127.0.0.1:{port}/webhooks/telegram"
        assert hook["secret_token"] == secret
        assert telegram.calls_to("getUpdates") == []

        someone = telegram.user(9001, "Ines")
        await telegram.send_text(someone, "/help")
        await telegram.wait_for(lambda m: m["chat"]["id"] == 9001 and "/lang" in m["text"])
        assert telegram.webhook_deliveries == [200]

        eve = telegram.user(9002, "Eve")
        update = {
            "update_id": 9999,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": eve["id"], "type": "private", "first_name": "Eve"},
                "from": eve,
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        forged = await client.post(
            "/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"}
        )
        assert forged.status == 403
        missing = await client.post("/webhooks/telegram", json=update)
        assert missing.status == 403
        garbage = await client.post(
            "/webhooks/telegram", data=b"\xff{", headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        )
        assert garbage.status == 400
        # The same update with the right secret is answered, and it is the only answer Eve got.
        genuine = await client.post(
            "/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        )
        assert genuine.status == 200
        await telegram.wait_for(lambda m: m["chat"]["id"] == eve["id"] and "/lang" in m["text"])
        assert len(telegram.messages_to(eve["id"])) == 1


async def test_an_expert_links_discord_to_telegram_and_is_notified_where_last_active(
    channels: tuple[Any, FakeTelegram, FakeDiscord],
) -> None:
    client, telegram, discord_server = channels
    expert_tg = telegram.user(7001, "Noor")
    await networking_expert(client, "net-noor", "Noor", Channel.TELEGRAM, "7001")
    await telegram.send_text(expert_tg, "/link")
    code_message = await telegram.wait_for(lambda m: m["chat"]["id"] == 7001 and "/link " in m["text"])
    code = code_message["text"].split("/link ")[1].split()[0]

    expert_dc = discord_server.user(7101, "Noor on Discord")
    await discord_server.dm(expert_dc, f"/link {code}")
    await discord_server.wait_for(lambda m: "Linked" in m.get("content", ""))
    await discord_server.dm(expert_dc, "/online")  # last active on Discord now
    await discord_server.wait_for(lambda m: "You are online" in m.get("content", ""))

    customer = WebUser(client)
    await customer.connect()
    await customer.wait_welcome()
    await customer.say(REQUEST)
    await customer.say("1990-01-01")
    cards = await customer.wait_text("Noor")
    await customer.press(button(cards, "Ask 1."))
    offer = await discord_server.wait_for(lambda m: "New request" in m.get("content", ""))
    assert str(offer["channel_id"]) == str(discord_server.dm_channel_id(7101))
    assert not any("New request" in m["text"] for m in telegram.messages_to(7001))
    await discord_server.press(expert_dc, offer, dc_button(offer, "Accept"))
    await customer.wait_text("Noor accepted your request")

    await discord_server.dm(expert_dc, f"/link {code}")  # a code works once
    await discord_server.wait_for(lambda m: "wrong or has expired" in m.get("content", ""))
