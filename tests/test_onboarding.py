"""Becoming an expert: code + 18+ → a draft listing, edited under the import rules, then published."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.errors import DomainError, InviteRefused
from concierge.invites import create_invite
from concierge.matching import load_listings
from concierge.model import Business, Channel, Expert, InviteCode
from concierge.onboarding import ListingRefused, become_expert, publish_listing, update_listing
from concierge.people import identify, state_birth_date
from concierge.pricing import Pricing, PricingMode

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def adult(sessions: async_sessionmaker[AsyncSession], external_id: str = "pro") -> str:
    person = await identify(sessions, Channel.TELEGRAM, external_id, display_name="Thomas", locale="fr")
    await state_birth_date(sessions, person.id, date(1985, 6, 1), TODAY)
    return person.id


async def uses_left(sessions: async_sessionmaker[AsyncSession], code: str) -> int:
    async with sessions() as db:
        invite = await db.get(InviteCode, code)
        assert invite is not None
        return invite.uses_left


async def test_an_adult_with_a_code_gets_a_draft_listing(sessions: async_sessionmaker[AsyncSession]) -> None:
    business = Business(name="Repair Café")
    async with sessions.begin() as db:
        db.add(business)
    invite = await create_invite(sessions, business_id=business.id, uses=2)
    person_id = await adult(sessions)
    expert = await become_expert(
        sessions, person_id, invite.code.lower(), today=TODAY, now=NOW, currency="EUR"
    )
    assert expert.published is False
    assert expert.business_id == business.id
    assert expert.languages == ["fr"]
    assert await uses_left(sessions, invite.code) == 1
    again = await become_expert(sessions, person_id, invite.code, today=TODAY, now=NOW, currency="EUR")
    assert again.id == expert.id
    assert await uses_left(sessions, invite.code) == 1  # already an expert: the code is kept


async def test_the_age_gate_comes_before_the_code(sessions: async_sessionmaker[AsyncSession]) -> None:
    invite = await create_invite(sessions)
    unknown = await identify(sessions, Channel.WEB, "new", display_name="New")
    with pytest.raises(DomainError, match="state your birth date first"):
        await become_expert(sessions, unknown.id, invite.code, today=TODAY, now=NOW, currency="EUR")
    teen = await identify(sessions, Channel.WEB, "teen", display_name="Teen")
    await state_birth_date(sessions, teen.id, date(2010, 1, 1), TODAY)
    with pytest.raises(DomainError, match="18 or older"):
        await become_expert(sessions, teen.id, invite.code, today=TODAY, now=NOW, currency="EUR")
    assert await uses_left(sessions, invite.code) == 1


@pytest.mark.parametrize("reason", ["invalid", "used_up", "expired"])
async def test_a_refused_code_says_why_and_creates_nothing(
    sessions: async_sessionmaker[AsyncSession], reason: str
) -> None:
    invite = await create_invite(sessions, uses=1, expires_in_days=1, clock=lambda: NOW)
    if reason == "used_up":
        await become_expert(
            sessions, await adult(sessions, "first"), invite.code, today=TODAY, now=NOW, currency="EUR"
        )
    code = "ZZZZZ-ZZZZZ" if reason == "invalid" else invite.code
    later = datetime(2026, 11, 26, tzinfo=UTC) if reason == "expired" else NOW
    person_id = await adult(sessions, "second")
    with pytest.raises(InviteRefused) as refused:
        await become_expert(sessions, person_id, code, today=TODAY, now=later, currency="EUR")
    assert refused.value.reason == reason
    async with sessions() as db:
        assert await db.scalar(select(Expert).where(Expert.person_id == person_id)) is None


async def test_setup_edits_follow_the_import_rules_and_publish_when_complete(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    invite = await create_invite(sessions)
    expert = await become_expert(
        sessions, await adult(sessions), invite.code, today=TODAY, now=NOW, currency="EUR"
    )
    with pytest.raises(ListingRefused) as refused:
        await publish_listing(sessions, expert.id)
    assert refused.value.problems == [
        "headline: still missing",
        "categories: still missing",
        "hours: still missing",
    ]

    with pytest.raises(ListingRefused) as bad:
        await update_listing(
            sessions,
            expert.id,
            {
                "headline": "Je dépanne votre Wi-Fi",
                "categories": ["astrology"],
                "hours": {"mon": ["18:00-09:00"]},
                "pricing": {"mode": "free", "amount": 100, "currency": "EUR"},
                "colour": "blue",
            },
        )
    text = str(bad.value)
    for expected in (
        "categories.0: unknown category",
        "hours: '18:00-09:00' ends before",
        "a free listing has amount 0",
        "colour",
    ):
        assert expected in text
    async with sessions() as db:
        unchanged = await db.get(Expert, expert.id)
        assert unchanged is not None
        assert unchanged.headline == ""  # one bad field: nothing applied

    await update_listing(
        sessions,
        expert.id,
        {
            "headline": "Je dépanne votre Wi-Fi",
            "categories": ["computers"],
            "languages": ["fr", "en"],
            "hours": {"sat": ["10:00-15:00"]},
            "pricing": {"mode": "per_minute", "amount": 120, "currency": "EUR"},
            "timezone": "Europe/Paris",
        },
    )
    async with sessions() as db:
        assert [listing.id for listing in await load_listings(db)] == []  # drafts are never matched
    published = await publish_listing(sessions, expert.id)
    assert published.pricing == Pricing(PricingMode.PER_MINUTE, 120, "EUR")
    async with sessions() as db:
        listings = await load_listings(db)
    assert [listing.id for listing in listings] == [expert.id]
    assert listings[0].hours == {"sat": [(600, 900)]}
