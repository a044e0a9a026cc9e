"""Trust and safety storage on both engines: reports, birth date reviews, contact flags, mutes."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.contact_flags import recent_flags
from concierge.errors import DomainError
from concierge.model import BirthDateReview, Person, Report, ReportStatus, ReviewStatus, utcnow
from concierge.moderation import MuteReason, mute, muted_people, unmute
from concierge.onboarding import update_listing
from concierge.people import AgeGate, change_birth_date, decide_birth_date, state_birth_date
from concierge.reports import ReportRefused, Reports
from concierge.reviews import Reviews
from concierge.transitions import Lifecycle
from tests.factories import add_expert, add_person
from tests.test_money_back import Desk
from tests.test_reviews import finished_session

TODAY = date(2026, 11, 24)


async def test_a_report_keeps_the_session_facts_and_comes_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    reports = Reports(sessions)
    session_id, customer, expert_person, _ = await finished_session(sessions, Lifecycle(sessions))
    with pytest.raises(ReportRefused, match="text_length"):
        await reports.file(session_id, customer, "too short")
    with pytest.raises(ReportRefused, match="text_length"):
        await reports.file(session_id, customer, "x" * 1001)
    stranger = await add_person(sessions, "Nosy")
    with pytest.raises(ReportRefused, match="not_yours"):
        await reports.file(session_id, stranger.id, "I was not even there, but still.")

    results = await asyncio.gather(
        *(reports.file(session_id, customer, f"He was rude to me, attempt {i}.") for i in range(4)),
        return_exceptions=True,
    )
    filed = [r for r in results if not isinstance(r, BaseException)]
    assert len(filed) == 1
    assert all(isinstance(r, ReportRefused) and r.reason == "already" for r in results if r not in filed)
    report = filed[0]
    assert report.reported_id == expert_person
    # The expert may report the customer of the same session, once too.
    await reports.file(session_id, expert_person, "The customer threatened me during the call.")

    shown = await reports.show(report.id)
    assert shown["facts"]["session"]["billed_seconds"] == 300
    assert [e["to"] for e in shown["facts"]["events"]][-1] == "ended"
    assert [r.id for r in await reports.listed()] == [report.id, (await reports.listed())[1].id]
    closed = await reports.close(report.id, "warned the expert")
    assert closed.status is ReportStatus.CLOSED
    with pytest.raises(DomainError, match="closed already"):
        await reports.close(report.id, "again")
    assert len(await reports.listed()) == 1
    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Report)) == 2


async def test_birth_date_changes_across_a_gate_wait_for_one_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await add_person(sessions)
    assert await state_birth_date(sessions, person.id, date(1990, 1, 1), TODAY) is AgeGate.ADULT
    same_gate = await change_birth_date(sessions, person.id, date(1991, 3, 3), TODAY)
    assert same_gate.review_id is None
    assert same_gate.gate is AgeGate.ADULT
    first = await change_birth_date(sessions, person.id, date(2010, 1, 1), TODAY)  # 16: minor
    second = await change_birth_date(sessions, person.id, date(2011, 1, 1), TODAY)
    assert first.review_id is not None
    assert second.review_id == first.review_id  # one pending review, the latest date
    assert second.gate is AgeGate.ADULT
    async with sessions() as db:
        stored = await db.get(Person, person.id)
        assert stored is not None
        assert stored.birth_date == date(1991, 3, 3)
        review = await db.get(BirthDateReview, first.review_id)
        assert review is not None
        assert (review.stated, review.previous, review.status) == (
            date(2011, 1, 1),
            date(1991, 3, 3),
            ReviewStatus.PENDING,
        )
    assert await decide_birth_date(sessions, first.review_id, approve=True, note="id seen", today=TODAY) is (
        AgeGate.MINOR
    )
    with pytest.raises(DomainError, match="approved already"):
        await decide_birth_date(sessions, first.review_id, approve=False, note="", today=TODAY)
    # Back up across 18 needs a review again, and a refusal keeps the date in force.
    again = await change_birth_date(sessions, person.id, date(1990, 1, 1), TODAY)
    assert again.review_id is not None
    assert again.review_id != first.review_id
    assert await decide_birth_date(sessions, again.review_id, approve=False, note="no", today=TODAY) is (
        AgeGate.MINOR
    )


async def test_listing_edits_and_reviews_hide_contact_details_and_flag_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    expert = await add_expert(sessions, "ex-flag")
    updated = await update_listing(
        sessions,
        expert.id,
        {"headline": "Réparation vélo, appelez le 06 12 34 56 78", "skills": ["freins", "wa.me/33612345678"]},
    )
    assert (
        updated.headline == "Réparation vélo, appelez le [datos de contacto ocultos]"
    )  # the owner is Spanish
    assert updated.skills == ["freins", "[datos de contacto ocultos]"]
    await update_listing(sessions, expert.id, {"bio": "Twenty years in a bike shop, 3 000 € of tools."})
    flags = await recent_flags(sessions)
    assert sorted((f.place, f.kinds) for f in flags) == [
        ("listing.headline", "phone"),
        ("listing.skills", "link"),
    ]

    reviews = Reviews(sessions)
    session_id, customer, _, _ = await finished_session(sessions, Lifecycle(sessions))
    rated = await reviews.rate(session_id, customer, 5)
    await reviews.add_text(rated.review_id, customer, "Great! Write him at tomas@example.com")
    assert len(await recent_flags(sessions, person_id=customer)) == 1


async def test_a_longer_mute_stands_and_unmute_lifts_it(sessions: async_sessionmaker[AsyncSession]) -> None:
    person = await add_person(sessions)
    now = utcnow().replace(tzinfo=UTC)
    long_until = await mute(sessions, person.id, MuteReason.OPERATOR, 120, now)
    assert await mute(sessions, person.id, MuteReason.ABUSE, 10, now) == long_until
    assert [(pid, reason) for pid, _, _, reason in await muted_people(sessions, now)] == [
        (person.id, "operator")
    ]
    assert await muted_people(sessions, now + timedelta(minutes=121)) == []
    await unmute(sessions, person.id)
    assert await muted_people(sessions, now) == []


async def test_a_money_back_reason_reaches_the_expert_without_contact_details(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCIERGE_DATA_DIR", str(tmp_path))
    desk = Desk(sessions)
    session_id, customer, _ = await desk.settled(minutes=2)
    asked = await desk.desk.ask(customer, session_id, "Bad call. Refund me on paypal.me/carla99 please")
    assert asked.reason == "Bad call. Refund me on [datos de contacto ocultos] please"
    flags = await recent_flags(sessions, person_id=customer)
    assert [(f.place, f.ref, f.kinds) for f in flags] == [("moneyback", asked.id, "link")]
    assert "paypal.me/carla99" in flags[0].original
