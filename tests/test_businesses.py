"""Businesses managed by their admins from the chat, through the real service: the web chat for
the admins, the widget page, the report page over HTTP, and (in test_business_channels.py) the
Discord guild and a sponsored paid session."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from concierge.business_admins import BusinessAdmins
from concierge.businesses import create_business
from concierge.model import Business, BusinessAdmin, Expert, InviteCode, RosterScope
from tests.harness import WebUser, app_sessions, button, link_button, running_service
from tests.test_web_chat import networking_experts

GONE = "no longer available"


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> Any:
    async with running_service(
        monkeypatch, tmp_path, database_url, use_embedder, detector, messages_per_minute="200"
    ) as client:
        yield client


async def admin_of(client: Any, business_id: str) -> WebUser:
    """Someone the operator gave the admin code, in their own web chat tab."""
    code = await BusinessAdmins(app_sessions(client)).admin_code(business_id)
    admin = WebUser(client)
    await admin.connect()
    await admin.wait_welcome()
    await admin.say(f"/setup {code}")
    await admin.wait_text("You are now an admin of")
    return admin


async def reply(
    user: WebUser, fragment: str, send: str | None = None, press: str | None = None
) -> dict[str, Any]:
    """What the service answers to the next text or press (not an earlier message)."""
    after = user.since
    if send is not None:
        await user.say(send)
    if press is not None:
        await user.press(press)
    return await user.wait_for(lambda m: m["seq"] > after and fragment in m["text"])


async def business(client: Any, business_id: str) -> Business:
    async with app_sessions(client)() as db:
        found = await db.get(Business, business_id)
    assert found is not None
    return found


async def test_an_admin_sets_up_the_business_and_bad_values_change_nothing(service: Any) -> None:
    shop = await create_business(app_sessions(service), "Fixit Shop")
    stranger = WebUser(service)
    await stranger.connect()
    await stranger.wait_welcome()
    await reply(stranger, "not a business admin code", send="/setup 0000000000")
    await reply(stranger, "You do not manage a business", send="/budget")
    await reply(stranger, GONE, press="biz_set:colour")  # a forged press: nothing to manage

    admin = await admin_of(service, shop.id)
    menu = await admin.wait_text("Requests from its communities go")
    assert "to its own experts first, then to everyone" in menu["text"]
    async with app_sessions(service)() as db:
        admins = list(await db.scalars(select(BusinessAdmin.person_id)))
    assert len(admins) == 1

    await reply(admin, "#rrggbb", press=button(menu, "Colour"))
    for bad in ("red", "#12345", "#1234567", "#12345g", "#123456;background:url(x)"):
        await reply(admin, "That did not work", send=bad)
    await reply(admin, "Saved.", send="#0A7D4F")
    await reply(admin, "https://", press=button(menu, "Logo"))
    for bad in (
        "http://example.com/logo.png",
        "javascript:alert(1)",
        'https://x.example/a"onerror="x',
        "https://",
    ):
        await reply(admin, "That did not work", send=bad)
    await reply(admin, "Saved.", send="https://cdn.example.com/logo.png")
    await reply(admin, "greeting", press=button(menu, "Greeting"))
    await reply(admin, "Saved.", send="Welcome to Fixit! </script><b>Our repairers</b> answer fast.")
    await reply(admin, "name", press=button(menu, "Name"))
    await reply(admin, "That did not work", send="x" * 201)
    await reply(admin, "Saved.", send="Fixit <Shop>")
    await reply(admin, "per month", press=button(menu, "Monthly budget"))
    for bad in ("lots", "-5 EUR", "0 EUR", "12.345 EUR", "5 XYZ", "10000000000000 EUR"):
        await reply(admin, "That did not work", send=bad)
    menu = await reply(admin, "on, up to €150.50 a month", send="150.50 EUR")
    menu = await reply(admin, "only to its own experts", press=button(menu, "Own experts only"))

    saved = await business(service, shop.id)
    assert (saved.brand_colour, saved.logo_url, saved.name) == (
        "#0a7d4f",
        "https://cdn.example.com/logo.png",
        "Fixit <Shop>",
    )
    assert (saved.sponsors_sessions, saved.sponsorship_budget_amount, saved.sponsorship_currency) == (
        True,
        15050,
        "EUR",
    )
    assert saved.scope is RosterScope.ROSTER_ONLY

    spending = await reply(admin, "Spent €0.00 of €150.50 (0 %), €150.50 left", send="/budget")
    await reply(admin, "per month", press=button(spending, "Monthly budget"))
    await reply(admin, "€200.00", send="200 EUR")

    # A new setup code; a widget linked by the operator is listed, and unlinked by the admin.
    old_code = saved.setup_code
    coded = await reply(admin, "New setup code", press="biz_code:")
    assert old_code not in coded["text"]
    snippet = await reply(admin, "Put this on your website", press=button(menu, "Website widget"))
    key = snippet["text"].split('data-key="', 1)[1].split('"', 1)[0]
    linked = await reply(admin, "1 linked community", press="biz_communities:")
    assert "Website widget" in linked["text"]

    # The widget page for its key: name, colour and logo, all escaped; the greeting as text.
    async with aiohttp.ClientSession() as http, http.get(service.make_url(f"/chat?key={key}")) as response:
        assert response.status == 200
        page = await response.text()
    assert "<title>Fixit &lt;Shop&gt;</title>" in page
    assert "<style>:root{--brand:#0a7d4f}</style>" in page
    assert '<img class="logo" src="https://cdn.example.com/logo.png"' in page
    assert "</script><b>" not in page  # the greeting sits in the JSON config, its "</" escaped
    assert "<\\/script><b>Our repairers<\\/b>" in page
    async with aiohttp.ClientSession() as http, http.get(service.make_url("/chat")) as response:
        plain = await response.text()
    assert "--brand" not in plain
    assert "Fixit" not in plain

    # A customer on the widget who says /start reads the business's greeting.
    visitor = WebUser(service, key=key)
    await visitor.connect()
    await visitor.wait_welcome()
    await reply(visitor, "Fixit <Shop>: Welcome to Fixit!", send="/start")

    await reply(admin, "Unlinked", press=button(linked, "Unlink 1"))
    await reply(admin, "No group, server or website widget", press="biz_communities:")

    # A second admin with the same code; the first admin's menu still works.
    second = await admin_of(service, shop.id)
    await reply(second, "Fixit <Shop>", send="/setup")
    async with app_sessions(service)() as db:
        assert len(list(await db.scalars(select(BusinessAdmin.person_id)))) == 2


async def test_the_roster_lists_invites_and_removes_experts(service: Any) -> None:
    shop = await create_business(app_sessions(service), "Fixit Shop")
    await networking_experts(service, "net-market", "net-shop")
    async with app_sessions(service).begin() as db:
        expert = await db.get(Expert, "net-shop")
        assert expert is not None
        expert.business_id = shop.id
        expert.rating_count, expert.rating_total = 2, 9
    admin = await admin_of(service, shop.id)

    roster = await reply(admin, "Fixit Shop: 1 expert", send="/roster")
    assert "Expert 2 — online, ★ 4.5, 0 sessions this month" in roster["text"]
    assert "Expert 1" not in roster["text"]

    await reply(admin, "how many days", press=button(roster, "New invitation code"))
    for bad in ("five", "0 30", "5 0", "5", "101 30", "5 366"):
        await reply(admin, "That did not work", send=bad)
    invited = await reply(admin, "Valid for 5 experts until", send="5 30")
    async with app_sessions(service)() as db:
        invite = (await db.scalars(select(InviteCode))).one()
    assert (invite.business_id, invite.uses_left) == (shop.id, 5)
    assert f"{invite.code[:5]}-{invite.code[5:]}" in invited["text"]

    await reply(admin, "Removed from the roster", press=button(roster, "Remove Expert 2"))
    await reply(admin, "has no experts yet", send="/roster")
    async with app_sessions(service)() as db:
        removed = await db.get(Expert, "net-shop")
    assert removed is not None
    assert removed.business_id is None
    assert removed.published
    await reply(admin, GONE, press="biz_remove:net-market")  # not on this roster: nothing changes
    async with app_sessions(service)() as db:
        market = await db.get(Expert, "net-market")
    assert market is not None
    assert market.business_id is None


async def test_the_report_comes_as_a_message_and_a_signed_page(service: Any) -> None:
    shop = await create_business(app_sessions(service), "Fixit Shop")
    admin = await admin_of(service, shop.id)
    await reply(admin, "YYYY-MM", send="/report 2026-13")
    report = await reply(admin, "Fixit Shop — report for 2026-10", send="/report 2026-10")
    assert "Sessions: 0" in report["text"]
    url = link_button(report, "Open the report")
    assert url.endswith("/report?month=2026-10")
    path = url.split("://", 1)[1].split("/", 1)[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(service.make_url(f"/{path}")) as response:
            assert response.status == 200
            page = await response.text()
        assert html.escape("Fixit Shop — report for 2026-10") in page
        assert "<th>Minutes</th><td>0</td>" in page
        token = path.split("/")[1]
        business_id, language, signature = token.split(".")
        forged = [
            f"{'biz_someoneelse'}.{language}.{signature}",
            f"{business_id}.fr.{signature}",
            f"{business_id}.{language}.{signature[:-2]}AA",
            "nonsense",
        ]
        for bad in forged:
            async with http.get(service.make_url(f"/business/{bad}/report?month=2026-10")) as response:
                assert response.status == 403
                assert "Fixit" not in await response.text()
        async with http.get(service.make_url(f"/business/{token}/report?month=x")) as response:
            assert response.status == 400
