"""Trust and safety through the real web widget (and Telegram): hidden contact details, reports,
birth date reviews, mutes, community limits, the health disclaimer and the minors' notice;
operators act with the real `concierge` command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from concierge.invites import create_invite
from concierge.model import Channel, ChannelIdentity, Person, Session
from concierge.transitions import Lifecycle
from tests.fakes.telegram_server import FakeTelegram
from tests.harness import WebUser, add_listed_expert, app_sessions, button, refresh_matcher, running_service
from tests.test_paid_flow import concierge_cli

pytestmark = pytest.mark.parametrize("engine_name", ["sqlite"])

HIDDEN = "[contact details hidden]"


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> AsyncIterator[Any]:
    async with running_service(
        monkeypatch,
        tmp_path,
        database_url,
        use_embedder,
        detector,
        offer_timeout_seconds="5",
        messages_per_minute="12",
        mute_strikes="1",
        community_messages_per_minute="5",
        article_threshold="1",  # these requests are about safety: no self-help article first
    ) as client:
        yield client


async def cli(service: Any, tmp_path: Path, database_url: str, *args: str) -> Any:
    code, out, err = await concierge_cli(*args, database_url=database_url, tmp_path=tmp_path)
    assert code == 0, err
    return json.loads(out) if "--json" in args else out


async def tab(service: Any, locale: str = "en-GB", key: str | None = None) -> WebUser:
    user = WebUser(service, locale=locale, key=key)
    await user.connect()
    await user.wait_welcome()
    return user


async def web_expert(
    service: Any,
    expert_id: str,
    *,
    categories: list[str] | None = None,
    languages: list[str] | None = None,
    locale: str = "en",
    headline: str = "Wi-Fi and home network help",
) -> WebUser:
    expert = await tab(service, locale=f"{locale}-XX")
    assert expert.visitor is not None
    await add_listed_expert(
        app_sessions(service),
        expert_id,
        name=f"Expert {expert_id}",
        headline=headline,
        skills=["wifi", "router", "laptop networking"],
        categories=categories or ["computers"],
        languages=languages or ["en"],
        channel=Channel.WEB,
        user_id=expert.visitor,
        locale=locale,
    )
    await refresh_matcher(service, [expert_id])
    return expert


async def person_of(service: Any, user: WebUser) -> str:
    async with app_sessions(service)() as db:
        person_id = await db.scalar(
            select(ChannelIdentity.person_id).where(ChannelIdentity.external_id == user.visitor)
        )
    assert person_id is not None
    return person_id


def after(user: WebUser, fragment: str) -> Any:
    """A wait for a message containing `fragment` that arrives from now on."""
    seen = len(user.messages)
    return user.wait_for(lambda m: fragment in m["text"] and user.messages.index(m) >= seen)


async def quiet(user: WebUser, seconds: float = 1.0) -> None:
    seen = len(user.messages)
    await asyncio.sleep(seconds)
    assert user.messages[seen:] == [], [m["text"] for m in user.messages[seen:]]


# ---------------------------------------------------------------------- contact details


async def test_the_expert_sees_the_request_with_contact_details_hidden(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    expert = await web_expert(service, "net-1")
    customer = await tab(service)
    await customer.say(
        "My wifi router keeps dropping, call me on +44 7700 900123 or mail me at sam@example.com"
    )
    await customer.wait_text("date of birth")
    await customer.say("1990-01-01")
    cards = await customer.wait_text("Wi-Fi and home network help")
    await customer.press(button(cards, "Whoever answers first"))
    offer = await expert.wait_text("New request")
    assert f"call me on {HIDDEN} or mail me at {HIDDEN}" in offer["text"]
    assert "7700" not in offer["text"]
    assert "sam@example.com" not in offer["text"]

    flags = await cli(service, tmp_path, database_url, "flags", "list", "--json")
    assert [(f["place"], sorted(f["kinds"])) for f in flags] == [("request", ["email", "phone"])]
    assert "+44 7700 900123" in flags[0]["original"]
    assert flags[0]["person"] == await person_of(service, customer)


async def test_a_telegram_expert_sees_a_french_request_with_contact_details_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    async with (
        FakeTelegram() as telegram,
        running_service(
            monkeypatch,
            tmp_path,
            database_url,
            use_embedder,
            detector,
            telegram_token=telegram.token,
            telegram_api_url=telegram.base_url,
            article_threshold="1",  # about masking: no self-help article first
        ) as service,
    ):
        telegram.user(2001, "Théo", language_code="fr")
        await add_listed_expert(
            app_sessions(service),
            "net-theo",
            name="Théo",
            headline="Dépannage Wi-Fi et réseau domestique",
            skills=["wifi", "routeur", "réseau"],
            categories=["computers"],
            languages=["fr"],
            channel=Channel.TELEGRAM,
            user_id="2001",
            locale="fr",
        )
        await refresh_matcher(service, ["net-theo"])
        customer = await tab(service, locale="fr-FR")
        await customer.say(
            "Mon wifi ne marche plus, appelez-moi au 06 12 34 56 78 ou écrivez à jean arobase orange point fr"
        )
        await customer.wait_text("date de naissance")
        await customer.say("1990-01-01")
        cards = await customer.wait_text("Dépannage Wi-Fi")
        await customer.press(button(cards, "Le premier qui répond"))
        offer = await telegram.wait_for(lambda m: m["chat"]["id"] == 2001 and "Nouvelle demande" in m["text"])
        assert offer["text"].count("[coordonnées masquées]") == 2
        assert "06 12" not in offer["text"]
        assert "arobase" not in offer["text"]


async def test_listing_words_are_hidden_and_health_listings_carry_the_disclaimer(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    sessions = app_sessions(service)
    invite = await create_invite(sessions)
    expert = await tab(service)
    await expert.say(f"/expert {invite.code}")
    await expert.wait_text("date of birth")
    await expert.say("1985-03-14")
    await expert.wait_text("the name customers will see")
    await expert.say("Hana")
    await expert.wait_text("Step 1")
    await expert.say("Nutrition coaching, WhatsApp me on +49 151 23456789")
    await expert.wait_text("Step 2")
    await expert.say("Plans that fit your week. Pay me at paypal.me/hanafit to book")
    categories = await expert.wait_text("Step 3")
    await expert.press(button(categories, "Health"))
    await expert.press("cat:done")
    await expert.wait_text("Step 4")

    await expert.say("/profile")
    profile = await expert.wait_text("Age check")
    assert f"Nutrition coaching, WhatsApp me on {HIDDEN}" in profile["text"]
    assert "23456789" not in profile["text"]
    assert "paypal.me" not in profile["text"]
    assert "not medical care" in profile["text"]  # the health disclaimer
    flags = await cli(service, tmp_path, database_url, "flags", "list", "--json")
    assert sorted(f["place"] for f in flags) == ["listing.bio", "listing.headline"]


async def test_health_experts_cards_carry_the_disclaimer_in_the_customers_language(service: Any) -> None:
    expert = await web_expert(
        service,
        "health-1",
        categories=["health"],
        languages=["en", "es"],
        headline="Sleep and stress coaching",
    )
    customer = await tab(service, locale="es-ES")
    await customer.say("Necesito ayuda para dormir mejor, tengo mucho estrés")
    await customer.wait_text("fecha de nacimiento")
    await customer.say("1990-01-01")
    cards = await customer.wait_text("Sleep and stress coaching")
    assert "no atención médica" in cards["text"]
    # An adult's health session is not recorded: nothing is recorded for quality, ever.
    await customer.press(button(cards, "Quien responda primero"))
    offer = await expert.wait_text("New request")
    await expert.press(button(offer, "Accept"))
    ready = await customer.wait_text("sala de vídeo")
    assert "se grabará" not in ready["text"]
    async with app_sessions(service)() as db:
        session = (await db.scalars(select(Session))).one()
    assert session.recorded is False


# ---------------------------------------------------------------------- reports


async def ended_session(service: Any, customer_id: str, expert_id: str) -> str:
    lifecycle = Lifecycle(app_sessions(service))
    request = await lifecycle.open_request(customer_id, "my printer is offline")
    await lifecycle.offer(request.id, [(expert_id, 1.0)])
    session = await lifecycle.claim(request.id, expert_id, commission_percent=Decimal(20))
    await lifecycle.confirm_free(session.id)
    await lifecycle.go_live(session.id)
    await lifecycle.end(session.id, 0)
    return session.id


async def test_a_customer_reports_the_expert_and_an_upheld_report_mutes_them(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    expert = await web_expert(service, "net-1")
    customer = await tab(service)
    await customer.say("/profile")
    await customer.wait_text("Age check")
    customer_id = await person_of(service, customer)
    session_id = await ended_session(service, customer_id, "net-1")

    await customer.say("/sessions")
    listed = await customer.wait_text("Your latest sessions")
    assert button(listed, "Report Expert net-1") == f"report:{session_id}"
    await customer.press(f"report:{session_id}")
    await customer.wait_text("What happened with Expert net-1?")
    await customer.say("rude")  # too short
    await customer.wait_text("10 to 1000 characters")
    await customer.press(f"report:{session_id}")
    asked = after(customer, "What happened")
    await asked
    await customer.say("He insulted me and asked me to pay him outside the platform.")
    await customer.wait_text("Your report is with our team")
    await customer.press(f"report:{session_id}")
    await customer.wait_text("already reported this session")
    await customer.press("report:ses_forged")
    await customer.wait_text("no longer available")
    await quiet(expert, 0.5)  # the reported expert is told nothing

    reports = await cli(service, tmp_path, database_url, "reports", "list", "--json")
    assert len(reports) == 1
    report = reports[0]
    assert report["session"] == session_id
    assert report["reporter"] == customer_id
    shown = json.loads(await cli(service, tmp_path, database_url, "reports", "show", report["id"]))
    assert shown["facts"]["session"]["billed_seconds"] == 0
    assert shown["facts"]["session"]["ended_at"] is not None
    assert shown["facts"]["session"]["recorded"] is False
    assert [e["to"] for e in shown["facts"]["events"]][-1] == "ended"

    out = await cli(
        service, tmp_path, database_url, "reports", "close", report["id"], "--note", "confirmed", "--uphold"
    )
    assert "muted until" in out
    assert await cli(service, tmp_path, database_url, "reports", "list", "--json") == []
    await expert.say("/help")
    told = await expert.wait_text("You are muted until")
    assert "(decided by our team)" in told["text"]
    await expert.say("/help")
    await quiet(expert)  # told once, then silence


# ---------------------------------------------------------------------- birth dates


async def test_a_birth_date_change_across_a_gate_waits_for_an_operator(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    user = await tab(service)
    await user.say("I need help with my laptop wifi")
    await user.wait_text("date of birth")
    await user.say("1990-01-01")
    await user.say("/birthdate 1991-02-02")  # a typo, same gate
    await user.wait_text("Your date of birth is corrected")
    await user.say("/birthdate")
    await user.wait_text("/birthdate 2001-04-30")
    minor = f"{date.today().year - 15}-06-01"
    await user.say(f"/birthdate {minor}")
    pending = await user.wait_text("our team checks it first")
    await user.say("/profile")
    await user.wait_text("Age check: adult")  # nothing changed yet

    reviews = await cli(service, tmp_path, database_url, "people", "reviews", "list", "--json")
    assert [(r["previous"], r["stated"]) for r in reviews] == [("1991-02-02", minor)]
    assert reviews[0]["id"] in pending["text"]
    out = await cli(service, tmp_path, database_url, "people", "reviews", "approve", reviews[0]["id"])
    assert "age check now: minor" in out
    await user.say("/profile")
    await user.wait_text("Age check: under 18")


async def test_a_refused_child_cannot_restate_their_way_past_the_gate(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    child = await tab(service)
    await child.say("help with homework")
    await child.wait_text("date of birth")
    await child.say(f"{date.today().year - 10}-01-01")
    await child.wait_text("at least 13")
    await child.say("/birthdate 1990-01-01")
    await child.wait_text("our team checks it first")
    refused = after(child, "at least 13")
    await child.say("help with homework")
    await refused
    reviews = await cli(service, tmp_path, database_url, "people", "reviews", "list", "--json")
    assert [(r["previous"], r["stated"]) for r in reviews] == [(None, "1990-01-01")]
    await cli(
        service, tmp_path, database_url, "people", "reviews", "refuse", reviews[0]["id"], "--note", "no"
    )
    async with app_sessions(service)() as db:
        person = await db.get(Person, await person_of(service, child))
        assert person is not None
        assert person.birth_date is None
        assert person.refused_until is not None


# ---------------------------------------------------------------------- mutes and limits


async def test_abuse_mutes_everywhere_until_an_operator_lifts_it(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    user = await tab(service, locale="de-DE")
    await user.say("/profile")
    await user.wait_text("Altersprüfung")
    await user.say("Fick dich, du Idiot")
    told = await user.wait_text("stummgeschaltet")
    assert "beleidigende oder bedrohliche Worte" in told["text"]
    await user.say("/help")
    await quiet(user)
    muted = await cli(service, tmp_path, database_url, "people", "muted", "--json")
    person_id = await person_of(service, user)
    assert [(m["person"], m["reason"]) for m in muted] == [(person_id, "abuse")]
    await cli(service, tmp_path, database_url, "people", "unmute", person_id)
    await user.say("/help")
    await user.wait_text("Schreiben Sie, wobei Sie Hilfe brauchen")


async def test_flooding_past_the_limit_mutes_the_person(
    service: Any, tmp_path: Path, database_url: str
) -> None:
    user = await tab(service)
    for _ in range(13):  # the limit is 12 a minute; one strike mutes in this service
        await user.say("/help")
    await user.wait_text("sending messages very quickly")
    person_id = await person_of(service, user)
    for _ in range(50):
        muted = await cli(service, tmp_path, database_url, "people", "muted", "--json")
        if muted:
            break
    assert [(m["person"], m["reason"]) for m in muted] == [(person_id, "flooding")]


async def test_a_community_past_its_limit_is_told_to_wait(service: Any) -> None:
    from concierge.businesses import create_business, create_widget_key

    sessions = app_sessions(service)
    shop = await create_business(sessions, "Fixit Shop")
    key = await create_widget_key(sessions, shop.id)
    visitors = [await tab(service, key=key) for _ in range(3)]
    for visitor in visitors[:2]:
        for _ in range(2):
            await visitor.say("/help")
        await visitor.wait_for(lambda m: m["text"].startswith("Write what you need") and m["seq"] == 2)
    await visitors[2].say("/help")
    await visitors[2].wait_text("Write what you need")
    await visitors[2].say("/help")  # the community's sixth message this minute
    await visitors[2].wait_text("This community is sending me a lot of messages")
    outsider = await tab(service)  # no widget key: not that community
    await outsider.say("/help")
    await outsider.wait_text("Write what you need")


# ---------------------------------------------------------------------- minors


async def test_both_parties_are_told_in_their_own_language_that_a_minors_session_is_recorded(
    service: Any,
) -> None:
    expert = await web_expert(service, "net-de", languages=["de", "fr"], locale="de")
    teen = await tab(service, locale="fr-FR")
    await teen.say("Mon wifi ne marche plus sur mon ordinateur portable")
    await teen.wait_text("date de naissance")
    await teen.say(f"{date.today().year - 15}-01-01")
    await teen.wait_text("enregistrées")
    cards = await teen.wait_text("Wi-Fi and home network help")
    await teen.press(button(cards, "Le premier qui répond"))
    offer = await expert.wait_text("Neue Anfrage")
    await expert.press(button(offer, "Annehmen"))
    await teen.wait_text("Cet appel sera enregistré")
    await expert.wait_text("Dieser Anruf wird aufgezeichnet")
