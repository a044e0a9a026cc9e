"""Double-blind ratings and reviews after a session, with a controlled clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.cli import main
from concierge.model import Expert, Review, utcnow
from concierge.reviews import BLIND_DAYS, ReviewRefused, Reviews
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


async def finished_session(
    sessions: async_sessionmaker[AsyncSession], lifecycle: Lifecycle, *, end: bool = True
) -> tuple[str, str, str, str]:
    """(session id, customer person id, expert person id, expert id) of a free call that ended."""
    customer = await add_person(sessions, "Carla")
    expert = await add_expert(sessions, f"ex-{customer.id[-8:]}", name="Tomás")
    request = await lifecycle.open_request(customer.id, "my bike brakes squeal")
    await lifecycle.offer(request.id, [(expert.id, 1.0)])
    session = await lifecycle.claim(request.id, expert.id, commission_percent=Decimal(20))
    await lifecycle.request_payment(session.id)
    await lifecycle.payment_authorised(session.id)
    await lifecycle.go_live(session.id, at=utcnow() - timedelta(minutes=10))
    if end:
        await lifecycle.end(session.id, 300)
    return session.id, customer.id, expert.person_id, expert.id


async def rating(sessions: async_sessionmaker[AsyncSession], expert_id: str) -> tuple[int, int]:
    async with sessions() as db:
        expert = await db.get(Expert, expert_id)
    assert expert is not None
    return expert.rating_count, expert.rating_total


async def test_reviews_stay_hidden_until_both_have_rated(sessions: async_sessionmaker[AsyncSession]) -> None:
    reviews = Reviews(sessions)
    session_id, customer, expert_person, expert_id = await finished_session(sessions, Lifecycle(sessions))
    first = await reviews.rate(session_id, customer, 4)
    assert not first.published
    await reviews.add_text(first.review_id, customer, "Quiet brakes at last.")
    assert await reviews.about(expert_person) == []  # the expert cannot read it before rating
    assert await rating(sessions, expert_id) == (0, 0)

    second = await reviews.rate(session_id, expert_person, 5)
    assert second.published
    about_expert = await reviews.about(expert_person)
    assert [(r.author, r.stars, r.text) for r in about_expert] == [("Carla", 4, "Quiet brakes at last.")]
    assert [(r.author, r.stars) for r in await reviews.about(customer)] == [("Tomás", 5)]
    assert await rating(sessions, expert_id) == (1, 4)  # only the customer's rating makes the expert's


async def test_one_review_is_published_alone_after_the_blind_period(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    reviews = Reviews(sessions, clock=clock)
    session_id, customer, expert_person, expert_id = await finished_session(sessions, Lifecycle(sessions))
    await reviews.rate(session_id, customer, 2)
    clock.now += timedelta(days=BLIND_DAYS) - timedelta(minutes=1)
    assert await reviews.publish_due() == []
    clock.now += timedelta(minutes=2)
    assert await reviews.publish_due() == [expert_person]
    assert await reviews.publish_due() == []  # once
    assert await rating(sessions, expert_id) == (1, 2)
    assert [r.stars for r in await reviews.about(expert_person)] == [2]


@pytest.mark.parametrize("stars", [0, 6, -1, True])
async def test_a_rating_is_one_to_five_stars(sessions: async_sessionmaker[AsyncSession], stars: int) -> None:
    reviews = Reviews(sessions)
    session_id, customer, _, _ = await finished_session(sessions, Lifecycle(sessions))
    with pytest.raises(ReviewRefused, match="stars"):
        await reviews.rate(session_id, customer, stars)


async def test_only_the_two_parties_rate_a_finished_session_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    lifecycle = Lifecycle(sessions)
    reviews = Reviews(sessions, clock=clock)
    session_id, customer, _, _ = await finished_session(sessions, lifecycle)
    stranger = await add_person(sessions, "Eve")
    with pytest.raises(ReviewRefused, match="not_yours"):
        await reviews.rate(session_id, stranger.id, 1)
    await reviews.rate(session_id, customer, 5)
    with pytest.raises(ReviewRefused, match="already_rated"):
        await reviews.rate(session_id, customer, 1)

    live_id, live_customer, _, _ = await finished_session(sessions, lifecycle, end=False)
    with pytest.raises(ReviewRefused, match="not_finished"):
        await reviews.rate(live_id, live_customer, 3)

    old_id, old_customer, _, _ = await finished_session(sessions, lifecycle)
    clock.now += timedelta(days=31)
    with pytest.raises(ReviewRefused, match="too_late"):
        await reviews.rate(old_id, old_customer, 3)


async def test_the_subject_answers_a_public_review_once_and_operators_can_hide_it(
    sessions: async_sessionmaker[AsyncSession], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviews = Reviews(sessions)
    session_id, customer, expert_person, expert_id = await finished_session(sessions, Lifecycle(sessions))
    review = await reviews.rate(session_id, customer, 1)
    await reviews.add_text(review.review_id, customer, "Rude.")
    with pytest.raises(ReviewRefused, match="already_written"):
        await reviews.add_text(review.review_id, customer, "Very rude.")
    with pytest.raises(ReviewRefused, match="no_reply"):
        await reviews.reply(review.review_id, expert_person, "Not yet public")
    await reviews.rate(session_id, expert_person, 3)
    with pytest.raises(ReviewRefused, match="no_reply"):
        await reviews.reply(review.review_id, customer, "Not about me")
    await reviews.reply(review.review_id, expert_person, "Sorry you felt so; the brakes were fixed.")
    with pytest.raises(ReviewRefused, match="no_reply"):
        await reviews.reply(review.review_id, expert_person, "And another thing")
    assert [r.reply for r in await reviews.about(expert_person)] == [
        "Sorry you felt so; the brakes were fixed."
    ]
    assert await rating(sessions, expert_id) == (1, 1)

    monkeypatch.setenv("CONCIERGE_DATABASE_URL", database_url)
    hidden = await asyncio.to_thread(
        CliRunner().invoke, main, ["reviews", "hide", review.review_id, "--reason", "abusive"]
    )
    assert hidden.exit_code == 0, hidden.output
    await reviews.hide(review.review_id, "abusive")  # twice is once
    assert await reviews.about(expert_person) == []
    assert await rating(sessions, expert_id) == (0, 0)
    async with sessions() as db:
        kept = await db.get(Review, review.review_id)
    assert kept is not None  # kept for the audit
    assert (kept.hidden, kept.hidden_reason, kept.text) == (True, "abusive", "Rude.")
