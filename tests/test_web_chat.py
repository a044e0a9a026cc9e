"""The web widget end to end: a customer tab and an expert tab over real WebSockets."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack
from sqlalchemy import select

from concierge.invites import create_invite
from concierge.lifecycle import State
from concierge.model import Channel, ChannelIdentity, Expert, HelpRequest, LifecycleEvent, Person, Session
from concierge.transitions import Lifecycle
from tests.gateway_harness import wait_until
from tests.harness import (
    WebUser,
    add_listed_expert,
    app_sessions,
    button,
    dispatcher_of,
    link_button,
    refresh_matcher,
    running_service,
)
from video_gateway.client import ReplayedVideo, RoomClient, encode_vp8_loop


async def test_customer_and_expert_complete_the_flow_in_two_tabs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> None:
    async with running_service(
        monkeypatch,
        tmp_path,
        database_url,
        use_embedder,
        detector,
        media_addresses="127.0.0.1",
        messages_per_minute="60",  # the expert's whole setup, call and review in one minute
    ) as client:
        sessions = app_sessions(client)
        invite = await create_invite(sessions)

        expert = WebUser(client)
        await expert.connect()
        await expert.wait_welcome()
        await expert.say(f"/expert {invite.code}")
        await expert.wait_text("date of birth")
        await expert.say("1985-03-14")
        await expert.wait_text("the name customers will see")  # the web cannot tell us
        await expert.say("W" * 81)
        await expert.wait_text("That did not work: name: 1–80 characters")
        await expert.say("Wes")
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
        await customer.say("Can someone help? My wifi router keeps dropping the connection to my laptop")
        await customer.wait_text("date of birth")
        await customer.say("30/04/2001")
        cards = await customer.wait_text("Home network and Wi-Fi troubleshooting")
        assert "available now" in cards["text"]
        assert "1. Wes – Home network" in cards["text"]
        await customer.press(button(cards, "Ask 1."))
        await customer.wait_text("I have asked")

        offer = await expert.wait_text("New request")
        assert "My wifi router" in offer["text"]
        assert "free" in offer["text"]
        await expert.press(button(offer, "Accept"))
        won = await expert.wait_text("You accepted")
        accepted = await customer.wait_text("Wes accepted your request")
        assert "This session is free." in accepted["text"]
        assert "Your video room is ready" in accepted["text"]
        assert "recorded" not in accepted["text"]  # an adult customer

        # Each gets their own link to the same room; both join with real media; hang-up ends it.
        links = [link_button(message, "Join the video call") for message in (accepted, won)]
        assert links[0] != links[1]
        await customer.say("/sessions")
        listed = await customer.wait_text("ready to start")
        assert link_button(listed, "Join the video call with Wes") == links[0]  # the link again
        assert all("/r/" in link for link in links)
        paths = [urlsplit(link).path for link in links]
        async with aiohttp.ClientSession() as http:
            loop = encode_vp8_loop(frames=10, keyframe_every=10)
            room = [
                RoomClient(
                    http, str(client.make_url(path)), media=lambda: (AudioStreamTrack(), ReplayedVideo(loop))
                )
                for path in paths
            ]
            try:
                for participant in room:
                    await participant.join()
                    participant.start_reporting()
                assert [p.seen.welcome["role"] for p in room if p.seen.welcome] == ["customer", "expert"]
                await wait_until(lambda: any(t["billed_seconds"] >= 2 for t in room[0].seen.ticks), 20, "2 s")
                await room[0].hangup()
                await wait_until(lambda: all(p.seen.ended for p in room), 10, "the end")
            finally:
                for participant in room:
                    await participant.close()

        async def session_state() -> tuple[State, int, str | None]:
            async with sessions() as db:
                session = await db.scalar(select(Session))
                assert session is not None
                return session.state, session.billed_seconds, session.room_id

        deadline = asyncio.get_running_loop().time() + 10
        # Ended, then settled by the payments sweep (a free session: nothing to charge).
        while (state := await session_state())[0] is not State.SETTLED:
            assert asyncio.get_running_loop().time() < deadline, state
            await asyncio.sleep(0.1)
        assert state[1] >= 2  # billed seconds
        assert state[2] is not None  # the room it ran in

        # Both are asked to rate; reviews are double-blind, then the expert answers the customer's.
        ask = await customer.wait_text("How was your session with Wes")
        await customer.press(button(ask, "★★★★"))
        await customer.wait_text("Add a few words")
        await customer.say("Wes fixed my Wi-Fi in minutes.")
        await customer.wait_text("your review is saved")
        await expert.say("/reviews")
        await expert.wait_text("There are no reviews of you yet")  # not before the expert has rated
        asked = await expert.wait_text("How was your session with")
        await expert.press(button(asked, "★★★★★"))
        skip = await expert.wait_text("Add a few words")
        await expert.press(button(skip, "Skip"))
        await expert.wait_text("your review is saved")
        await expert.say("/reviews")
        listed = await expert.wait_text("Reviews of you")
        assert "★★★★ from" in listed["text"]
        assert "Wes fixed my Wi-Fi in minutes." in listed["text"]
        await expert.press(button(listed, "Answer"))
        await expert.wait_text("Write your answer")
        await expert.say("Glad it works again!")
        await expert.wait_text("Your answer is published")
        async with sessions() as db:
            ratings = list(await db.execute(select(Expert.rating_count, Expert.rating_total)))
        assert ratings == [(1, 4)]  # the customer's four stars, published once both had rated
        await customer.close()
        await expert.close()


SQLITE = pytest.mark.parametrize("engine_name", ["sqlite"])


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> Any:
    async with running_service(
        monkeypatch, tmp_path, database_url, use_embedder, detector, offer_timeout_seconds="5"
    ) as client:
        yield client


async def adult(client: Any, locale: str = "en-GB") -> WebUser:
    user = WebUser(client, locale=locale)
    await user.connect()
    await user.wait_welcome()
    await user.say("/profile")
    await user.wait_text("Age check")
    return user


async def stated(user: WebUser, born: str) -> None:
    await user.say("I need someone to help with my laptop wifi")
    await user.wait_text("date of birth")
    await user.say(born)


async def networking_experts(client: Any, *ids: str, online: bool = True) -> list[WebUser]:
    """Experts on the web console, each a connected tab."""
    tabs = []
    for number, expert_id in enumerate(ids, start=1):
        tab = WebUser(client)
        await tab.connect()
        await tab.wait_welcome()
        assert tab.visitor is not None
        await add_listed_expert(
            app_sessions(client),
            expert_id,
            name=f"Expert {number}",
            headline=f"Wi-Fi and home network help #{number}",
            skills=["wifi", "router", "laptop networking"],
            categories=["computers"],
            languages=["en"],
            channel=Channel.WEB,
            user_id=tab.visitor,
            online=online,
        )
        tabs.append(tab)
    await refresh_matcher(client, list(ids))
    return tabs


@SQLITE
async def test_under_13_is_refused_and_stays_refused(service: Any) -> None:
    child = WebUser(service)
    await child.connect()
    await child.wait_welcome()
    await stated(child, "2020-01-01")
    await child.wait_text("at least 13")
    await child.say("please help me with homework")
    await child.wait_for(lambda m: "at least 13" in m["text"] and m["seq"] == 3)
    async with app_sessions(service)() as db:
        person = (await db.scalars(select(Person))).one()
        assert person.birth_date is None
        assert person.display_name == ""
        assert person.refused_until is not None
        assert (await db.scalars(select(HelpRequest))).all() == []
    await child.close()


@SQLITE
async def test_minor_is_told_sessions_are_recorded(service: Any) -> None:
    await networking_experts(service, "net-1")
    teen = WebUser(service)
    await teen.connect()
    await teen.wait_welcome()
    born = f"{date.today().year - 15}-01-01"
    await stated(teen, born)
    await teen.wait_text("recorded")
    await teen.wait_text("Wi-Fi and home network help")  # the pending request goes on


@SQLITE
async def test_bad_input_gets_clear_answers_and_changes_nothing(service: Any) -> None:
    user = WebUser(service)
    await user.connect()
    await user.wait_welcome()
    await user.say("/frobnicate")
    await user.wait_text("I don't know /frobnicate")
    await user.say("x" * 1500)
    await user.wait_text("too long")
    await user.say("/expert NOTACODE")
    await user.wait_text("date of birth")
    await user.say("yesterday-ish")
    await user.wait_text("could not read that date")
    await user.say("1990-02-02")
    await user.wait_text("invitation code does not exist")
    await user.press("pick:req_forged:0")
    await user.wait_text("no longer available")
    assert user.socket is not None
    await user.socket.send_str("{not json")
    await user.socket.send_json({"type": "dance"})
    assert await user.wait_errors(2) == [
        "malformed frame: expected a JSON object with a type",
        "unknown frame type: use text or press",
    ]


@SQLITE
async def test_a_forged_token_gets_a_new_identity(service: Any) -> None:
    user = WebUser(service)
    await user.connect()
    await user.wait_welcome()
    genuine = user.token
    await user.close()
    forged = WebUser(service)
    assert genuine is not None
    forged.token = genuine[:-4] + ("0000" if not genuine.endswith("0000") else "1111")
    await forged.connect()
    await forged.wait_welcome()
    assert forged.visitor != user.visitor
    assert forged.token != forged.token[:-4] + "0000"
    again = WebUser(service)
    again.token = genuine
    await again.connect()
    await again.wait_welcome()
    assert again.visitor == user.visitor


@SQLITE
async def test_unknown_widget_key_is_refused(service: Any) -> None:
    user = WebUser(service, key="nosuchkey123")
    await user.connect()
    assert await user.wait_errors(1) == ["unknown widget key"]
    await user.wait_closed()  # the server closed the socket
    assert user.errors == ["unknown widget key"]
    assert user.visitor is None


@SQLITE
async def test_two_experts_accept_at_once_exactly_one_wins(service: Any) -> None:
    tabs = await networking_experts(service, "net-1", "net-2", "net-3")
    customer = WebUser(service)
    await customer.connect()
    await customer.wait_welcome()
    await stated(customer, "1990-05-05")
    cards = await customer.wait_text("Wi-Fi and home network help")
    await customer.press(button(cards, "Whoever answers first"))
    offers = [await tab.wait_text("New request") for tab in tabs]
    await asyncio.gather(
        *(tab.press(button(offer, "Accept")) for tab, offer in zip(tabs, offers, strict=True))
    )
    outcomes = [
        await tab.wait_for(
            lambda m: m["ref"] and m["ref"].startswith("offer:") and "New request" not in m["text"]
        )
        for tab in tabs
    ]
    winners = [o for o in outcomes if "You accepted" in o["text"]]
    assert len(winners) == 1, [o["text"] for o in outcomes]
    assert sum("first" in o["text"] for o in outcomes) == 2
    await customer.wait_text("accepted your request")


@SQLITE
async def test_unanswered_offers_move_on_then_the_customer_waits_in_line(service: Any) -> None:
    tabs = await networking_experts(service, "net-1", "net-2")
    customer = await adult(service)
    await stated(customer, "1990-05-05")
    cards = await customer.wait_text("Wi-Fi and home network help")
    await customer.press(button(cards, "Ask 1."))
    first = cards["text"].split("\n", 3)[2]  # "1. Expert N – …"
    asked = tabs[0] if "Expert 1" in first else tabs[1]
    other = tabs[1] if asked is tabs[0] else tabs[0]
    await asked.wait_text("New request")
    # Nobody answers: after the timeout the other expert is asked, and the first is told.
    await asked.wait_text("timed out", timeout=15)
    offer = await other.wait_text("New request", timeout=5)
    await customer.wait_text("asked 1 more expert")
    await other.press(button(offer, "Decline"))
    await other.wait_text("You declined")
    # Everyone suitable was asked: the customer is told nobody could take it.
    await customer.wait_text("nobody could take your request", timeout=10)


@SQLITE
async def test_busy_experts_put_the_customer_in_line_and_going_online_serves_it(service: Any) -> None:
    tabs = await networking_experts(service, "net-1", online=False)
    customer = await adult(service)
    await stated(customer, "1990-05-05")
    await customer.wait_text("You are number 1 in line")
    second = await adult(service)
    await stated(second, "1991-05-05")
    await second.wait_text("You are number 2 in line")
    await tabs[0].say("/online")
    await tabs[0].wait_text("New request")
    await customer.wait_text("An expert is free now")
    await second.wait_text("You are number 1 in line")


@SQLITE
async def test_none_of_these_widens_and_cancel_tells_the_expert(service: Any) -> None:
    tabs = await networking_experts(service, "net-1", "net-2", "net-3", "net-4")
    customer = await adult(service)
    await stated(customer, "1990-05-05")
    cards = await customer.wait_text("I found 3 experts")
    await customer.press(button(cards, "None of these"))
    more = await customer.wait_text("I found 1 expert")
    shown_first = {line.split(" – ")[0][3:] for line in cards["text"].splitlines() if line[:1].isdigit()}
    assert not any(name in more["text"] for name in shown_first)
    await customer.press(button(more, "Ask 1."))
    offered = [tab for tab in tabs if tab.messages and any("New request" in m["text"] for m in tab.messages)]
    assert not offered or len(offered) <= 1
    last = next(tab for tab in tabs if f"Expert {tabs.index(tab) + 1}" in more["text"])
    await last.wait_text("New request")
    await customer.say("/cancel")
    await customer.wait_text("Your request is cancelled")
    await last.wait_text("cancelled this request")


@SQLITE
async def test_language_switch_and_linking_two_tabs(service: Any) -> None:
    user = await adult(service)
    await user.say("/lang fr")
    await user.wait_text("Français")
    await user.say("/link")
    code_message = await user.wait_text("/link ")
    code = code_message["text"].split("/link ")[1].split()[0]
    other = WebUser(service)
    await other.connect()
    await other.wait_welcome()
    await other.say("/profile")
    await other.wait_text("Language: English")  # a person of its own so far
    await other.say(f"/link {code}")
    await other.wait_text("C'est lié")  # now the same person: their language came along
    await other.say("/profile")
    await other.wait_text("Langue : Français")
    await other.say(f"/link {code}")
    await other.wait_text("a expiré")  # a code works once


@SQLITE
async def test_a_business_widget_key_sends_requests_to_its_own_experts_first(service: Any) -> None:
    from concierge.businesses import create_business, create_widget_key
    from concierge.model import Expert, RosterScope

    sessions = app_sessions(service)
    shop = await create_business(sessions, "Fixit Shop", scope=RosterScope.ROSTER_ONLY)
    key = await create_widget_key(sessions, shop.id)
    await networking_experts(service, "net-market", "net-shop")
    async with sessions.begin() as db:
        expert = await db.get(Expert, "net-shop")
        assert expert is not None
        expert.business_id = shop.id
    await refresh_matcher(service, ["net-shop"])

    visitor = WebUser(service, key=key)
    await visitor.connect()
    await visitor.wait_welcome()
    await stated(visitor, "1990-05-05")
    cards = await visitor.wait_text("I found 1 expert")
    assert "Expert 2" in cards["text"]  # the shop's own expert only (roster only)
    async with sessions() as db:
        request = (await db.scalars(select(HelpRequest))).one()
    assert request.community_id is not None


@SQLITE
async def test_leaving_the_line_moves_the_next_customer_up(service: Any) -> None:
    await networking_experts(service, "net-1", online=False)
    first = await adult(service)
    await stated(first, "1990-05-05")
    place = await first.wait_text("You are number 1 in line")
    second = await adult(service)
    await stated(second, "1991-05-05")
    await second.wait_text("You are number 2 in line")
    await first.press(button(place, "Leave the line"))
    await first.wait_text("Your request is cancelled")
    await first.press(button(place, "Leave the line"))  # pressed again: nothing left to leave
    await first.wait_text("no longer available")
    dispatcher = dispatcher_of(service)
    await dispatcher.tick(serve_line=True)  # the background tick, without waiting for it
    await second.wait_text("You are number 1 in line")


@SQLITE
async def test_a_blocked_pair_is_never_matched_again_until_unblocked(service: Any) -> None:
    await networking_experts(service, "net-1", "net-2")
    customer = WebUser(service)
    await customer.connect()
    await customer.wait_welcome()
    await stated(customer, "1990-01-01")
    cards = await customer.wait_text("Wi-Fi and home network help")
    assert "Expert 1" in cards["text"]
    assert "Expert 2" in cards["text"]

    # A session with Expert 1 happened; from its end-of-call message the customer blocks them.
    sessions = app_sessions(service)
    async with sessions() as db:
        person_id = await db.scalar(
            select(ChannelIdentity.person_id).where(ChannelIdentity.external_id == customer.visitor)
        )
    assert person_id is not None
    lifecycle = Lifecycle(sessions)
    request = await lifecycle.open_request(person_id, "my printer is offline")
    await lifecycle.offer(request.id, [("net-1", 1.0)])
    session = await lifecycle.claim(request.id, "net-1", commission_percent=Decimal(20))
    await lifecycle.confirm_free(session.id)
    await lifecycle.go_live(session.id)
    await lifecycle.end(session.id, 0)
    await customer.press(f"block:{session.id}")
    await customer.wait_text("Expert 1 is blocked")

    def after(fragment: str) -> Any:
        seen = len(customer.messages)
        return customer.wait_for(lambda m: fragment in m["text"] and customer.messages.index(m) >= seen)

    asked = after("Wi-Fi and home network help")
    await customer.say("/cancel")
    await customer.wait_text("cancelled")
    await customer.say("Can someone help? My laptop wifi drops every few minutes")
    again = await asked
    assert "Expert 2" in again["text"]
    assert "Expert 1" not in again["text"]

    await customer.say("/blocks")
    listed = await customer.wait_text("You blocked: Expert 1")
    await customer.press(button(listed, "Unblock Expert 1"))
    await customer.wait_text("Expert 1 is unblocked")
    asked = after("Wi-Fi and home network help")
    await customer.say("/cancel")
    await customer.say("Can someone help? My router keeps losing the connection")
    back = await asked
    assert "Expert 1" in back["text"]
    await customer.close()


async def test_a_request_nobody_can_help_with_ends_expired_and_the_next_one_is_answered(
    service: Any,
) -> None:
    customer = await adult(service)
    await stated(customer, "1990-01-01")
    await customer.wait_text("I have no expert for that yet")
    sessions = app_sessions(service)
    async with sessions() as db:
        request = (await db.scalars(select(HelpRequest))).one()
        assert request.status is State.EXPIRED
        audit = (await db.scalars(select(LifecycleEvent))).one()
    assert (audit.request_id, audit.from_state, audit.to_state) == (request.id, State.OPEN, State.EXPIRED)
    assert audit.detail == {"reason": "no suitable expert"}

    # The write that ended it went with the others: a request with an expert is answered next.
    await networking_experts(service, "net-1")
    await customer.say("Can someone help? My laptop wifi drops every few minutes")
    await customer.wait_text("Wi-Fi and home network help")
    async with sessions() as db:
        statuses = sorted(status.value for status in await db.scalars(select(HelpRequest.status)))
    assert statuses == sorted([State.EXPIRED.value, State.OPEN.value])
