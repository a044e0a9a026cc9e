"""Hiding contact details where one party's words reach the other before a session, and
keeping each find for the operators (`concierge flags list`).

Sessions must not be taken off the platform, so a phone number in a listing, a request, a
review or a money-back reason is replaced by "[contact details hidden]" in the writer's
language (the marker reads as part of their text) and the original is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concierge.contact_details import Masked, mask
from concierge.model import ContactFlag
from knowledge.i18n import load_catalogues


def hidden(text: str, language: str) -> Masked:
    return mask(text, load_catalogues().text("contact.hidden", language))


def hide(db: AsyncSession, person_id: str, place: str, ref: str | None, text: str, language: str) -> str:
    """`text` with contact details hidden; a find is flagged in `db`'s transaction."""
    masked = hidden(text, language)
    if masked.hits:
        db.add(
            ContactFlag(
                person_id=person_id,
                place=place,
                ref=ref,
                original=text,
                kinds=",".join(sorted({hit.kind.value for hit in masked.hits})),
            )
        )
    return masked.text


@dataclass(frozen=True, slots=True)
class FlagLine:
    id: str
    person_id: str
    place: str
    ref: str | None
    kinds: str
    original: str
    created_at: datetime


async def recent_flags(
    sessions: async_sessionmaker[AsyncSession], *, person_id: str | None = None, limit: int = 100
) -> list[FlagLine]:
    """The newest flags first (one person's, or everyone's)."""
    query = select(ContactFlag).order_by(ContactFlag.created_at.desc(), ContactFlag.id).limit(limit)
    if person_id is not None:
        query = query.where(ContactFlag.person_id == person_id)
    async with sessions() as db:
        flags = list(await db.scalars(query))
    return [FlagLine(f.id, f.person_id, f.place, f.ref, f.kinds, f.original, f.created_at) for f in flags]
