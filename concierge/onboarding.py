"""Becoming an expert: an invitation code and 18+ open a draft listing, which the expert fills
in (from any channel) and publishes. Only published listings are matched.

Listing edits are checked by the same rules as the import format (`concierge.catalogue`), so a
listing typed into a chat and one imported from a file can never disagree about what is valid.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.catalogue import Bio, Categories, Headline, Hours, Languages, PricingLine, Skills, TimeZoneName
from concierge.contact_flags import hide
from concierge.errors import DomainError, NotFound
from concierge.invites import redeem_invite
from concierge.model import Expert, Person, new_id
from concierge.people import AgeGate, age_gate
from concierge.pricing import Pricing, PricingMode


class ListingChanges(BaseModel):
    """Any subset of a listing's fields, each checked like a line of the import format."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    headline: Headline | None = None
    bio: Bio | None = None
    skills: Skills | None = None
    categories: Categories | None = None
    languages: Languages | None = None
    pricing: PricingLine | None = None
    timezone: TimeZoneName | None = None
    hours: Hours | None = None


class ListingRefused(DomainError):
    """Listing changes that break the rules; `problems` names each field and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


async def become_expert(
    sessions: async_sessionmaker[AsyncSession],
    person_id: str,
    code: str,
    *,
    today: date,
    now: datetime,
    currency: str,
) -> Expert:
    """Redeem `code` for an adult and open their draft listing, all in one transaction.

    Someone who already has a listing gets it back and keeps the code unused.
    """
    async with sessions.begin() as db:
        person = await db.get(Person, person_id)
        if person is None:
            raise NotFound("person", person_id)
        existing = await db.scalar(select(Expert).where(Expert.person_id == person_id))
        if existing is not None:
            return existing
        gate = age_gate(person, today)
        if gate is AgeGate.UNKNOWN:
            raise DomainError("experts must be 18 or older: state your birth date first")
        if gate is not AgeGate.ADULT:
            raise DomainError("experts must be 18 or older")
        invite = await redeem_invite(db, code, now)  # InviteRefused says why
        expert = Expert(
            id=new_id("exp"),
            person_id=person.id,
            headline="",
            bio="",
            skills=[],
            categories=[],
            languages=[person.locale],
            pricing=Pricing(PricingMode.FREE, 0, currency),
            time_zone=person.time_zone,
            hours_json={},
            business_id=invite.business_id,
            published=False,
        )
        db.add(expert)
    return expert


async def update_listing(
    sessions: async_sessionmaker[AsyncSession], expert_id: str, changes: dict[str, Any]
) -> Expert:
    """Apply `changes` if every one is valid; otherwise ListingRefused and nothing changes."""
    try:
        checked = ListingChanges.model_validate(changes)
    except ValidationError as exc:
        raise ListingRefused(
            [
                f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
        ) from None
    async with sessions.begin() as db:
        expert = await db.get(Expert, expert_id)
        if expert is None:
            raise NotFound("expert", expert_id)
        values = checked.model_dump(exclude_none=True)
        # What customers read of a listing carries no way around the platform.
        words = {"headline", "bio", "skills"} & set(values)
        if words:
            owner = await db.get(Person, expert.person_id)
            language = owner.locale if owner is not None else "en"
            for field in ("headline", "bio"):
                if field in values:
                    values[field] = hide(
                        db, expert.person_id, f"listing.{field}", expert.id, values[field], language
                    )
            if "skills" in values:
                values["skills"] = [
                    hide(db, expert.person_id, "listing.skills", expert.id, skill, language)
                    for skill in values["skills"]
                ]
        if "pricing" in values:
            p = checked.pricing
            assert p is not None
            expert.pricing = Pricing(PricingMode(p.mode), p.amount, p.currency)
        for field, column in (
            ("headline", "headline"),
            ("bio", "bio"),
            ("skills", "skills"),
            ("categories", "categories"),
            ("languages", "languages"),
            ("timezone", "time_zone"),
            ("hours", "hours_json"),
        ):
            if field in values:
                setattr(expert, column, values[field])
    return expert


def missing_for_publication(expert: Expert) -> list[str]:
    """What a listing still needs before customers can be matched to it."""
    missing = []
    if not expert.headline:
        missing.append("headline")
    if not expert.categories:
        missing.append("categories")
    if not expert.languages:
        missing.append("languages")
    if not expert.hours_json:
        missing.append("hours")
    return missing


async def publish_listing(sessions: async_sessionmaker[AsyncSession], expert_id: str) -> Expert:
    async with sessions.begin() as db:
        expert = await db.get(Expert, expert_id)
        if expert is None:
            raise NotFound("expert", expert_id)
        missing = missing_for_publication(expert)
        if missing:
            raise ListingRefused([f"{field}: still missing" for field in missing])
        expert.published = True
    return expert
