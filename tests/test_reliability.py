"""No-show-aware ranking: the reliability factor's prior, and attendance recorded in the
database reaching the real matcher, where an expert who misses sessions ranks lower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bots.appkeys import MATCHER_HOST
from concierge.errors import NotFound
from concierge.lifecycle import Event
from concierge.matching import MatcherHost, load_listings
from concierge.model import Expert
from concierge.reliability import record_attendance
from knowledge.taxonomy import load_taxonomy
from matcher.engine import Matcher, MatchQuery
from matcher.ranking import FACTORS, Priors, Weights, reliability
from tests.factories import add_expert
from tests.harness import WebUser, button, running_service
from tests.test_lifecycle import World
from tests.test_matcher_engine import NOW
from tests.test_web_chat import networking_experts, stated


async def publish(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as db:
        # The same words for everyone: only their records differ.
        await db.execute(update(Expert).values(published=True, headline="Home network and wifi help"))


def score(kept: int, no_shows: int) -> float:
    return float(reliability(np.array([kept]), np.array([no_shows]), Priors())[0])


def test_a_new_expert_sits_at_the_prior_and_one_no_show_does_not_bury_them() -> None:
    assert score(0, 0) == pytest.approx(0.9)
    one_miss = score(0, 1)
    assert 0.8 < one_miss < 0.9  # a dent, not a fall
    # Someone with a long clean record is above the newcomer, but not by much more than the
    # newcomer is above someone with a single miss: neither buried nor boosted by one session.
    assert score(100, 0) > score(0, 0) > one_miss
    assert score(100, 0) - score(0, 0) < 0.1


def test_a_long_record_moves_the_score() -> None:
    assert score(20, 20) < 0.6
    assert score(95, 5) == pytest.approx((9 + 95) / (10 + 100))
    assert score(1, 9) < score(0, 1) < score(9, 1)


def test_the_weight_can_be_set_like_the_others() -> None:
    assert "reliability" in FACTORS
    assert Weights.parse("reliability=0.3").reliability == 0.3
    assert Weights.parse("").reliability == Weights().reliability
    with pytest.raises(ValueError, match="between 0 and 10"):
        Weights.parse("reliability=11")


async def test_record_attendance_counts_and_refuses_an_unknown_expert(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_expert(sessions, "ana")
    await publish(sessions)
    async with sessions.begin() as db:
        await record_attendance(db, "ana", kept=True)
        await record_attendance(db, "ana", kept=True)
        await record_attendance(db, "ana", kept=False)
    with pytest.raises(NotFound):
        async with sessions.begin() as db:
            await record_attendance(db, "nobody", kept=False)
    async with sessions() as db:
        [listing] = await load_listings(db, ["ana"])  # what the matcher's refresh reads
    assert (listing.sessions_kept, listing.no_shows) == (2, 1)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_an_expert_who_misses_sessions_ranks_below_an_otherwise_equal_one(
    sessions: async_sessionmaker[AsyncSession], use_embedder: Any, detector: Any
) -> None:
    for expert_id in ("reliable", "unreliable"):
        await add_expert(sessions, expert_id)
    await publish(sessions)
    async with sessions.begin() as db:
        for _ in range(30):
            await record_attendance(db, "reliable", kept=True)
        for _ in range(15):
            await record_attendance(db, "unreliable", kept=True)
            await record_attendance(db, "unreliable", kept=False)
    host = MatcherHost(Matcher(use_embedder, detector, load_taxonomy()), sessions)
    try:
        await host.load_all()
        query = MatchQuery(text="my wifi router keeps dropping", now=NOW, top=5, include_offline=True)
        result = await host.match(query)
        ranked = {expert.id: expert for expert in result.experts}
        assert [expert.id for expert in result.experts] == ["reliable", "unreliable"]
        assert ranked["unreliable"].reasons["reliability"] < 0.65 < ranked["reliable"].reasons["reliability"]
        # Everything else is equal: the difference is the reliability factor alone.
        for name in ("semantic", "category", "language", "rating", "price", "responsiveness"):
            assert ranked["reliable"].reasons[name] == ranked["unreliable"].reasons[name]

        # The unreliable expert keeps the next 60 sessions: the refresh brings them level again.
        async with sessions.begin() as db:
            for _ in range(60):
                await record_attendance(db, "unreliable", kept=True)
        await host.refresh(["unreliable"])
        result = await host.match(query)
        assert {e.id: e.reasons["reliability"] for e in result.experts}["unreliable"] > 0.8
    finally:
        await host.close()


@pytest.fixture
async def service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, use_embedder: Any, detector: Any
) -> AsyncIterator[Any]:
    async with running_service(monkeypatch, tmp_path, database_url, use_embedder, detector) as client:
        yield client


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_answers_to_offers_reach_the_running_matcher_at_once(service: Any) -> None:
    """Responsiveness comes from the offers table; a decline or an accept refreshes the expert's
    listing in the matcher, not only the next restart."""
    tabs = await networking_experts(service, "net-1", "net-2")
    customer = WebUser(service)
    await customer.connect()
    await customer.wait_welcome()
    await stated(customer, "1990-05-05")
    cards = await customer.wait_text("Wi-Fi and home network help")
    await customer.press(button(cards, "Whoever answers first"))
    offers = [await tab.wait_text("New request") for tab in tabs]
    await tabs[0].press(button(offers[0], "Decline"))
    await tabs[0].wait_text("You declined")
    await tabs[1].press(button(offers[1], "Accept"))
    await tabs[1].wait_text("You accepted")
    host = service.app[MATCHER_HOST]
    declined, accepted = host.listing("net-1"), host.listing("net-2")
    assert (declined.offers_accepted, declined.offers_answered) == (0, 1)
    assert (accepted.offers_accepted, accepted.offers_answered) == (1, 1)


async def test_a_request_cancelled_before_anyone_answered_does_not_count_against_the_experts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    world = World(sessions)
    await world.setup(free=True)
    await publish(sessions)
    cancelled, lapsed = await world.new_request(), await world.new_request()
    await world.apply(cancelled, Event.OFFER, 0)
    await world.lifecycle.cancel(cancelled, "cancelled by the customer")
    await world.apply(lapsed, Event.OFFER, 0)
    await world.lifecycle.time_out_offers(lapsed)  # nobody answered in time: that does count
    async with sessions() as db:
        listings = {listing.id: listing for listing in await load_listings(db)}
    for expert_id in (world.expert, world.runner_up):
        assert (listings[expert_id].offers_accepted, listings[expert_id].offers_answered) == (0, 1)
