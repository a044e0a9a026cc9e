"""The room page in a real headless Chromium with fake camera and microphone.

Two pages open the two links of one room; both see the other's video (frames decoded by the
browser), the timer runs (between the gateway's ticks too), the budget warning shows, and hang-up
ends the call for both. In relay and direct mode.
Debian's chromium, never a downloaded browser; skipped where it is not installed.
Screenshots land in the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from concierge.database import create_engine, session_factory
from concierge.rooms import SqlRoomBook
from tests.browser import CHROMIUM, FLAGS, MEDIA_FLAGS, needs_chromium
from tests.conftest import free_port
from tests.gateway_harness import gateway_service
from video_gateway.meter import EndReason, MeterState
from video_gateway.rooms import Participant
from video_gateway.web import GATEWAY

pytestmark = [
    needs_chromium,
    pytest.mark.parametrize("engine_name", ["sqlite"]),
    pytest.mark.redis_server,
]


@pytest.mark.parametrize("mode", ["relay", "direct"])
async def test_two_browsers_see_each_other_and_hang_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str, mode: str
) -> None:
    from playwright.async_api import Page, async_playwright

    async with gateway_service(monkeypatch, tmp_path, database_url, redis_url, free_port()) as service:
        links = await service.open_room(
            relay=mode == "relay",
            recorded=mode == "relay",
            # A minute and two seconds: the budget warning shows as soon as the call is live.
            budget_seconds=62 if mode == "direct" else None,
            customer=Participant("Carla", "es"),
            expert=Participant("Ed", "en"),
        )

        async def state(page: Page) -> Any:
            return await page.evaluate("() => ({...window.roomState})")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS + MEDIA_FLAGS)
            try:
                pages = []
                for link in (links.customer, links.expert):
                    context = await browser.new_context(viewport={"width": 390, "height": 844})
                    page = await context.new_page()
                    await page.goto(link)
                    pages.append(page)
                customer, expert = pages
                if mode == "relay":  # recorded: both are told before they can join
                    notice = customer.locator("#recorded-notice")
                    await notice.wait_for(state="visible")
                    assert "grab" in (await notice.inner_text()).lower()  # Spanish: "se graba"
                    assert await expert.locator("#recorded-notice").is_visible()
                for page in pages:
                    await page.locator("#join").click()
                for page in pages:
                    await page.wait_for_function(
                        "() => window.roomState.state === 'live' && window.roomState.remoteVideoFrames > 15",
                        timeout=30_000,
                    )
                    await page.wait_for_function("() => window.roomState.billedSeconds >= 2", timeout=15_000)
                assert (await state(customer))["mode"] == mode
                assert await customer.locator("#timer").inner_text() != "0:00"
                if mode == "direct":
                    await customer.locator("#banner").wait_for(state="visible", timeout=10_000)
                    # Ticks come every few seconds: the page's own timer moves in between.
                    shown = await customer.locator("#timer").inner_text()
                    await customer.wait_for_function(
                        f"() => document.getElementById('timer').textContent !== {shown!r}", timeout=2_500
                    )
                await customer.screenshot(path=str(tmp_path / f"room-{mode}-customer.png"))
                await expert.screenshot(path=str(tmp_path / f"room-{mode}-expert.png"))

                # Screen sharing swaps the outgoing video track in place: the other side keeps
                # receiving, now the screen (another picture size), with no new offer.
                room = service.app[GATEWAY].rooms[links.room_id]  # type: ignore[index]
                offers_before = room.offers_answered
                size_before = await expert.evaluate("() => document.getElementById('remote').videoWidth")
                await customer.locator("#share").click()
                await customer.wait_for_function(
                    "() => document.getElementById('share').getAttribute('aria-pressed') === 'true'",
                    timeout=10_000,
                )
                await expert.wait_for_function(
                    f"() => document.getElementById('remote').videoWidth !== {size_before}", timeout=15_000
                )
                frames = (await state(expert))["remoteVideoFrames"]
                await expert.wait_for_function(f"() => window.roomState.remoteVideoFrames > {frames + 10}")
                assert room.offers_answered == offers_before
                await expert.screenshot(path=str(tmp_path / f"room-{mode}-expert-sees-screen.png"))

                customer.on("dialog", lambda dialog: dialog.accept())
                await customer.locator("#hangup").click()
                for page in pages:
                    await page.wait_for_function("() => window.roomState.ended !== null", timeout=15_000)
                assert (await state(expert))["ended"] == "hangup"
            finally:
                await browser.close()

        engine = create_engine(service.settings.database)
        try:
            record = await SqlRoomBook(session_factory(engine)).get(links.room_id)
        finally:
            await engine.dispose()
        assert record is not None
        assert (record.state, record.end_reason) == (MeterState.ENDED, EndReason.HANGUP)
        assert record.billed_seconds >= 2
        if mode == "relay":
            assert record.recording is not None
            assert (service.settings.data_dir / record.recording).stat().st_size > 10_000
