"""Read-side queries over expert listings, shared by the CLI and the web pages."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from concierge.model import Expert, Person


async def experts_per_category(db: AsyncSession) -> tuple[int, dict[str, int]]:
    """The number of listings, and how many list each category (a listing may list several)."""
    counts: Counter[str] = Counter()
    total = 0
    for categories in await db.scalars(select(Expert.categories)):
        counts.update(categories)
        total += 1
    return total, dict(counts)


async def list_experts(
    db: AsyncSession,
    *,
    category: str | None = None,
    language: str | None = None,
    online: bool | None = None,
) -> list[tuple[Expert, Person]]:
    query = select(Expert, Person).join(Person, Expert.person_id == Person.id).order_by(Expert.id)
    if online is not None:
        query = query.where(Expert.online.is_(online))
    rows = [(expert, person) for expert, person in await db.execute(query)]
    # JSON-array membership is spelled differently per engine; the catalogue is small enough
    # to filter here, and the matcher keeps its own index for the hot path.
    return [
        (expert, person)
        for expert, person in rows
        if (category is None or category in expert.categories)
        and (language is None or language in expert.languages)
    ]
