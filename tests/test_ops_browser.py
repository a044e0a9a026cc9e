"""The operator console in a real headless Chromium (Debian's): log in, the live view, a
session's page, the charts; the strict Content-Security-Policy must not block anything the
pages use. Screenshots are written to var/test-artifacts/ops/ (printed; ignored by git)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from concierge.model import utcnow
from tests.browser import CHROMIUM, FLAGS, needs_chromium
from tests.ops_console import PASSWORD, Seeder, add_operator, console, sessions_of

pytestmark = [needs_chromium, pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "ops"


async def test_an_operator_logs_in_and_reads_the_live_view_a_session_and_the_charts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {ARTIFACTS}")
    async with console(monkeypatch, tmp_path, database_url, redis_url) as client:
        await add_operator(client)
        seeder = Seeder(sessions_of(client))
        for hours in (30, 26, 5):
            await seeder.settled(utcnow() - timedelta(hours=hours), minutes=hours // 2)
        live = await seeder.live(utcnow() - timedelta(minutes=7))
        base = str(client.make_url("/ops/")).rstrip("/")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await (await browser.new_context(locale="en-GB")).new_page()
                blocked: list[str] = []
                page.on(
                    "console",
                    lambda message: (
                        blocked.append(message.text) if "Content Security Policy" in message.text else None
                    ),
                )
                await page.goto(f"{base}/")
                assert "/ops/login" in page.url  # not logged in: sent to the login page
                await page.fill("input[name=name]", "alice")
                await page.fill("input[name=password]", "not the password")
                await page.click("button[type=submit]")
                await page.get_by_role("alert").wait_for()
                assert "Wrong operator name or password" in await page.get_by_role("alert").inner_text()
                await page.fill("input[name=name]", "alice")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await page.get_by_role("heading", name="Live", exact=True).wait_for()
                # The style sheet loaded under the CSP: the navigation bar is dark.
                colour = await page.eval_on_selector("nav", "n => getComputedStyle(n).backgroundColor")
                assert colour == "rgb(34, 49, 63)"
                assert "Wes" in await page.locator("main").inner_text()
                await page.screenshot(path=ARTIFACTS / "live.png", full_page=True)

                await page.click(f"a[href='/ops/sessions/{live}']")
                await page.get_by_role("heading", name=f"Session {live}").wait_for()
                assert "go_live" in await page.locator("main").inner_text()
                await page.screenshot(path=ARTIFACTS / "session.png", full_page=True)

                await page.click("nav a[href='/ops/charts']")
                await page.get_by_role("heading", name="Charts", exact=True).wait_for()
                await page.select_option("select[name=days]", "7")
                await page.click("form[action='/ops/charts'] button")
                await page.wait_for_url("**/ops/charts?days=7*")
                chart = page.locator("figure#chart-sessions-per-day svg")
                assert await chart.is_visible()
                assert (await chart.bounding_box() or {}).get("height", 0) > 100
                assert await page.locator("figure#chart-sessions-per-day rect").count() >= 2
                await page.screenshot(path=ARTIFACTS / "charts.png", full_page=True)

                await page.click("nav button[type=submit]")  # log out
                await page.wait_for_url("**/ops/login")
                await page.goto(f"{base}/charts")
                assert "/ops/login" in page.url
                assert blocked == []
            finally:
                await browser.close()
    for name in ("live.png", "session.png", "charts.png"):
        assert (ARTIFACTS / name).stat().st_size > 5000
