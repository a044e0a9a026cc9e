"""The web widget end to end: a customer tab and an expert tab over real WebSockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from concierge.invites import create_invite
from concierge.model import Channel
from tests.harness import WebUser, add_listed_expert, app_sessions, button, refresh_matcher, running_service


async def test_customer_and_expert_complete_the_flow_in_two_tabs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    async with running_service(monkeypatch, tmp_path, database_url, use_embedder, detector) as client:
        sessions = app_sessions(client)
        invite = await create_invite(sessions)

        expert = WebUser(client)
        await expert.connect()
        await expert.wait_welcome()
        await expert.say(f"/expert {invite.code}")
        await expert.wait_text("date of birth")
        await expert.say("1985-03-14")
        await expert.wait_text("Step 1")
        await expert.say("Home network and Wi-Fi troubleshooting")
        await expert.wait_text("Step 2")
        await expert.say("I fix routers, Wi-Fi dead zones and laptops that will not connect.")
        categories = await expert.wait_text("Step 3")
        await expert.press(button(categories, "Computers"))
        await expert.wait_for(lambda m: m["ref"] == "setup:categories" and "✓" in str(m["buttons"]))
        await expert.press("cat:done")
        await expert.wait_text("Step 4")
        await expert.say("en, fr")
        pricing = await expert.wait_text("Step 5")
        await expert.press(button(pricing, "Free"))
        await expert.wait_text("Step 6")
        await expert.say("Europe/Paris")
        await expert.wait_text("Step 7")
        await expert.say("mon-sun 00:00-24:00")
        summary = await expert.wait_text("Your listing")
        await expert.press(button(summary, "Publish"))
        await expert.wait_text("published")
        await expert.say("/online")
        await expert.wait_text("You are online")

        customer = WebUser(client, locale="en-US")
        await customer.connect()
        await customer.wait_welcome()
        await customer.say("My wifi router keeps dropping the connection to my laptop")
        await customer.wait_text("date of birth")
        await customer.say("30/04/2001")
        cards = await customer.wait_text("Home network and Wi-Fi troubleshooting")
        assert "available now" in cards["text"]
        await customer.press(button(cards, "Ask 1."))
        await customer.wait_text("I have asked")

        offer = await expert.wait_text("New request")
        assert "My wifi router" in offer["text"] and "free" in offer["text"]
        await expert.press(button(offer, "Accept"))
        await expert.wait_text("You accepted")
        accepted = await customer.wait_text("accepted your request")
        assert "This session is free." in accepted["text"]

        await customer.say("/sessions")
        await customer.wait_text("ready to start")
        await customer.close()
        await expert.close()
