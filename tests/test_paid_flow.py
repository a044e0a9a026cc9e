"""Paid sessions end to end: the real service, the web chat widget, aiortc peers in the room, a local
Stripe (tests/fakes/stripe_server.py) whose signed webhooks reach the service's own endpoint over HTTP,
the receipt pages, and `concierge ledger check` / `payments show` run as separate processes against the
same database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aiortc.mediastreams import AudioStreamTrack
from sqlalchemy import select, update

from concierge.database import create_engine
from concierge.lifecycle import State
from concierge.model import Channel, LedgerEntry, Session
from concierge.pricing import Pricing, PricingMode
from knowledge.i18n import money
from tests.conftest import free_port
from tests.fakes.stripe_server import FakeStripe
from tests.gateway_harness import wait_until
from tests.harness import (
    WebUser,
    add_listed_expert,
    app_sessions,
    button,
    link_button,
    refresh_matcher,
    running_service,
)
from video_gateway.client import ReplayedVideo, RoomClient, encode_vp8_loop

RATE = 150  # €1.50 a minute
COMMISSION = RATE * 20 // 100  # the default 20 %
HOLD = RATE * 60  # the default maximum of 60 minutes
PLATFORM_SECRET = "whsec_test_platform_endpoint_0123456789"
CONNECT_SECRET = "whsec_test_connect_endpoint_9876543210"
JOIN = "Join the video call"


@asynccontextmanager
async def service(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    embedder: Any,
    detector: Any,
    fake: FakeStripe | None,
) -> AsyncIterator[TestClient]:
    """The service on a known port (so links and Stripe's webhook endpoints can name it), with Stripe
    pointed at `fake` when given, else the default invoice provider."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"media_addresses": "127.0.0.1", "public_url": base}
    if fake is not None:
        fake.add_webhook(f"{base}/webhooks/stripe", PLATFORM_SECRET)
        fake.add_webhook(f"{base}/webhooks/stripe", CONNECT_SECRET, connect=True)
        env |= {
            "stripe_api_key": fake.api_key,
            "stripe_webhook_secret": f"{PLATFORM_SECRET} {CONNECT_SECRET}",
            "stripe_api_base": fake.base_url,
        }
    async with running_service(
        monkeypatch, tmp_path, database_url, embedder, detector, port=port, **env
    ) as client:
        yield client


async def per_minute_expert(client: TestClient) -> WebUser:
    """Tomás, €1.50 a minute, online in his own web chat tab."""
    tab = WebUser(client)
    await tab.connect()
    await tab.wait_welcome()
    assert tab.visitor is not None
    await add_listed_expert(
        app_sessions(client),
        "tomas",
        name="Tomás",
        headline="Home network and Wi-Fi troubleshooting",
        skills=["wifi", "router", "laptop networking"],
        categories=["computers"],
        languages=["en", "fr"],
        channel=Channel.WEB,
        user_id=tab.visitor,
        pricing=Pricing(PricingMode.PER_MINUTE, RATE, "EUR"),
    )
    await refresh_matcher(client, ["tomas"])
    return tab


ENGLISH = ("en-GB", "Can someone help? My wifi router keeps dropping the connection to my laptop", "Ask 1.")
FRENCH = (
    "fr-FR",
    "Quelqu'un peut m'aider ? Mon routeur wifi coupe sans arrêt la connexion avec mon ordinateur portable",
    "Demander à 1.",
)


async def customer_asks(client: TestClient, expert: WebUser, language: tuple[str, str, str]) -> WebUser:
    """A customer asks for Wi-Fi help (the conversation follows the request's language) and picks
    Tomás, who accepts."""
    locale, request, ask = language
    customer = WebUser(client, locale=locale)
    await customer.connect()
    await customer.wait_welcome()
    await customer.say(request)
    await customer.wait_for(lambda m: "2001-04-30" in m["text"])  # the age question, in any language
    await customer.say("30/04/2001")
    cards = await customer.wait_text("Home network and Wi-Fi troubleshooting")
    await customer.press(button(cards, ask))
    offer = await expert.wait_text("New request")
    assert "€1.50" in offer["text"]
    await expert.press(button(offer, "Accept"))
    return customer


async def the_session(client: TestClient) -> Session:
    async with app_sessions(client)() as db:
        session = await db.scalar(select(Session))
    assert session is not None
    return session


async def sessions_reply(user: WebUser, title: str) -> dict[str, Any]:
    """A fresh answer to /sessions (not an earlier one)."""
    after = user.since
    await user.say("/sessions")
    return await user.wait_for(lambda m: m["seq"] > after and title in m["text"])


def no_link(message: dict[str, Any], label_fragment: str) -> bool:
    return not any(label_fragment in b["label"] for row in message["buttons"] for b in row)


async def call(client: TestClient, links: list[str], seconds: int) -> None:
    """Both parties join their own link with real media, stay `seconds`, and the customer hangs up."""
    async with aiohttp.ClientSession() as http:
        loop = encode_vp8_loop(frames=10, keyframe_every=10)
        room = [
            RoomClient(
                http,
                str(client.make_url(urlsplit(link).path)),
                media=lambda: (AudioStreamTrack(), ReplayedVideo(loop)),
            )
            for link in links
        ]
        try:
            for participant in room:
                await participant.join()
                participant.start_reporting()
            assert [p.role for p in room] == ["customer", "expert"]
            await wait_until(
                lambda: any(t["billed_seconds"] >= seconds for t in room[0].seen.ticks), 20, f"{seconds} s"
            )
            await room[0].hangup()
            await wait_until(lambda: all(p.seen.ended for p in room), 10, "the end")
        finally:
            for participant in room:
                await participant.close()


async def concierge_cli(*args: str, database_url: str, tmp_path: Path) -> tuple[int, str, str]:
    """`concierge …` as its own process, on the service's database and data directory."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONCIERGE_")}
    env |= {"CONCIERGE_DATABASE_URL": database_url, "CONCIERGE_DATA_DIR": str(tmp_path / "var")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "concierge",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def ledger_check(database_url: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = await concierge_cli(
        "ledger", "check", "--json", database_url=database_url, tmp_path=tmp_path
    )
    assert out, err
    return code, json.loads(out)


async def test_a_per_minute_session_is_paid_held_captured_receipted_and_paid_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    fr = "fr"  # the customer reads French; Tomás reads English
    async with (
        FakeStripe() as fake,
        service(monkeypatch, tmp_path, database_url, use_embedder, detector, fake) as client,
    ):
        expert = await per_minute_expert(client)
        customer = await customer_asks(client, expert, FRENCH)

        # The customer gets the quote and a button to Stripe's hosted page for the hour's maximum;
        # the expert is told the customer is paying, and nobody has a room link yet.
        accepted = await customer.wait_text("Tomás a accepté votre demande")
        assert f"{money(RATE, 'EUR', fr)} par minute" in accepted["text"]
        assert money(HOLD, "EUR", fr) in accepted["text"]
        pay_url = link_button(accepted, f"Payer {money(HOLD, 'EUR', fr)}")
        assert pay_url.startswith(f"{fake.base_url}/checkout/pay/cs_")
        assert no_link(accepted, "Rejoindre")
        won = await expert.wait_text("You accepted")
        assert "The customer is paying now" in won["text"]
        assert no_link(won, JOIN)
        listed = await sessions_reply(customer, "Vos dernières sessions")
        assert "en attente de paiement" in listed["text"]
        assert link_button(listed, "Payer la session avec Tomás") == pay_url
        checkout = fake.checkout_sessions[pay_url.rsplit("/", 1)[-1]]
        assert checkout["amount_total"] == HOLD

        # The customer pays on Stripe's page: the signed webhooks reach the service; both get
        # their own room link.
        intent_id = await fake.pay(checkout["id"])
        assert intent_id is not None
        await fake.wait_delivered()
        assert [d.status for d in fake.deliveries if not 200 <= d.status < 300] == []
        paid = await customer.wait_text("Paiement reçu")
        has_paid = await expert.wait_text("Customer has paid.")  # web visitors give no name
        links = [link_button(paid, "Rejoindre l'appel vidéo"), link_button(has_paid, JOIN)]
        assert links[0] != links[1]
        assert fake.payment_intents[intent_id]["status"] == "requires_capture"

        # About three seconds in the room, then hang up: one started minute is charged.
        await call(client, links, 3)
        settled = await customer.wait_text("Votre session avec Tomás a coûté", timeout=15)
        assert money(RATE, "EUR", fr) in settled["text"]
        receipt_url = link_button(settled, "Reçu")
        statement = await expert.wait_text("Your session with Customer is settled", timeout=15)
        assert "€1.50 charged, your payout is €1.20 (commission €0.30)" in statement["text"]
        assert "finish setting up payouts" in statement["text"]
        statement_url = link_button(statement, "Payout statement")
        onboarding = link_button(statement, "Set up payouts")
        assert onboarding.startswith(f"{fake.base_url}/connect/onboard/acct_")

        intent = fake.payment_intents[intent_id]
        assert (intent["status"], intent["amount_received"]) == ("succeeded", RATE)
        assert [i["amount_received"] for i in fake.payment_intents.values()] == [RATE]
        assert [c.status for c in fake.calls_to(r"/capture$")] == [200]
        charge = fake.charges[intent["latest_charge"]]
        assert charge["amount_refunded"] == HOLD - RATE  # the rest of the hold released
        assert fake.transfers == {}  # nowhere to pay the expert yet
        session = await the_session(client)
        assert session.state is State.SETTLED
        assert session.billed_seconds >= 3

        # The receipt is a page in the customer's language with what the bot said was charged;
        # a link altered by one character shows nothing.
        async with aiohttp.ClientSession() as http:
            async with http.get(receipt_url) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                page = await response.text()
            assert '<html lang="fr">' in page
            assert "<h1>Reçu</h1>" in page
            assert f"<th>Facturé</th><td>{money(RATE, 'EUR', fr)}</td>" in page
            last = receipt_url[-1]
            forged = receipt_url[:-1] + ("A" if last != "A" else "B")
            async with http.get(forged) as response:
                assert response.status == 403
                assert session.id not in await response.text()
            async with http.get(statement_url) as response:  # the expert's, in English
                assert response.status == 200
                page = await response.text()
            assert "<th>Your payout</th><td>€1.20</td>" in page
            assert "<th>Not paid out yet</th><td>€1.20</td>" in page

        # The expert finishes Stripe onboarding: the share owed is transferred and he is told.
        account = urlsplit(onboarding).path.rsplit("/", 1)[-1]
        await fake.complete_onboarding(account)
        on_its_way = await expert.wait_text("is on its way", timeout=10)
        assert "€1.20" in on_its_way["text"]
        assert [(t["amount"], t["currency"], t["destination"]) for t in fake.transfers.values()] == [
            (RATE - COMMISSION, "eur", account)
        ]
        assert [d.status for d in fake.deliveries if not 200 <= d.status < 300] == []
        assert fake.unknown_routes == []
        assert fake.server_errors == []
        await customer.close()
        await expert.close()

    # The books, checked by the operator's command in its own process.
    code, report = await ledger_check(database_url, tmp_path)
    assert (code, report["ok"], report["violations"]) == (0, True, [])
    engine = create_engine(database_url)
    try:
        async with engine.begin() as db:
            row = (
                await db.execute(
                    select(LedgerEntry.id, LedgerEntry.transaction_id)
                    .where(LedgerEntry.session_id == session.id, LedgerEntry.kind == "charge")
                    .order_by(LedgerEntry.id)
                    .limit(1)
                )
            ).one()
            await db.execute(
                update(LedgerEntry).where(LedgerEntry.id == row.id).values(amount=LedgerEntry.amount + 1)
            )
    finally:
        await engine.dispose()
    code, report = await ledger_check(database_url, tmp_path)
    assert (code, report["ok"]) == (1, False)
    assert any(
        v.startswith(f"transaction {row.transaction_id}: does not balance") for v in report["violations"]
    )
    assert any(v.startswith(f"session {session.id}:") for v in report["violations"]), report


async def test_a_customer_who_never_pays_has_the_session_called_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    async with (
        FakeStripe() as fake,
        service(monkeypatch, tmp_path, database_url, use_embedder, detector, fake) as client,
    ):
        expert = await per_minute_expert(client)
        customer = await customer_asks(client, expert, ENGLISH)
        accepted = await customer.wait_text("Tomás accepted your request")
        pay_url = link_button(accepted, "Pay €90.00")
        listed = await sessions_reply(customer, "Your latest sessions")
        assert link_button(listed, "Pay for the session with Tomás") == pay_url

        fake.expire_session(pay_url.rsplit("/", 1)[-1])  # Stripe's page times out unpaid
        await fake.wait_delivered()
        assert [d.status for d in fake.deliveries if not 200 <= d.status < 300] == []
        await customer.wait_text("The payment page expired, so the session with Tomás is called off")
        await expert.wait_text("Customer did not pay in time, so the session is called off")
        listed = await sessions_reply(customer, "Your latest sessions")
        assert "expired" in listed["text"]
        assert no_link(listed, "Pay")
        assert (await the_session(client)).state is State.EXPIRED
        assert fake.payment_intents == {}  # nothing was ever charged or held
        await customer.close()
        await expert.close()
    code, report = await ledger_check(database_url, tmp_path)
    assert (code, report["ok"]) == (0, True)


async def test_without_stripe_a_paid_session_is_invoiced_and_receipted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    async with service(monkeypatch, tmp_path, database_url, use_embedder, detector, None) as client:
        expert = await per_minute_expert(client)
        customer = await customer_asks(client, expert, ENGLISH)

        # No card to hold: the session is ready at once, each with their room link.
        accepted = await customer.wait_text("Tomás accepted your request")
        assert "€1.50 per minute" in accepted["text"]
        assert "Your video room is ready" in accepted["text"]
        assert no_link(accepted, "Pay")
        won = await expert.wait_text("You accepted")
        links = [link_button(accepted, JOIN), link_button(won, JOIN)]

        await call(client, links, 3)
        settled = await customer.wait_text("Your session with Tomás cost €1.50", timeout=15)
        receipt_url = link_button(settled, "Receipt")
        statement = await expert.wait_text("Your session with Customer is settled", timeout=15)
        assert "€1.50 charged, your payout is €1.20 (commission €0.30)" in statement["text"]
        assert no_link(statement, "Set up payouts")  # invoices need no payout account
        async with aiohttp.ClientSession() as http, http.get(receipt_url) as response:
            assert response.status == 200
            page = await response.text()
        assert '<html lang="en">' in page
        assert "<th>Charged</th><td>€1.50</td>" in page
        session = await the_session(client)
        assert session.state is State.SETTLED

        # Money back, asked in the chat: the expert refunds half, both are told, the books follow.
        await customer.press(button(settled, "Ask for money back"))
        await customer.wait_text("What went wrong?")
        await customer.say("The sound kept cutting out.")
        await customer.wait_text("Your request is with Tomás")
        asked = await expert.wait_text("asks for their money back (€1.50)")
        assert "The sound kept cutting out." in asked["text"]
        await expert.press(button(asked, "Refund half"))
        await expert.wait_text("Done: €0.75 goes back")
        await customer.wait_text("€0.75 has been refunded", timeout=15)
        await customer.press(button(settled, "Ask for money back"))
        await customer.say("And the other half?")
        await customer.wait_text("You have already asked for money back")
        session = await the_session(client)
        assert session.state is State.REFUNDED
        await customer.close()
        await expert.close()

    code, report = await ledger_check(database_url, tmp_path)
    assert (code, report["ok"], report["violations"]) == (0, True, [])
    code, out, err = await concierge_cli(
        "payments", "show", session.id, "--json", database_url=database_url, tmp_path=tmp_path
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["state"] == "refunded"
    captures = [p for p in shown["payments"] if p["kind"] == "capture"]
    assert [(p["provider"], p["amount"], p["fee"], p["currency"]) for p in captures] == [
        ("invoice", RATE, COMMISSION, "EUR")
    ]
