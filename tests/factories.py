"""Rows for tests, written through the real model."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.hours import WeeklyHours
from concierge.model import Expert, Person
from concierge.pricing import Pricing, PricingMode


async def add_person(sessions: async_sessionmaker[AsyncSession], name: str = "Ana") -> Person:
    person = Person(display_name=name, locale="es", time_zone="America/Argentina/Buenos_Aires")
    async with sessions.begin() as db:
        db.add(person)
    return person


async def add_expert(
    sessions: async_sessionmaker[AsyncSession],
    expert_id: str,
    *,
    pricing: Pricing | None = None,
    name: str | None = None,
) -> Expert:
    person = await add_person(sessions, name or f"Expert {expert_id}")
    expert = Expert(
        id=expert_id,
        person_id=person.id,
        headline=f"Help from {expert_id}",
        bio="",
        skills=["networking"],
        categories=["computers"],
        languages=["fr", "en"],
        pricing=pricing or Pricing(PricingMode.PER_MINUTE, 150, "EUR"),
        time_zone="Europe/Paris",
        hours_json=WeeklyHours.parse({"mon": ["09:00-17:00"]}).to_json(),
    )
    async with sessions.begin() as db:
        db.add(expert)
    return expert
