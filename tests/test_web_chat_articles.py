"""Self-help articles in the web chat: offered first, then the experts for the same request, or
closed when it solved the problem; a business's own articles inside its widget only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from concierge.articles import add_business_articles
from concierge.businesses import create_business, create_widget_key
from concierge.lifecycle import State
from concierge.model import ArticleOffer, ArticleOutcome, HelpRequest
from knowledge.articles import parse_article
from tests.harness import WebUser, app_sessions, button, running_service
from tests.test_web_chat import networking_experts

pytestmark = pytest.mark.parametrize("engine_name", ["sqlite"])

WIFI = "My laptop sees the wifi network but it won't connect to it"


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> Any:
    async with running_service(monkeypatch, tmp_path, database_url, use_embedder, detector) as client:
        yield client


async def asked(client: Any, text: str, *, key: str | None = None) -> tuple[WebUser, dict[str, Any]]:
    customer = WebUser(client, key=key)
    await customer.connect()
    await customer.wait_welcome()
    await customer.say(text)
    await customer.wait_text("date of birth")
    await customer.say("1990-05-05")
    reply = await customer.wait_for(lambda m: bool(_actions(m) & {"kb_expert", "pick"}))
    return customer, reply


def _actions(message: dict[str, Any]) -> set[str]:
    """What the message's buttons do: an article's, or expert cards'."""
    return {str(b.get("action", "")).partition(":")[0] for row in message["buttons"] for b in row}


async def offers(client: Any) -> list[ArticleOffer]:
    async with app_sessions(client)() as db:
        return list(await db.scalars(select(ArticleOffer)))


async def requests(client: Any) -> list[HelpRequest]:
    async with app_sessions(client)() as db:
        return list(await db.scalars(select(HelpRequest)))


async def test_an_article_comes_first_and_still_want_shows_experts_for_the_same_request(service: Any) -> None:
    await networking_experts(service, "net-1")
    customer, article = await asked(service, WIFI)
    assert "This might solve it" in article["text"]
    assert "My laptop sees the Wi-Fi but will not connect" in article["text"]  # the title
    assert "Restart the router" in article["text"]  # and the steps
    [offer] = await offers(service)
    assert (offer.article_id, offer.outcome, offer.language) == (
        "wifi-laptop-cannot-connect",
        ArticleOutcome.SHOWN,
        "en",
    )

    await customer.press(button(article, "Still want an expert"))
    cards = await customer.wait_text("I found 1 expert")
    assert "Expert 1" in cards["text"]
    [request] = await requests(service)  # the same request, not typed again
    assert request.text == WIFI
    assert request.status is State.OPEN
    [offer] = await offers(service)
    assert offer.outcome is ArticleOutcome.STILL_WANT

    await customer.press(button(article, "Still want an expert"))  # once per request
    await customer.wait_text("no longer available")
    await customer.press(button(cards, "Expert 1"))
    await customer.wait_text("I have asked Expert 1")


async def test_that_solved_it_closes_the_request_and_is_recorded(service: Any) -> None:
    customer, article = await asked(service, "Mon imprimante affiche hors ligne et n'imprime plus rien")
    assert "Ceci pourrait résoudre le problème" in article["text"]  # in the person's language
    assert "L'imprimante indique qu'elle est hors ligne" in article["text"]
    await customer.press(button(article, "C'est résolu"))
    await customer.wait_text("Ravi que cela ait aidé")
    [offer] = await offers(service)
    assert offer.article_id == "printer-offline"
    assert (offer.outcome, offer.language) == (ArticleOutcome.SOLVED, "fr")
    assert offer.answered_at is not None
    [request] = await requests(service)
    assert request.status is State.CANCELLED

    await customer.press(button(article, "Je veux quand même un expert"))  # too late now
    await customer.wait_text("n'est plus disponible")
    assert (await offers(service))[0].outcome is ArticleOutcome.SOLVED


async def test_requests_for_a_person_or_without_a_close_article_go_straight_to_experts(service: Any) -> None:
    await networking_experts(service, "net-1")
    _customer, cards = await asked(service, "Can someone help me configure VLANs on my Ubiquiti switch?")
    assert "I found 1 expert" in cards["text"]
    _other, cards = await asked(service, "I need someone to help me: my laptop won't connect to the wifi")
    assert "I found 1 expert" in cards["text"]
    assert await offers(service) == []


async def test_writing_again_instead_of_answering_the_article_asks_afresh(service: Any) -> None:
    await networking_experts(service, "net-1")
    customer, article = await asked(service, WIFI)
    assert "This might solve it" in article["text"]
    await customer.say("Can someone help me set up a VPN on my home router?")
    await customer.wait_text("I found 1 expert")
    statuses = sorted((r.text, r.status.value) for r in await requests(service))
    assert statuses == [
        ("Can someone help me set up a VPN on my home router?", "open"),
        (WIFI, "cancelled"),
    ]


@pytest.fixture
async def cafe(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    use_embedder: Any,
    detector: Any,
    sessions: Any,
) -> Any:
    """A café whose widget carries its own Wi-Fi article, added before the service starts."""
    shop = await create_business(sessions, "Café Lumière")
    key = await create_widget_key(sessions, shop.id)
    body = (
        "Our guest Wi-Fi is called CafeLumiere-Guests. The password is printed at the bottom of your "
        "receipt and changes every day. Open the network list, choose CafeLumiere-Guests, type the "
        "password and accept the terms page that opens in your browser. If the page does not open, "
        "visit any website without https. Still no luck? Ask at the counter: we restart the hotspot."
    )
    article = parse_article(
        {
            "id": "cafe-wifi",
            "category": "computers",
            "texts": {"en": {"title": "My laptop will not connect to the café Wi-Fi", "body": body}},
        },
        all_languages=False,
        business_id=shop.id,
    )
    await add_business_articles(sessions, shop.id, [article])
    async with running_service(monkeypatch, tmp_path, database_url, use_embedder, detector) as client:
        yield client, key


async def test_a_business_article_is_offered_only_inside_its_own_widget(cafe: Any) -> None:
    client, key = cafe
    text = "My laptop won't connect to the wifi in the café"
    _inside, article = await asked(client, text, key=key)
    assert "CafeLumiere-Guests" in article["text"]
    _outside, shared = await asked(client, text)
    assert "This might solve it" in shared["text"]
    assert "CafeLumiere-Guests" not in shared["text"]
    by_request = {o.request_id: o for o in await offers(client)}
    assert sorted((o.article_id, o.business_id is not None) for o in by_request.values()) == [
        ("cafe-wifi", True),
        ("wifi-laptop-cannot-connect", False),
    ]
