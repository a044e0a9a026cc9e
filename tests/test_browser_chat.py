"""The web widget in a real headless Chromium: what a new user sees after `make run`.

One tab is a customer on /chat, the other an expert on /expert; the pages' own JavaScript
does the talking. Debian's chromium is used (never a browser downloaded by a test tool); the
test is skipped where it is not installed. Screenshots land in the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from concierge.invites import create_invite
from tests.browser import CHROMIUM, FLAGS, needs_chromium
from tests.conftest import free_port
from tests.harness import app_sessions, running_service

pytestmark = [
    needs_chromium,
    pytest.mark.parametrize("engine_name", ["sqlite"]),
]


async def test_a_customer_tab_and_an_expert_tab_complete_the_flow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    from playwright.async_api import Page, async_playwright

    port = free_port()
    async with running_service(
        monkeypatch, tmp_path, database_url, use_embedder, detector, port=port
    ) as client:
        code = (await create_invite(app_sessions(client))).code
        base = f"http://127.0.0.1:{port}"

        async def say(page: Page, text: str, then: str) -> None:
            await page.fill("#input", text)
            await page.click("#send")
            await page.locator("#messages li", has_text=then).first.wait_for(timeout=15_000)

        async def press(page: Page, label: str, then: str) -> None:
            await page.get_by_role("button", name=label).last.click()
            await page.locator("#messages li", has_text=then).first.wait_for(timeout=15_000)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                context = await browser.new_context(locale="en-GB")
                expert = await context.new_page()
                await expert.goto(f"{base}/expert")
                await expert.locator("#messages li", has_text="Experts: send /expert").wait_for()
                await say(expert, f"/expert {code}", "date of birth")
                await say(expert, "1980-01-01", "the name customers will see")
                await say(expert, "Wes", "Step 1")
                await say(expert, "Wi-Fi and home network troubleshooting", "Step 2")
                await say(expert, "I fix routers and laptops that will not connect.", "Step 3")
                await press(expert, "Computers & electronics", "Step 3")
                await expert.locator("button", has_text="✓").first.wait_for()
                await press(expert, "Done", "Step 4")
                await say(expert, "en", "Step 5")
                await press(expert, "Free", "Step 6")
                await say(expert, "Europe/Paris", "Step 7")
                await say(expert, "mon-sun 00:00-24:00", "Your listing")
                await press(expert, "Publish my listing", "is published")
                await say(expert, "/online", "You are online")

                customer = await context.new_page()
                await customer.goto(f"{base}/chat")
                await say(customer, "Can someone help? My wifi keeps dropping on my laptop", "date of birth")
                await say(customer, "1995-06-01", "I found 1 expert")
                cards = await customer.locator("#messages li", has_text="I found").inner_text()
                assert "1. Wes – Wi-Fi and home network troubleshooting" in cards
                await customer.screenshot(path=tmp_path / "customer-cards.png", full_page=True)
                await press(customer, "Whoever answers first", "I have asked Wes")
                await expert.locator("#messages li", has_text="New request").wait_for(timeout=15_000)
                await press(expert, "Accept", "You accepted")
                await customer.locator("#messages li", has_text="Wes accepted your request").wait_for()
                # The cards message was edited in place, not repeated.
                assert await customer.locator("#messages li", has_text="I found 1 expert").count() == 0
                await expert.screenshot(path=tmp_path / "expert-accepted.png", full_page=True)

                # A reload keeps the visitor (the signed token in localStorage) and its history.
                await customer.reload()
                await customer.locator("#messages li", has_text="Wes accepted your request").wait_for()
            finally:
                await browser.close()
